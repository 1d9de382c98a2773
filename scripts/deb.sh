#!/usr/bin/env bash
# Builds the Debian package with Debian's own tools (dpkg-deb), checks it
# with lintian, and tests it (`make deb`, `make test-deb`).
#
#   scripts/deb.sh deps      # apt-get install what building and checking need
#   scripts/deb.sh build     # dist/pve-migration-router_VERSION_amd64.deb; prints its path
#   scripts/deb.sh lint      # lintian on the built package; fails on any error
#   scripts/deb.sh test      # build, lint, then the Go test that installs it
#                            # into a throwaway root and runs the binaries
#   scripts/deb.sh version   # the package version
#
# The version is BASE+gitDATE.HASH of the checked-out commit (DEB_VERSION
# overrides), so two builds of one commit give the same file name. The
# package's sources are packaging/deb/; the binaries, man pages (help2man
# over --help) and bash completion are generated from this tree.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

PKG=pve-migration-router
BASE=0.1.0
DIST=${DIST:-$root/dist}
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}

version() {
	if [ -n "${DEB_VERSION:-}" ]; then
		echo "$DEB_VERSION"
		return
	fi
	local date hash
	if date=$(git -C "$root" log -1 --format=%cd --date=format:%Y%m%d 2>/dev/null) &&
		hash=$(git -C "$root" rev-parse --short=8 HEAD 2>/dev/null); then
		echo "$BASE+git$date.$hash"
	else
		echo "$BASE"
	fi
}

# deps installs Debian's tools when one is missing. apt runs only as root;
# elsewhere it says what to install.
deps() {
	local missing=()
	command -v dpkg-deb >/dev/null || missing+=(dpkg)
	command -v lintian >/dev/null || missing+=(lintian)
	command -v help2man >/dev/null || missing+=(help2man)
	command -v gzip >/dev/null || missing+=(gzip)
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
		echo "deb.sh: missing ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}" >&2
		return 1
	fi
	echo "deb.sh: installing ${missing[*]} (apt-get)" >&2
	# Other apt users on the machine: wait for the dpkg lock instead of failing.
	apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# install_file SRC DST MODE, with the parent directories.
install_file() {
	install -D -m "$3" "$1" "$2"
}

build() {
	deps
	local ver epoch stage out arch
	ver=$(version)
	arch=amd64
	epoch=$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)
	export SOURCE_DATE_EPOCH=$epoch
	stage=$(mktemp -d)
	trap 'rm -rf "$stage"' RETURN
	local pkg=$stage/pkg doc=$stage/pkg/usr/share/doc/$PKG
	mkdir -p "$pkg/DEBIAN" "$pkg/usr/bin"

	echo "deb.sh: building $PKG $ver" >&2
	# PIE (Debian's hardening default): a static-pie ELF, no libc needed.
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath -buildvcs=false -buildmode=pie \
		-ldflags "-s -w -X github.com/pve-migration/router/internal/routerapp.Version=$ver" \
		-o "$pkg/usr/bin/" ./cmd/migration-router ./cmd/migration-ctl
	chmod 0755 "$pkg/usr/bin/"*

	# Manual pages from --help, so they never drift from the flags.
	mkdir -p "$pkg/usr/share/man/man1"
	help2man --no-info --no-discard-stderr --version-string="$ver" --section=1 \
		--name="PVE network migration decision service (Envoy ext_proc)" \
		"$pkg/usr/bin/migration-router" >"$stage/migration-router.1"
	help2man --no-info --no-discard-stderr --version-string="$ver" --section=1 \
		--name="operate the PVE network API migration (phase, status, explain)" \
		"$pkg/usr/bin/migration-ctl" >"$stage/migration-ctl.1"
	for m in migration-router migration-ctl; do
		gzip -9n <"$stage/$m.1" >"$pkg/usr/share/man/man1/$m.1.gz"
	done

	# Shell completion, from the command table.
	mkdir -p "$pkg/usr/share/bash-completion/completions" "$pkg/usr/share/zsh/vendor-completions"
	"$pkg/usr/bin/migration-ctl" completion bash >"$pkg/usr/share/bash-completion/completions/migration-ctl"
	"$pkg/usr/bin/migration-ctl" completion zsh >"$pkg/usr/share/zsh/vendor-completions/_migration-ctl"

	# systemd unit, flags file (a conffile), maintainer scripts.
	install_file packaging/deb/$PKG.service "$pkg/lib/systemd/system/$PKG.service" 0644
	install_file packaging/deb/default "$pkg/etc/default/$PKG" 0644
	for s in postinst prerm postrm; do
		install_file packaging/deb/$s "$pkg/DEBIAN/$s" 0755
	done
	echo "/etc/default/$PKG" >"$pkg/DEBIAN/conffiles"

	# Documentation and examples. Text over 4 KiB is compressed (Debian policy 12.3).
	install_file packaging/deb/copyright "$doc/copyright" 0644
	for f in README.md docs/runbook.md docs/failure-modes.md; do
		install_file "$f" "$doc/$(basename "$f")" 0644
	done
	local ex=$doc/examples
	for f in examples/*.conf; do
		install_file "$f" "$ex/$(basename "$f")" 0644
	done
	install_file envoy/envoy-pve-host.yaml "$ex/envoy/envoy-pve-host.yaml" 0644
	install_file examples/prometheus/rules.yml "$ex/prometheus/rules.yml" 0644
	install_file examples/prometheus/prometheus.yml "$ex/prometheus/prometheus.yml" 0644
	install_file examples/grafana/pve-migration-dashboard.json "$ex/grafana/pve-migration-dashboard.json" 0644
	for f in examples/grafana/provisioning/*/*.yaml; do
		install_file "$f" "$ex/grafana/${f#examples/grafana/}" 0644
	done
	# Examples stay as they are, to be copied into place.
	find "$doc" -path "$ex" -prune -o -type f -size +4k ! -name copyright ! -name '*.gz' -exec gzip -9n {} +
	# A native package's changelog: one entry for this build.
	{
		echo "$PKG ($ver) unstable; urgency=medium"
		echo
		echo "  * Build of $(git -C "$root" rev-parse HEAD 2>/dev/null || echo 'an unversioned tree')."
		echo
		echo " -- pve-migration-router maintainers <maintainers@users.noreply.r-seed-0caea706.example>  $(date -u -R -d "@$epoch")"
	} | gzip -9n >"$doc/changelog.gz"

	# Control file. The binaries are static (CGO_ENABLED=0): no Depends.
	local size
	size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
	cat >"$pkg/DEBIAN/control" <<EOF
Package: $PKG
Version: $ver
Architecture: $arch
Maintainer: pve-migration-router maintainers <maintainers@users.noreply.r-seed-0caea706.example>
Installed-Size: $size
Section: admin
Priority: optional
Suggests: prometheus
Description: traffic switch moving the PVE network API from Perl to Rust
 Envoy ext_proc decision service (migration-router) and operator CLI
 (migration-ctl) that move Proxmox VE's node network and SDN API from
 pveproxy to a Rust API daemon one endpoint class at a time, with a
 one-line rollback (migration-ctl set-phase perl-only).
 .
 The router can also run an embedded data plane in place of Envoy. It
 reads /etc/pve/network-migration.conf; the package never writes under
 /etc/pve. The systemd unit pve-migration-router.service is not enabled
 on installation and does not start without that file.
EOF
	(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$pkg/DEBIAN/md5sums"
	chmod 0644 "$pkg/DEBIAN/md5sums" "$pkg/DEBIAN/control" "$pkg/DEBIAN/conffiles"
	find "$pkg" -type d -exec chmod 0755 {} +
	find "$pkg" -exec touch -h -d "@$epoch" {} +

	mkdir -p "$DIST"
	out=$DIST/${PKG}_${ver}_${arch}.deb
	dpkg-deb --root-owner-group -Zxz --build "$pkg" "$out" >&2
	echo "$out"
}

lint() {
	deps
	local deb=${1:-$DIST/${PKG}_$(version)_amd64.deb}
	[ -f "$deb" ] || { echo "deb.sh: $deb not built (make deb)" >&2; exit 1; }
	echo "deb.sh: lintian $deb" >&2
	# Errors fail the build; warnings and notes are shown for the reviewer.
	lintian --fail-on error --display-level '>=warning' "$deb"
}

case "${1:-}" in
deps) deps ;;
build) build ;;
lint) shift; lint "$@" ;;
test)
	deb=$(build)
	lint "$deb"
	PVE_MIGRATION_DEB=$deb exec go test -count=1 -run 'TestDebPackage' ./packaging/...
	;;
version) version ;;
*)
	echo "usage: $0 deps|build|lint [DEB]|test|version" >&2
	exit 2
	;;
esac
