#!/usr/bin/env bash
# Soak test: the embedded data plane, the decision service and two demo PVE
# backends in one process on loopback, under bounded mixed traffic (reads
# and writes of every category, API token and ticket+CSRF), with phase
# flips through the watched config file, rust faults (errors, latency,
# crash, refused connections) and one restart of the decision service.
# See internal/soak and docs/failure-modes.md.
#
#   scripts/soak.sh                   # 10 minutes (make soak)
#   SOAK_DURATION=30m scripts/soak.sh
#   SOAK_RACE=1 scripts/soak.sh       # with the race detector (slower)
#   SOAK_LOG=1 scripts/soak.sh        # the components' logs on stderr
#
# It prints the resource series (heap in use, goroutines, open fds) and the
# write ledger, and fails on any client-visible GET error, any write applied
# twice or replayed after rust may have acted on it, or resource growth.
set -euo pipefail
cd "$(dirname "$0")/.."
export SOAK_DURATION="${SOAK_DURATION:-10m}"

# seconds of a Go duration made of h/m/s parts ("10m", "1h30m"); empty if
# it has other units, in which case the timeout below is generous.
seconds() {
  local s=$1 total=0
  while [[ $s =~ ^([0-9]+)(h|m|s)(.*)$ ]]; do
    case ${BASH_REMATCH[2]} in
      h) total=$((total + BASH_REMATCH[1] * 3600)) ;;
      m) total=$((total + BASH_REMATCH[1] * 60)) ;;
      s) total=$((total + BASH_REMATCH[1])) ;;
    esac
    s=${BASH_REMATCH[3]}
  done
  [ -z "$s" ] && echo "$total"
}
secs=$(seconds "$SOAK_DURATION" || true)
# Traffic runs for SOAK_DURATION; setup, quiescing and the checks need a
# little more.
timeout=$(( ${secs:-3600} * 2 + 300 ))s
race=()
if [ -n "${SOAK_RACE:-}" ]; then race=(-race); fi
echo "== soak for $SOAK_DURATION (test timeout $timeout)"
exec go test ${race[@]+"${race[@]}"} -count=1 -timeout "$timeout" -run '^TestSoak$' -v ./internal/soak/
