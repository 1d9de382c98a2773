package server_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/routing"
	"github.com/pve-migration/router/server/extproctest"
)

// TestCanaryUserFromCredentials: the canary is read from the API token
// header or the ticket cookie, over real gRPC; at rust-read-only a
// canary's basic writes go to rust, everyone else's stay on perl, and
// advanced writes never move early. The secret reaches no observer.
func TestCanaryUserFromCredentials(t *testing.T) {
	snap := snapshot(routing.RustReadOnly, func(s *config.Snapshot) {
		s.Policy.Canary = routing.Canary{Users: []string{"terraform@pve!ci", "alice@pve"}}
	})
	h := newHarness(t, snap, harnessOpts{})
	const basic = "/api2/json/nodes/pve1/network?type=eth&iface=eth1"
	const advanced = "/api2/json/nodes/pve1/network?type=bridge&iface=vmbr9"
	t.Run("type from the body", func(t *testing.T) {
		for i, tc := range []struct {
			body, auth, want string
		}{
			{"type=eth&iface=eth7", "PVEAPIToken=terraform@pve!ci=SECRET-1", "rust"},
			{"type=bridge&iface=vmbr7", "PVEAPIToken=terraform@pve!ci=SECRET-1", "perl"},
			{"type=eth&iface=eth7", "PVEAPIToken=bob@pve!ci=SECRET-1", "perl"},
		} {
			res := h.do(t, extproctest.Request{Method: "POST", Path: "/api2/json/nodes/pve1/network", Body: []byte(tc.body),
				Headers:  map[string]string{"authorization": tc.auth, "content-type": "application/x-www-form-urlencoded", "x-request-id": fmt.Sprintf("canary-body-%d", i)},
				Upstream: extproctest.Upstream{Status: 200, ServedBy: tc.want, Attempts: 1}})
			if res.Backend != tc.want {
				t.Errorf("%s with %s: routed to %s, want %s", tc.body, tc.auth[:28], res.Backend, tc.want)
			}
		}
	})
	for i, tc := range []struct {
		name         string
		path         string
		headers      map[string]string
		backend, why string
	}{
		{"canary token, basic write", basic, map[string]string{"authorization": "PVEAPIToken=terraform@pve!ci=SECRET-1"}, "rust", "canary"},
		{"canary token, space form", basic, map[string]string{"authorization": "PVEAPIToken terraform@pve!ci=SECRET-1"}, "rust", "canary"},
		{"other token of a canary user's realm", basic, map[string]string{"authorization": "PVEAPIToken=terraform@pve!other=SECRET-1"}, "perl", "phase"},
		{"other user's token", basic, map[string]string{"authorization": "PVEAPIToken=bob@pve!ci=SECRET-1"}, "perl", "phase"},
		{"canary user's ticket", basic, map[string]string{"cookie": "PVEAuthCookie=PVE:alice@pve:65A1B2C3::SECRET-1"}, "rust", "canary"},
		{"canary user's token (user entry covers its tokens)", basic, map[string]string{"authorization": "PVEAPIToken=alice@pve!laptop=SECRET-1"}, "rust", "canary"},
		{"canary token, advanced write never early", advanced, map[string]string{"authorization": "PVEAPIToken=terraform@pve!ci=SECRET-1"}, "perl", "phase"},
		{"no credentials", basic, nil, "perl", "phase"},
		{"canary read is rust by phase anyway", "/api2/json/nodes/pve1/network", map[string]string{"authorization": "PVEAPIToken=terraform@pve!ci=SECRET-1"}, "rust", "phase"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("canary-%d", i)
			hdr := map[string]string{"x-request-id": id}
			for k, v := range tc.headers {
				hdr[k] = v
			}
			method := "POST"
			if !strings.Contains(tc.path, "type=") {
				method = "GET"
			}
			res := h.do(t, extproctest.Request{Method: method, Path: tc.path, Headers: hdr,
				Upstream: extproctest.Upstream{Status: 200, ServedBy: tc.backend, Attempts: 1}})
			if res.Backend != tc.backend {
				t.Fatalf("routed to %s, want %s", res.Backend, tc.backend)
			}
			ev := h.obs.byRequestID(t, id, 2)
			if got := ev[0].dec.Decision.Reason.String(); got != tc.why {
				t.Errorf("reason %s, want %s", got, tc.why)
			}
			if s := fmt.Sprintf("%+v", ev); strings.Contains(s, "SECRET") {
				t.Errorf("observer saw the secret: %s", s)
			}
		})
	}
}
