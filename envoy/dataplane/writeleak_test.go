package dataplane

import (
	"net/url"
	"os"
	"runtime"
	"testing"
	"time"
)

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// TestWritesLeakNoConnections: every write goes over a connection of its
// own (freshConnTransport); after many of them, answered with a body, with
// no body, and refused, the process must hold no more connections or
// goroutines than before (each leaked connection would be two fds, the
// client's and the demo backend's, plus its read and write loops).
func TestWritesLeakNoConnections(t *testing.T) {
	e := newEnv(t, envOptions{phase: "rust-basic-write"})
	// Warm up: a read, and one write, so pools and workers exist.
	e.do("GET", netPath, nil, nil)
	e.do("PUT", netPath, nil, nil)
	runtime.GC()
	time.Sleep(100 * time.Millisecond)
	fds0, g0 := openFDs(t), runtime.NumGoroutine()
	const n = 60
	for i := range n {
		switch i % 3 {
		case 0:
			if r := e.do("PUT", netPath, nil, nil); r.status != 200 {
				t.Fatalf("PUT %d: %d", i, r.status)
			}
		case 1:
			e.do("POST", netPath, url.Values{"iface": {"eth9"}, "type": {"eth"}}, nil)
		case 2:
			e.do("DELETE", netPath, nil, nil)
		}
	}
	var fds, g int
	waitFor(t, 20*time.Second, "fds and goroutines back to the baseline", func() bool {
		runtime.GC()
		fds, g = openFDs(t), runtime.NumGoroutine()
		return fds <= fds0+4 && g <= g0+8
	})
	t.Logf("after %d writes: fds %d -> %d, goroutines %d -> %d", n, fds0, fds, g0, g)
}
