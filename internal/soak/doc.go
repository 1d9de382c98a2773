// Package soak holds the router's soak test (TestSoak): the embedded data
// plane, the decision service and two demo PVE backends run in one process
// on loopback, under mixed read/write traffic with both authentication
// styles, while the phase flips through the watched config file, the rust
// backend fails in every way the demo can (errors, latency, crash,
// refused connections) and the decision service is restarted once.
//
// It passes when no GET ever failed, no write was applied twice (or
// replayed on perl after rust may have acted on it), and heap, goroutines
// and open file descriptors stay flat.
//
//	go test ./internal/soak                     # the 30-second version (make test)
//	SOAK_DURATION=10m go test -timeout 30m ./internal/soak   # make soak
//
// There is no non-test code: the package exists for its test.
package soak
