#!/usr/bin/env bash
# Regenerates the Go code for the control API (proto/pvemigration/v1/*.proto).
# The generated *.pb.go files are committed, so building the project never
# needs protoc; run this only after editing a .proto file:
#
#   scripts/proto.sh          # regenerate
#   scripts/proto.sh --check  # regenerate into a temp dir and fail if the
#                             # committed files are stale (for CI)
#
# Installs what it needs when missing: protoc from Debian's
# protobuf-compiler (plus libprotobuf-dev for the well-known types) when run
# as root, and the two Go plugins, pinned, into .cache/bin.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

PROTOC_GEN_GO=google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC=google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0

if ! command -v protoc >/dev/null 2>&1 || [ ! -f /usr/include/google/protobuf/timestamp.proto ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "proto.sh: installing protoc (protobuf-compiler, libprotobuf-dev)" >&2
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler libprotobuf-dev >/dev/null
	else
		echo "proto.sh: protoc and the well-known types are missing; install protobuf-compiler and libprotobuf-dev" >&2
		exit 1
	fi
fi

export GOBIN="$root/.cache/bin"
mkdir -p "$GOBIN"
# Plugins are versioned by a stamp file so a version bump here reinstalls.
install_plugin() {
	local mod=$1 bin=$2 stamp="$GOBIN/.$2.version"
	if [ ! -x "$GOBIN/$bin" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$mod" ]; then
		echo "proto.sh: go install $mod" >&2
		GOFLAGS= go install "$mod"
		echo "$mod" >"$stamp"
	fi
}
install_plugin "$PROTOC_GEN_GO" protoc-gen-go
install_plugin "$PROTOC_GEN_GO_GRPC" protoc-gen-go-grpc

out="$root"
if [ "${1:-}" = "--check" ]; then
	out=$(mktemp -d)
	trap 'rm -rf "$out"' EXIT
	mkdir -p "$out/proto"
fi

mapfile -t files < <(cd "$root" && find proto -name '*.proto' | sort)
PATH="$GOBIN:$PATH" protoc \
	-I "$root" -I /usr/include \
	--go_out="$out" --go_opt=paths=source_relative \
	--go-grpc_out="$out" --go-grpc_opt=paths=source_relative \
	"${files[@]}"

if [ "${1:-}" = "--check" ]; then
	status=0
	while IFS= read -r f; do
		if ! cmp -s "$out/$f" "$root/$f"; then
			echo "proto.sh: $f is stale; run scripts/proto.sh" >&2
			status=1
		fi
	done < <(cd "$out" && find proto -name '*.pb.go' | sort)
	exit $status
fi
echo "proto.sh: generated $(cd "$root" && find proto -name '*.pb.go' | wc -l) files" >&2
