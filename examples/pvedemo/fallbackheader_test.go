package pvedemo

import "testing"

// TestFallbackHeader: the rust flavour marks a failed extjs answer (HTTP
// 200, status >= 500 in the body) with x-pve-fallback: STATUS unless
// NoFallbackHeader; never a json error, an extjs 4xx or the perl flavour.
func TestFallbackHeader(t *testing.T) {
	const extjs = "/api2/extjs/nodes/pve1/network"
	cases := []struct {
		name     string
		opts     Options
		path     string
		want     string
		wantCode int
	}{
		{"rust extjs failure", Options{Flavor: FlavorRust, Faults: Faults{ErrorRate: 1}}, extjs, "500", 200},
		{"rust without the header", Options{Flavor: FlavorRust, NoFallbackHeader: true, Faults: Faults{ErrorRate: 1}}, extjs, "", 200},
		{"rust json failure", Options{Flavor: FlavorRust, Faults: Faults{ErrorRate: 1}}, "/api2/json/nodes/pve1/network", "", 500},
		{"rust extjs 4xx", Options{Flavor: FlavorRust}, extjs + "/nosuch0", "", 200},
		{"rust extjs success", Options{Flavor: FlavorRust}, extjs, "", 200},
		{"perl extjs failure", Options{Flavor: FlavorPerl, Faults: Faults{ErrorRate: 1}}, extjs, "", 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := startBackend(t, tc.opts)
			r := b.do(t, "GET", tc.path, nil)
			if r.status != tc.wantCode {
				t.Fatalf("status %d, want %d: %s", r.status, tc.wantCode, r.raw)
			}
			if got := r.header.Get("X-Pve-Fallback"); got != tc.want {
				t.Errorf("x-pve-fallback %q, want %q", got, tc.want)
			}
		})
	}
}
