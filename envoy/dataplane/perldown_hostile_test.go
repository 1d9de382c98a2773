package dataplane_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pve-migration/router/envoy/dataplane"
)

// TestPerlDown: pveproxy is down. What rust serves keeps working; what
// goes to perl, including every not-network request, gets Envoy's 503
// "upstream connect error" at once (no retry: the perl route has no retry
// policy, and the fallback of a rust GET has nowhere to go); a DELETE
// whose interface type cannot be looked up on perl counts as advanced.
// Nothing hangs.
func TestPerlDown(t *testing.T) {
	e := newHostileEnv(t, "rust-basic-write", dataplane.ServeOptions{})
	e.stopPerl()
	c := &http.Client{Timeout: 20 * time.Second}
	defer c.CloseIdleConnections()
	do := func(method, path string, form url.Values) (int, string, string) {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequest(method, e.url+path, body)
		if err != nil {
			t.Fatal(err)
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		start := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s %s took %v with perl down", method, path, d)
		}
		return resp.StatusCode, resp.Header.Get("X-Pve-Served-By"), string(b)
	}

	// rust's categories: served.
	if code, by, _ := do("GET", "/api2/json/nodes/pve1/network", nil); code != 200 || by != "rust" {
		t.Errorf("read: %d from %q, want 200 from rust", code, by)
	}
	if code, by, body := do("POST", "/api2/json/nodes/pve1/network", url.Values{"iface": {"eth9"}, "type": {"eth"}, "comments": {"perl down"}}); code != 200 || by != "rust" {
		t.Errorf("basic write: %d from %q, want 200 from rust: %s", code, by, body)
	}
	// A PUT of an existing interface is basic only if its current type,
	// looked up on perl, is too: perl is down, so it is unknown, i.e.
	// advanced: perl in this phase, 503 (issue 13, finding 3).
	if code, _, _ := do("PUT", "/api2/json/nodes/pve1/network/eno1", url.Values{"type": {"eth"}, "comments": {"perl down"}}); code != http.StatusServiceUnavailable {
		t.Errorf("PUT eno1 with the type lookup failing: %d, want 503 (advanced -> perl)", code)
	}
	// perl's: a clear 503 from the data plane.
	for _, c := range []struct{ method, path string }{
		{"GET", "/api2/json/version"},
		{"GET", "/api2/json/cluster/sdn/zones"},
		{"POST", "/api2/json/nodes/pve1/network"}, // advanced: perl in rust-basic-write
	} {
		code, _, body := do(c.method, c.path, url.Values{"iface": {"vmbr9"}, "type": {"bridge"}})
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "connection failure") {
			t.Errorf("%s %s: %d %q, want 503 connection failure", c.method, c.path, code, body)
		}
	}
	// DELETE of an interface: its type is looked up on perl, which is
	// down, so it is unknown, i.e. advanced: perl in this phase, 503.
	if code, _, _ := do("DELETE", "/api2/json/nodes/pve1/network/eno1", nil); code != http.StatusServiceUnavailable {
		t.Errorf("DELETE eno1 with the type lookup failing: %d, want 503 (advanced -> perl)", code)
	}
	if n := len(e.rust.Requests()); n != 2 {
		t.Errorf("rust saw %d requests, want exactly the read and the basic write", n)
	}
}
