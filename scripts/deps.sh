#!/usr/bin/env bash
# Installs what dbha's lab and tests need, skipping whatever is already there:
# Debian packages for the database servers and tools, and consul, minio
# (the S3-compatible server the backup tests store into) and alertmanager
# (the receiver the alert tests notify) built from the Go module proxy at
# $CONSUL_VERSION, $MINIO_VERSION and $ALERTMANAGER_VERSION into ./bin.
set -euo pipefail
cd "$(dirname "$0")/.."

CONSUL_VERSION=${CONSUL_VERSION:-v1.20.1}
MINIO_VERSION=${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}
ALERTMANAGER_VERSION=${ALERTMANAGER_VERSION:-v0.35.0}
cleanup=()
trap 'for c in "${cleanup[@]}"; do eval "$c"; done' EXIT
packages=(mariadb-server mariadb-backup mariadb-client postgresql-15 postgresql-client-15
          sysbench iproute2 iptables zstd procps haproxy chromium fonts-dejavu-core curl percona-toolkit)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  # Keep the packaged services from starting: the lab runs its own servers.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod 755 /usr/sbin/policy-rc.d
    cleanup+=("$sudo rm -f /usr/sbin/policy-rc.d")
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "deps: Debian packages present"
fi

# consul: ./bin/consul at the pinned version, else a cached build, else build.
want=${CONSUL_VERSION#v}
# (Read the whole output first: grep -q closing the pipe early would fail
# the pipeline under pipefail.)
have() { [ -x "$1" ] || return 1; local v; v=$("$1" version 2>/dev/null) || return 1; [[ "${v%%$'\n'*}" == "Consul v$want" ]]; }
cache="$(go env GOPATH)/bin/consul-$CONSUL_VERSION"
mkdir -p bin
if have bin/consul; then
  echo "deps: consul $CONSUL_VERSION present"
elif have "$cache"; then
  cp "$cache" bin/consul && echo "deps: consul $CONSUL_VERSION from $cache"
else
  echo "deps: building consul $CONSUL_VERSION from the Go module proxy (a few minutes, once)"
  tmp=$(mktemp -d)
  cleanup+=("rm -rf '$tmp'")
  # A module that requires consul builds it: the replace directives in
  # consul's own go.mod (which make `go install` refuse) do not apply to a
  # dependency.
  (cd "$tmp" &&
    printf 'module dbha.local/consulbuild\n\ngo 1.26\n' > go.mod &&
    printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/hashicorp/consul"\n' > tools.go &&
    GOFLAGS=-mod=mod go get "github.com/hashicorp/consul@$CONSUL_VERSION" &&
    GOFLAGS=-mod=mod go build -o consul github.com/hashicorp/consul)
  mkdir -p "$(dirname "$cache")"
  cp "$tmp/consul" "$cache"
  cp "$tmp/consul" bin/consul
  have bin/consul || { echo "deps: built consul does not report $CONSUL_VERSION" >&2; exit 1; }
fi

# minio: ./bin/minio at the pinned version (its module has no release tags,
# so the version is a pseudo-version, recorded beside the binary, which
# reports none), else a cached build, else build.
mcache="$(go env GOPATH)/bin/minio-$MINIO_VERSION"
if [ -x bin/minio ] && [ "$(cat bin/minio.version 2>/dev/null)" = "$MINIO_VERSION" ]; then
  echo "deps: minio $MINIO_VERSION present"
else
  if [ ! -x "$mcache" ]; then
    echo "deps: building minio $MINIO_VERSION from the Go module proxy (a few minutes, once)"
    tmp=$(mktemp -d)
    cleanup+=("rm -rf '$tmp'")
    GOFLAGS=-mod=mod GOBIN="$tmp" go install "github.com/minio/minio@$MINIO_VERSION"
    mkdir -p "$(dirname "$mcache")"
    cp "$tmp/minio" "$mcache"
  fi
  cp "$mcache" bin/minio && echo "$MINIO_VERSION" > bin/minio.version && echo "deps: minio $MINIO_VERSION from $mcache"
fi

# alertmanager: ./bin/alertmanager at the pinned version, else a cached
# build, else build (its version is recorded beside the binary, since a
# build from the module proxy reports none).
acache="$(go env GOPATH)/bin/alertmanager-$ALERTMANAGER_VERSION"
if [ -x bin/alertmanager ] && [ "$(cat bin/alertmanager.version 2>/dev/null)" = "$ALERTMANAGER_VERSION" ]; then
  echo "deps: alertmanager $ALERTMANAGER_VERSION present"
else
  if [ ! -x "$acache" ]; then
    echo "deps: building alertmanager $ALERTMANAGER_VERSION from the Go module proxy (a few minutes, once)"
    tmp=$(mktemp -d)
    cleanup+=("rm -rf '$tmp'")
    # Its web UI is built by npm and not in the module, which embeds it:
    # the build is made from a copy of the source with empty placeholder
    # pages (the tests use the API, never the UI).
    src=$(GOFLAGS=-mod=mod go mod download -json "github.com/prometheus/alertmanager@$ALERTMANAGER_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    cp -r "$src" "$tmp/am" && chmod -R u+w "$tmp/am"
    for d in elm mantine; do mkdir -p "$tmp/am/ui/app/dist/$d" && echo '<!doctype html><title>alertmanager</title>' > "$tmp/am/ui/app/dist/$d/index.html"; done
    (cd "$tmp/am" && GOFLAGS=-mod=mod go build -o "$tmp/alertmanager" ./cmd/alertmanager)
    mkdir -p "$(dirname "$acache")"
    cp "$tmp/alertmanager" "$acache"
  fi
  cp "$acache" bin/alertmanager && echo "$ALERTMANAGER_VERSION" > bin/alertmanager.version && echo "deps: alertmanager $ALERTMANAGER_VERSION from $acache"
fi
