#!/usr/bin/env bash
# Builds the deployment checkers `make lint` uses -- helm (renders the chart) and kubeconform
# (validates every object) -- from the Go module proxy with `go install`, once, into the cache
# outside the clone. Versioned names: a new pin builds anew, an old binary is never reused.
set -euo pipefail
HELM_VERSION=v4.3.2
KUBECONFORM_VERSION=v0.8.0
BIN="${CIVICGRID_CACHE_DIR:-$HOME/.cache/civicgrid}/bin"
mkdir -p "$BIN"

build() {  # build NAME VERSION PACKAGE
  local target="$BIN/$1-$2"
  if [[ ! -x "$target" ]]; then
    echo "building $1 $2 (once; cached in $BIN)" >&2
    local tmp; tmp="$(mktemp -d)"
    GOBIN="$tmp" GOFLAGS=-buildvcs=false go install "$3@$2"
    mv "$tmp/$1" "$target"
    rmdir "$tmp"
  fi
  ln -sf "$1-$2" "$BIN/$1"
}

build helm "$HELM_VERSION" helm.sh/helm/v4/cmd/helm
build kubeconform "$KUBECONFORM_VERSION" github.com/yannh/kubeconform/cmd/kubeconform
