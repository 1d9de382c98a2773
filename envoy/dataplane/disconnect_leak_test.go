package dataplane

import (
	"context"
	"net/http"
	"runtime"
	"testing"
	"time"
)

// TestClientDisconnectsLeakNothing: clients that give up while rust is
// still answering (an extjs GET whose body the upstream stage is holding,
// and a JSON GET streaming), over the in-process ext_proc link and over
// gRPC, leave no goroutine behind: not the link's server side, not the
// stream's closing reader, not the upstream connection's loops.
func TestClientDisconnectsLeakNothing(t *testing.T) {
	for _, inProcess := range []bool{true, false} {
		name := "grpc"
		if inProcess {
			name = "in-process"
		}
		t.Run(name, func(t *testing.T) {
			// A per-try timeout far beyond the wait below: only the
			// client's going away may end the stalled attempts.
			extra := "[endpoints.\"/api2/json/nodes/{node}/network\"]\nrust_timeout = 120\n"
			e := newEnv(t, envOptions{phase: "rust-read-only", extra: extra, inProcess: inProcess, rustMiddleware: stallExtjsBody})
			e.do("GET", netPath, nil, nil) // warm-up
			time.Sleep(50 * time.Millisecond)
			g0 := runtime.NumGoroutine()
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			const n = 30
			for i := range n {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				req, _ := http.NewRequestWithContext(ctx, "GET", e.url+extjsNet, nil)
				if resp, err := client.Do(req); err == nil {
					_ = resp.Body.Close()
					t.Fatalf("request %d: an answer (%d) from a stalled rust within 100ms", i, resp.StatusCode)
				}
				cancel()
			}
			client.CloseIdleConnections()
			var g int
			// The link's idle workers exit after a second; the stream
			// closers after remote_close_timeout.
			waitFor(t, 20*time.Second, "goroutines back to the baseline", func() bool {
				g = runtime.NumGoroutine()
				return g <= g0+3
			})
			t.Logf("%d aborted requests: goroutines %d -> %d", n, g0, g)
		})
	}
}
