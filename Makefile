# dbha — see README.md. `make demo` runs the lab; `make test` runs every test.
SHELL := /bin/bash
GO ?= go
export GOTOOLCHAIN := local
export GOFLAGS := -mod=readonly

# The Consul release the lab and the tests run (built from the Go module proxy;
# Debian does not package it). v1.20.1 builds with the Go on this machine.
CONSUL_VERSION ?= v1.20.1
LAB_DIR ?= lab

.PHONY: all deps build test test-unit demo demo-down lint clean

all: build

deps:
	CONSUL_VERSION=$(CONSUL_VERSION) scripts/deps.sh

build:
	$(GO) build -o bin/dbha ./cmd/dbha

# Unit and integration tests. Integration tests start real MariaDB,
# PostgreSQL and Consul processes on loopback ports; nothing is mocked.
test: deps lint
	$(GO) test -count=1 -timeout 25m ./...

# Pure-logic tests only (no servers).
test-unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /integration)

demo: deps build
	./bin/dbha lab up --dir $(LAB_DIR)
	./bin/dbha --config $(LAB_DIR)/dbha.yaml topology

demo-down: build
	./bin/dbha lab down --dir $(LAB_DIR) --purge

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin
