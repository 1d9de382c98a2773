package dataplane

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// stallExtjsBody answers every extjs GET with rust's headers and the start
// of a body, then stalls until the request is cancelled: a daemon that
// hangs half-way through its answer.
func stallExtjsBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, "/api2/extjs/") {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"data":[`))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Minute):
		}
	})
}

// TestExtjsStalledBodyIsPerTryTimeout: the upstream stage holds rust's
// extjs answer until its body is complete, so nothing has gone to the
// client when the body stalls. As in Envoy (whose per_try_timeout runs
// until the response is complete) that is a per-try timeout, retried on
// perl; before, the client waited for the route timeout and got a
// truncated 200 from rust.
func TestExtjsStalledBodyIsPerTryTimeout(t *testing.T) {
	extra := "[endpoints.\"/api2/json/nodes/{node}/network\"]\nrust_timeout = 1\n"
	for _, inProcess := range []bool{false, true} {
		name := "grpc"
		if inProcess {
			name = "in-process"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, envOptions{phase: "rust-read-only", extra: extra, inProcess: inProcess, rustMiddleware: stallExtjsBody})
			r, err := e.try("GET", extjsNet, nil, nil)
			if err != nil {
				t.Fatalf("GET %s: %v (a broken answer reached the client)", extjsNet, err)
			}
			if r.status != 200 || r.servedBy != "perl" || r.attempts != "2" {
				t.Fatalf("GET %s: %d served by %q after %s attempts: %.200s", extjsNet, r.status, r.servedBy, r.attempts, r.body)
			}
			if ok, _ := extjsBody(t, r); ok != 1 {
				t.Errorf("success %v, want perl's 1: %s", ok, r.body)
			}
			// The json format has no upstream stage: its body streams to
			// the client once the headers came, as before.
			if r := e.do("GET", netPath, nil, nil); r.servedBy != "rust" {
				t.Errorf("json GET served by %q, want rust", r.servedBy)
			}
		})
	}
}
