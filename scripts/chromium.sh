#!/usr/bin/env bash
# Installs and locates headless Chromium for the browser test of the admin
# page /compare (`make test-browser`), and can refresh the README's
# screenshot of it.
#
#   scripts/chromium.sh install      # apt-get install chromium (Debian's package) when missing
#   scripts/chromium.sh path         # print the binary's path (exit 1 when absent)
#   scripts/chromium.sh test         # install if needed, then run the browser test
#   scripts/chromium.sh screenshot   # install if needed, then rewrite docs/compare-page.png
#
# The Go test finds the binary through $CHROMIUM, else chromium or
# chromium-browser on $PATH, and skips with the reason when there is none.
set -euo pipefail
cd "$(dirname "$0")/.."

find_chromium() {
	if [ -n "${CHROMIUM:-}" ] && [ -x "$CHROMIUM" ]; then echo "$CHROMIUM"; return 0; fi
	command -v chromium 2>/dev/null || command -v chromium-browser 2>/dev/null
}

install() {
	if find_chromium >/dev/null; then return 0; fi
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
		echo "chromium.sh: chromium is missing; install Debian's chromium package (as root: apt-get install chromium)" >&2
		exit 1
	fi
	echo "chromium.sh: installing chromium" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
}

case "${1:-}" in
install) install; find_chromium ;;
path) find_chromium ;;
test)
	install
	CHROMIUM=$(find_chromium) go test -count=1 -run 'TestComparePageInBrowser' -v ./internal/shadow/
	;;
screenshot)
	install
	CHROMIUM=$(find_chromium) COMPARE_SCREENSHOT="$(pwd)/docs/compare-page.png" \
		go test -count=1 -run 'TestComparePageInBrowser' -v ./internal/shadow/
	;;
*)
	sed -n '2,12p' "$0" >&2
	exit 2
	;;
esac
