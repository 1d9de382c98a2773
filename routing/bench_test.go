package routing

import (
	"testing"
	"time"
)

// BenchmarkDecide measures the per-request decision on typical paths. The
// baseline sub-benchmark is the cost of NormalizePath alone, so the ratio
// shows what classification and policy add.
func BenchmarkDecide(b *testing.B) {
	p := Policy{Phase: RustBasicWrite, FallbackEnabled: true, FallbackTimeout: 30 * time.Second,
		Features:  Features{EnableAdvancedNetworking: true},
		Endpoints: map[string]EndpointRule{"/nodes/{node}/network": {UseRust: ptr(true), RustMethods: []string{"GET"}}}}
	cases := []struct {
		name string
		r    Request
	}{
		{"list", Request{Method: "GET", Path: "/api2/json/nodes/pve1/network"}},
		{"iface-put", Request{Method: "PUT", Path: "/api2/extjs/nodes/pve1/network/eno1", IfaceType: "eth"}},
		{"sdn-vnets", Request{Method: "GET", Path: "/api2/json/cluster/sdn/vnets/vnet1/subnets"}},
		{"not-network", Request{Method: "GET", Path: "/api2/json/nodes/pve1/qemu/100/status/current"}},
		{"query", Request{Method: "GET", Path: "/api2/json/nodes/pve1/network?type=any_bridge&_dc=1700000000"}},
		{"dirty", Request{Method: "GET", Path: "/api2/json//nodes/pve1/./network/"}},
	}
	for _, tc := range cases {
		b.Run("baseline=normalize/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				NormalizePath(tc.r.Path)
			}
		})
		b.Run("decide/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Decide(&p, tc.r)
			}
		})
	}
}

// BenchmarkDecideEvidence is BenchmarkDecide's policy with every second
// round input on (node phases, a gate trip of another category, canary
// users and percent), against the same policy without them in the same
// run: the ratio is the cost of the evidence loop per decision.
func BenchmarkDecideEvidence(b *testing.B) {
	plain := Policy{Phase: RustBasicWrite, FallbackEnabled: true, FallbackTimeout: 30 * time.Second,
		Features: Features{EnableAdvancedNetworking: true}}
	full := plain
	full.Nodes = map[string]Phase{"pve1": RustBasicWrite, "pve2": RustReadOnly}
	full.Canary = Canary{Users: []string{"terraform@pve!ci", "alice@pam"}, Percent: 10}
	full.Local = Local{Node: "pve1", Tripped: CategorySet(0).With(SDNRead)}
	cases := []struct {
		name string
		r    Request
	}{
		{"list", Request{Method: "GET", Path: "/api2/json/nodes/pve1/network", User: "bob@pam"}},
		{"iface-put", Request{Method: "PUT", Path: "/api2/extjs/nodes/pve1/network/eno1", IfaceType: "eth", User: "bob@pam"}},
		{"advanced-canary", Request{Method: "POST", Path: "/api2/json/nodes/pve1/network", IfaceType: "bridge", User: "terraform@pve!ci"}},
		{"advanced-other", Request{Method: "POST", Path: "/api2/json/nodes/pve1/network", IfaceType: "bridge", User: "bob@pam!tf"}},
		{"sdn-vnets", Request{Method: "GET", Path: "/api2/json/cluster/sdn/vnets/vnet1/subnets"}},
	}
	for _, tc := range cases {
		b.Run("baseline=plain/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Decide(&plain, tc.r)
			}
		})
		b.Run("evidence/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Decide(&full, tc.r)
			}
		})
	}
}
