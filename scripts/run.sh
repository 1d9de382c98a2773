#!/usr/bin/env bash
# `make run`: the whole migration switch on this machine, without Envoy or
# Docker. It builds bin/, starts two demo PVE backends on one shared state
# directory (perl on 127.0.0.1:8007, rust on 127.0.0.1:8008), and starts
# migration-router with its embedded data plane on 127.0.0.1:8006, the
# port PVE clients know, over HTTPS with a generated self-signed
# certificate (curl -k). Jaeger is started too when scripts/jaeger.sh has
# a cached binary (`scripts/jaeger.sh build` makes one, once).
#
# Environment:
#   RUN_HTTP=1       plain HTTP on :8006 instead of HTTPS
#   RUN_CONFIG=FILE  the migration config (default examples/network-migration.conf;
#                    `migration-ctl set-phase` edits it, `git checkout` resets it)
#   RUN_TOKEN=USER@REALM!TOKENID=SECRET   make the demo backends require this API token
#
# Ctrl-C stops every process this script started.
set -euo pipefail
cd "$(dirname "$0")/.."

config=${RUN_CONFIG:-examples/network-migration.conf}
listen=127.0.0.1:8006
perl=127.0.0.1:8007
rust=127.0.0.1:8008
admin=127.0.0.1:3000

echo "run.sh: building bin/" >&2
mkdir -p bin
go build -o bin/ ./cmd/... ./examples/pve-demo-backend

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pve-migration-run.XXXXXX")
pids=()
stopping=0
cleanup() {
	[ "$stopping" = 1 ] && return
	stopping=1
	trap - INT TERM EXIT
	echo >&2
	echo "run.sh: stopping ${#pids[@]} processes" >&2
	# Only the processes started here, by their ids, newest first: the
	# router drains and flushes its traces while Jaeger is still up.
	local i pid
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		pid=${pids[i]}
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup INT TERM EXIT

start() { # name, command...
	local name=$1
	shift
	"$@" >"$tmp/$name.log" 2>&1 &
	pids+=("$!")
	echo "run.sh: started $name (pid $!, log $tmp/$name.log)" >&2
}

# wait_port HOST:PORT NAME: wait until something accepts on the port.
wait_port() {
	local host=${1%:*} port=${1##*:} i
	for i in $(seq 1 100); do
		if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "run.sh: $2 did not start listening on $1; its log:" >&2
	cat "$tmp/$2.log" >&2 || true
	exit 1
}

for addr in $listen $perl $rust $admin; do
	if (exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}") 2>/dev/null; then
		echo "run.sh: $addr is already in use; stop whatever serves it first" >&2
		exit 1
	fi
done

token_args=()
if [ -n "${RUN_TOKEN:-}" ]; then token_args=(--token "$RUN_TOKEN"); fi

mkdir -p "$tmp/state"
start perl-backend bin/pve-demo-backend --flavor perl --listen "$perl" --state-dir "$tmp/state" "${token_args[@]}"
start rust-backend bin/pve-demo-backend --flavor rust --listen "$rust" --state-dir "$tmp/state" "${token_args[@]}"
wait_port "$perl" perl-backend
wait_port "$rust" rust-backend

jaeger_url=
jaeger_bin=$(scripts/jaeger.sh path 2>/dev/null || true)
if [ -n "$jaeger_bin" ] && [ -x "$jaeger_bin" ]; then
	if (exec 3<>/dev/tcp/127.0.0.1/4317) 2>/dev/null; then
		echo "run.sh: something already listens on 4317; using it for traces" >&2
	else
		start jaeger "$jaeger_bin"
		wait_port 127.0.0.1:4317 jaeger
	fi
	export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317
	export OTEL_SERVICE_NAME=${OTEL_SERVICE_NAME:-pve-migration-router}
	jaeger_url=http://127.0.0.1:16686
else
	echo "run.sh: no cached Jaeger (scripts/jaeger.sh build makes one); traces are off" >&2
fi

scheme=https
curl_k=(-k)
tls_args=(--proxy-self-signed)
if [ "${RUN_HTTP:-}" = 1 ]; then
	scheme=http
	curl_k=()
	tls_args=()
fi
token_env=()
if [ -n "${RUN_TOKEN:-}" ]; then token_env=(env "PERL_API_TOKEN=$RUN_TOKEN"); fi
start migration-router "${token_env[@]}" bin/migration-router --config "$config" \
	--proxy-listen "$listen" --perl-upstream "http://$perl" --rust-upstream "http://$rust" \
	--admin-listen "$admin" --node pve1 --kill-switch "$tmp/perl-only" --state-file "$tmp/nodes/pve1/network-migration.state" "${tls_args[@]}"
wait_port "$listen" migration-router

base="$scheme://$listen"
auth=()
if [ -n "${RUN_TOKEN:-}" ]; then auth=(-H "'Authorization: PVEAPIToken=$RUN_TOKEN'"); fi
k=${curl_k[*]:-}
# curl options for the examples: -s, then -k and the token where needed.
o="-s${k:+ $k}${auth:+ ${auth[*]}}"
cat <<EOF

The PVE network migration switch is running (config: $config).
  data plane  $base      (plays Envoy's part; ${scheme^^}${k:+, self-signed: use curl -k})
  perl        http://$perl     rust  http://$rust     (demo backends, shared state in $tmp/state)
  admin       http://$admin/status  /metrics  /health  /compare
${jaeger_url:+  jaeger      $jaeger_url  (service pve-migration-router)
}
Try:
  # who served it? (x-pve-served-by, x-envoy-attempt-count)
  curl $o -D - -o /dev/null $base/api2/json/nodes/pve1/network
  curl $o $base/api2/json/nodes/pve1/network/eno1
  # a basic write: perl until the phase allows rust writes
  curl $o -D - -X PUT -d type=eth -d mtu=9000 $base/api2/json/nodes/pve1/network/eno1
  # move on, explain, look
  bin/migration-ctl set-phase rust-basic-write --config $config
  bin/migration-ctl explain PUT /api2/json/nodes/pve1/network/eno1 --type eth --config $config
  bin/migration-ctl status --config $config
  # rust misbehaves: reads still succeed through perl
  curl -s -X POST -d '{"error_rate":1}' http://$rust/debug/faults
  curl -s http://$perl/debug/applied; curl -s http://$rust/debug/applied
  # roll back everything at once
  bin/migration-ctl set-phase perl-only --config $config
  # shadow comparison: does rust answer like perl? (see /compare)
  printf '\n[compare]\nenabled = true\nsample_percent = 100\n' >> $config
  curl -s -X POST -d '{"error_rate":0,"diverge":"data[].method"}' http://$rust/debug/faults   # error_rate 0: the fault above is still on
  for i in 1 2 3 4 5; do curl $o -o /dev/null $base/api2/json/nodes/pve1/network; done
  bin/migration-ctl compare          # or open http://$admin/compare (HTML), /compare.json

Logs are in $tmp. Ctrl-C stops everything.
EOF

# Wait until one of the processes ends (or Ctrl-C); a process that dies on
# its own takes the demo down, with its log shown.
set +e
wait -n "${pids[@]}"
status=$?
if [ "$stopping" = 0 ]; then
	echo "run.sh: a process exited (status $status); last log lines:" >&2
	for f in "$tmp"/*.log; do echo "== $f" >&2; tail -n 5 "$f" >&2; done
fi
exit "$status"
