// Package packaging holds the Debian package's sources (deb/) and the test
// that checks a built package: its contents, an install with dpkg into a
// throwaway root, the installed binaries and the maintainer scripts.
// scripts/deb.sh builds the package with dpkg-deb (`make deb`); `make
// test-deb` builds, runs lintian and then this package's test. It has no
// Go API of its own.
package packaging
