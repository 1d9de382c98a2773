package dataplane

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/pve-migration/router/envoy"
)

// TestRouteMapMatchesLikeLowerMap: matching on the route table's own
// headers (routeMap) chooses the same route as matching on every header
// (lowerMap), for envoy.yaml's table and requests that carry, lack or
// disguise the headers it matches on.
func TestRouteMapMatchesLikeLowerMap(t *testing.T) {
	b, err := envoy.LoadBootstrap(envoy.DemoConfig())
	if err != nil {
		t.Fatal(err)
	}
	rt, err := envoy.NewRouteTable(b)
	if err != nil {
		t.Fatal(err)
	}
	names := routeHeaders(rt.HeaderNames())
	if len(names) == 0 {
		t.Fatalf("envoy.yaml's routes match on no header? %v", rt.HeaderNames())
	}
	t.Logf("route headers: %v", names)
	methods := []string{"GET", "POST", "PUT", "DELETE", "HEAD"}
	paths := []string{"/api2/json/nodes/pve1/network", "/api2/json/nodes/pve1/network/eth0?type=eth", "/api2/extjs/cluster/sdn", "/api2/json/version", "/"}
	headerSets := []http.Header{
		{},
		{"X-Pve-Backend": {"rust"}},
		{"X-Pve-Backend": {"perl"}},
		{"X-Pve-Backend": {"RUST"}},
		{"X-Pve-Backend": {""}},
		{"X-Pve-Backend": {"rust", "perl"}},
		{"X-Pve-Backend": {"rust"}, "Host": {"pve1:8006"}, "Content-Type": {"application/json"}, "Cookie": {"PVEAuthCookie=x"}},
		{"X-Pve-Backend": {"rust"}, "X-Envoy-Upstream-Rq-Timeout-Ms": {"1000"}, "X-Envoy-Max-Retries": {"2"}},
	}
	for _, m := range methods {
		for _, path := range paths {
			for i, h := range headerSets {
				t.Run(fmt.Sprintf("%s %s headers#%d", m, path, i), func(t *testing.T) {
					hs := &headerSet{h: h.Clone(), pseudo: map[string]string{":method": m, ":path": path, ":authority": "pve1:8006", ":scheme": "https"}}
					want, wantOK := rt.Match(m, path, hs.lowerMap())
					got, gotOK := rt.Match(m, path, hs.routeMap(names))
					if got.Name != want.Name || gotOK != wantOK {
						t.Errorf("routeMap chose %q (%v), lowerMap %q (%v)", got.Name, gotOK, want.Name, wantOK)
					}
				})
			}
		}
	}
}
