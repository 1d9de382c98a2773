package dataplane

import (
	"encoding/json"
	"testing"

	"github.com/pve-migration/router/examples/pvedemo"
)

const extjsNet = "/api2/extjs/nodes/pve1/network"

// extjsBody decodes an extjs answer's success and status.
func extjsBody(t *testing.T, r result) (success, status float64) {
	t.Helper()
	var env struct {
		Success float64 `json:"success"`
		Status  float64 `json:"status"`
	}
	if err := json.Unmarshal(r.body, &env); err != nil {
		t.Fatalf("extjs answer is not JSON: %v: %s", err, r.body)
	}
	return env.Success, env.Status
}

// TestExtjsFallback: the web UI format answers errors with HTTP 200 and
// {"success":0,"status":N}. A rust GET answer with status >= 500 is retried
// on perl, whether rust marks it with x-pve-fallback or only the upstream
// ext_proc stage reads it; the client never sees the marker header or a
// rewritten status.
func TestExtjsFallback(t *testing.T) {
	for _, tc := range []struct {
		name     string
		noHeader bool
	}{{"rust marks the failure", false}, {"rust does not mark it", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{phase: "rust-read-only", rustFaults: pvedemo.Faults{ErrorRate: 1}, rustNoFallbackHeader: tc.noHeader})
			for _, path := range []string{extjsNet, extjsNet + "/eno1"} {
				r := e.do("GET", path, nil, nil)
				if r.status != 200 || r.servedBy != "perl" || r.attempts != "2" {
					t.Fatalf("GET %s: %d served by %q after %s attempts: %s", path, r.status, r.servedBy, r.attempts, r.body)
				}
				if ok, _ := extjsBody(t, r); ok != 1 {
					t.Errorf("GET %s: success %v, want perl's success 1: %s", path, ok, r.body)
				}
				if v := r.header.Get("X-Pve-Fallback"); v != "" {
					t.Errorf("GET %s: the client sees x-pve-fallback: %s", path, v)
				}
				if n := seen(e.rust, "GET", path); n != 1 {
					t.Errorf("GET %s: rust saw it %d times, want 1", path, n)
				}
			}
			// The same failure in json format was always retried.
			if r := e.do("GET", netPath, nil, nil); r.servedBy != "perl" || r.attempts != "2" {
				t.Errorf("json GET: served by %q after %s attempts", r.servedBy, r.attempts)
			}
		})
	}

	t.Run("a write is never retried", func(t *testing.T) {
		e := newEnv(t, envOptions{phase: "rust-basic-write", rustFaults: pvedemo.Faults{ErrorRate: 1}})
		r := e.do("PUT", extjsNet+"/eno1", form("type", "eth", "mtu", "9000"), nil)
		if r.status != 200 || r.servedBy != "rust" || r.attempts != "1" {
			t.Fatalf("PUT: %d served by %q after %s attempts: %s", r.status, r.servedBy, r.attempts, r.body)
		}
		if ok, st := extjsBody(t, r); ok != 0 || st != 500 {
			t.Errorf("PUT: success %v status %v, want rust's own 0 and 500", ok, st)
		}
		if v := r.header.Get("X-Pve-Fallback"); v != "" {
			t.Errorf("the client sees x-pve-fallback: %s", v)
		}
		if n := applied(e.perl, putIface); n != 0 || seen(e.perl, "PUT", extjsNet+"/eno1") != 0 {
			t.Errorf("the write reached perl (applied %d)", n)
		}
	})

	t.Run("a 4xx is an answer", func(t *testing.T) {
		e := newEnv(t, envOptions{phase: "rust-read-only"})
		r := e.do("GET", extjsNet+"/nosuch0", nil, nil)
		if r.status != 200 || r.servedBy != "rust" || r.attempts != "1" {
			t.Fatalf("GET missing interface: %d served by %q after %s attempts: %s", r.status, r.servedBy, r.attempts, r.body)
		}
		if ok, st := extjsBody(t, r); ok != 0 || st != 400 {
			t.Errorf("success %v status %v, want rust's own 0 and 400", ok, st)
		}
		if n := seen(e.perl, "GET", extjsNet+"/nosuch0"); n != 0 {
			t.Errorf("perl saw the GET %d times", n)
		}
	})

	t.Run("fallback off leaves rust's answer untouched", func(t *testing.T) {
		extra := "[endpoints.\"/api2/json/nodes/{node}/network\"]\nfallback_on_error = false\n"
		e := newEnv(t, envOptions{phase: "rust-read-only", extra: extra, rustFaults: pvedemo.Faults{ErrorRate: 1}, rustNoFallbackHeader: true})
		r := e.do("GET", extjsNet, nil, nil)
		if r.status != 200 || r.servedBy != "rust" || r.attempts != "1" {
			t.Fatalf("GET: %d served by %q after %s attempts: %s", r.status, r.servedBy, r.attempts, r.body)
		}
		if ok, st := extjsBody(t, r); ok != 0 || st != 500 {
			t.Errorf("success %v status %v, want rust's own 0 and 500", ok, st)
		}
	})
}
