#!/usr/bin/env bash
# Prometheus side of operating the router, with Debian's prometheus package
# (prometheus and promtool):
#
#   scripts/prometheus.sh deps        # apt-get install prometheus when missing
#   scripts/prometheus.sh rules       # promtool check + test the alert rules,
#                                     # and their Go test (every alert covered)
#   scripts/prometheus.sh dashboard   # the Grafana dashboard's queries against a
#                                     # real Prometheus scraping a real router
#
# Installing the package does not start its service where systemd is not
# running (containers, CI); the tests run their own Prometheus on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}

deps() {
	if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
		return 0
	fi
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
		echo "prometheus.sh: prometheus/promtool missing; install them with: sudo apt-get install -y prometheus" >&2
		return 1
	fi
	echo "prometheus.sh: installing Debian's prometheus package (apt-get)" >&2
	# Other apt users on the machine: wait for the dpkg lock instead of failing.
	apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends prometheus >&2
}

case "${1:-}" in
deps) deps ;;
rules)
	deps
	(cd examples/prometheus && promtool check rules rules.yml && promtool test rules rules_test.yml)
	exec go test -count=1 ./examples/prometheus/...
	;;
dashboard)
	deps
	exec go test -count=1 -race -run 'Dashboard' -v ./examples/grafana/...
	;;
*)
	echo "usage: $0 deps|rules|dashboard" >&2
	exit 2
	;;
esac
