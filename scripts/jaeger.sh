#!/usr/bin/env bash
# Builds, locates and tests against a real Jaeger, for the end-to-end trace
# test (`make test-jaeger`). Jaeger is built from the Go module proxy through
# the separate module tools/jaeger, so the router's own go.mod never carries
# Jaeger's hundreds of dependencies and no container runtime is needed.
#
#   scripts/jaeger.sh build   # build once into the cache (about 7 minutes),
#                             # then print the binary's path; later runs reuse it
#   scripts/jaeger.sh path    # print where the binary is (or will be)
#   scripts/jaeger.sh test    # build if needed, then run the Jaeger test
#
# The cache is ${XDG_CACHE_HOME:-$HOME/.cache}/pve-migration; the binary's
# name carries the version from tools/jaeger/go.mod, so a version bump there
# builds a new binary instead of reusing a stale one.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

cache=${XDG_CACHE_HOME:-$HOME/.cache}/pve-migration
module=github.com/jaegertracing/jaeger

version() {
	# The `tool` directive pins the version; read it rather than repeat it.
	(cd "$root/tools/jaeger" && GOWORK=off go list -m -f '{{.Version}}' "$module")
}

binpath() { echo "$cache/jaeger-$(version)"; }

build() {
	local bin lock tmp
	bin=$(binpath)
	if [ -x "$bin" ]; then
		echo "$bin"
		return
	fi
	mkdir -p "$cache"
	lock="$bin.lock"
	# One build at a time: a second caller waits for the first one and
	# then finds the binary.
	exec 9>"$lock"
	flock 9
	if [ ! -x "$bin" ]; then
		echo "jaeger.sh: building $module/cmd/jaeger $(version) into $cache (takes several minutes, once)" >&2
		tmp=$(mktemp "$bin.XXXXXX")
		if ! (cd "$root/tools/jaeger" && GOWORK=off go build -o "$tmp" "$module/cmd/jaeger"); then
			rm -f "$tmp"
			exit 1
		fi
		# Rename last, so an interrupted build never leaves a binary that
		# looks complete.
		mv "$tmp" "$bin"
	fi
	flock -u 9
	echo "$bin"
}

case "${1:-}" in
build) build ;;
path) binpath ;;
test)
	bin=$(build)
	JAEGER_BIN=$bin exec go test -count=1 -race -run 'Jaeger' ./internal/telemetry/...
	;;
*)
	echo "usage: $0 build|path|test" >&2
	exit 2
	;;
esac
