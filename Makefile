# dbha — see README.md. `make demo` runs the lab; `make test` runs every test.
SHELL := /bin/bash
GO ?= go
export GOTOOLCHAIN := local
export GOFLAGS := -mod=readonly

# The Consul release the lab and the tests run (built from the Go module proxy;
# Debian does not package it). v1.20.1 builds with the Go on this machine.
CONSUL_VERSION ?= v1.20.1
# The MinIO build the backup tests store into (an S3-compatible server; its
# module has no release tags, so this is a pinned pseudo-version).
MINIO_VERSION ?= v0.0.0-20260212201848-7aac2a2c5b7c
ALERTMANAGER_VERSION ?= v0.35.0
LAB_DIR ?= lab
RUNS ?= 3
SHAPES ?= async:1 lossless:1 async:3
FAULTS ?=

.PHONY: all deps build test test-unit faults demo demo-down lint clean

all: build

deps:
	CONSUL_VERSION=$(CONSUL_VERSION) MINIO_VERSION=$(MINIO_VERSION) ALERTMANAGER_VERSION=$(ALERTMANAGER_VERSION) scripts/deps.sh

build:
	$(GO) build -o bin/dbha ./cmd/dbha

# Unit and integration tests. Integration tests start real MariaDB,
# PostgreSQL and Consul processes on loopback ports; nothing is mocked.
test: deps lint
	$(GO) test -count=1 -timeout 25m ./...

# The fault matrix on a lab of hosts (root; network namespaces): every fault
# against both engines, asynchronous and lossless, one and three managers;
# writes docs/faults.md and docs/faults.json. RUNS=N runs per row (3);
# FAULTS="kill host-down" and SHAPES="async:1" narrow it. About a minute per
# run: the whole matrix takes hours, a row a few minutes.
faults: deps build
	RUNS=$(RUNS) FAULTS="$(FAULTS)" SHAPES="$(SHAPES)" scripts/faults.sh

# Pure-logic tests only (no servers).
test-unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /integration)

# The lab, `dbha run` with its console in the background (URL and tokens
# printed), and one failover drill the console then shows.
demo: deps build
	LAB_DIR=$(LAB_DIR) scripts/demo.sh

demo-down: build
	LAB_DIR=$(LAB_DIR) scripts/demo.sh down

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin
