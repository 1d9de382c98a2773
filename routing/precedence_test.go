package routing

import (
	"fmt"
	"testing"
	"time"
)

// TestPrecedenceExtended walks the second round's precedence (kill switch,
// node phases, remote node, gate, canary) one rule against the next, so
// that a reordering of Decide's cases fails here.
func TestPrecedenceExtended(t *testing.T) {
	const (
		get     = "GET"
		list    = "/api2/json/nodes/pve1/network"
		other   = "/api2/json/nodes/pve2/network"
		local   = "/api2/extjs/nodes/localhost/network"
		iface   = "/api2/json/nodes/pve1/network/eno1"
		zones   = "/api2/json/cluster/sdn/zones"
		nodeSDN = "/api2/json/nodes/pve1/sdn/zones/z1/content"
		bridge  = "/api2/json/nodes/pve1/network"
	)
	allOn := Features{EnableSDNMigration: true, EnableAdvancedNetworking: true}
	base := func(mod func(*Policy)) Policy {
		p := Policy{Phase: RustReadOnly, FallbackEnabled: true, FallbackTimeout: 30 * time.Second, Features: allOn,
			Local: Local{Node: "pve1"}}
		if mod != nil {
			mod(&p)
		}
		return p
	}
	canary := Canary{Users: []string{"terraform@pve!ci", "alice@pam"}}
	tests := []struct {
		name    string
		p       Policy
		r       Request
		backend Backend
		reason  Reason
	}{
		{"read in read-only phase", base(nil), Request{Method: get, Path: list}, Rust, ReasonPhase},
		{"kill switch beats everything but not-network", base(func(p *Policy) { p.Local.KillSwitch = true; p.Phase = RustFull }),
			Request{Method: get, Path: list}, Perl, ReasonKillSwitch},
		{"kill switch, not-network stays not-network", base(func(p *Policy) { p.Local.KillSwitch = true }),
			Request{Method: get, Path: "/api2/json/version"}, Perl, ReasonNotNetwork},
		{"kill switch beats endpoint promotion", base(func(p *Policy) {
			p.Local.KillSwitch = true
			p.Endpoints = map[string]EndpointRule{"/nodes/{node}/network": {UseRust: ptr(true)}}
		}), Request{Method: get, Path: list}, Perl, ReasonKillSwitch},
		{"node table beats top-level phase", base(func(p *Policy) { p.Phase = RustFull; p.Nodes = map[string]Phase{"pve1": RustReadOnly} }),
			Request{Method: "PUT", Path: iface, IfaceType: "eth"}, Perl, ReasonPhase},
		{"node table moves this node ahead", base(func(p *Policy) { p.Phase = PerlOnly; p.Nodes = map[string]Phase{"pve1": RustBasicWrite} }),
			Request{Method: "PUT", Path: iface, IfaceType: "eth"}, Rust, ReasonPhase},
		{"node pinned perl-only sends everything to perl", base(func(p *Policy) { p.Phase = RustFull; p.Nodes = map[string]Phase{"pve1": PerlOnly} }),
			Request{Method: get, Path: zones}, Perl, ReasonPerlOnly},
		{"another node's table does not apply here", base(func(p *Policy) { p.Phase = PerlOnly; p.Nodes = map[string]Phase{"pve2": RustFull} }),
			Request{Method: get, Path: list}, Perl, ReasonPerlOnly},
		{"cluster SDN follows the top-level phase", base(func(p *Policy) { p.Phase = RustSDN; p.Nodes = map[string]Phase{"pve1": RustReadOnly} }),
			Request{Method: get, Path: zones}, Rust, ReasonPhase},
		{"cluster SDN, top level perl-only, node ahead", base(func(p *Policy) { p.Phase = PerlOnly; p.Nodes = map[string]Phase{"pve1": RustFull} }),
			Request{Method: "PUT", Path: "/api2/json/cluster/sdn"}, Perl, ReasonPerlOnly},
		{"node SDN path follows the node's phase", base(func(p *Policy) { p.Phase = PerlOnly; p.Nodes = map[string]Phase{"pve1": RustFull} }),
			Request{Method: get, Path: nodeSDN}, Rust, ReasonPhase},
		{"remote node goes to perl", base(nil), Request{Method: get, Path: other}, Perl, ReasonRemoteNode},
		{"remote node beats endpoint promotion", base(func(p *Policy) {
			p.Endpoints = map[string]EndpointRule{"/nodes/{node}/network": {UseRust: ptr(true)}}
		}), Request{Method: get, Path: other}, Perl, ReasonRemoteNode},
		{"localhost is this node", base(nil), Request{Method: get, Path: local}, Rust, ReasonPhase},
		{"no node name: every node is local", base(func(p *Policy) { p.Local.Node = "" }), Request{Method: get, Path: other}, Rust, ReasonPhase},
		{"perl-only beats remote node", base(func(p *Policy) { p.Phase = PerlOnly }), Request{Method: get, Path: other}, Perl, ReasonPerlOnly},
		{"feature flag beats gate", base(func(p *Policy) {
			p.Phase = RustFull
			p.Features.EnableSDNMigration = false
			p.Local.Tripped = CategorySet(0).With(SDNRead)
		}), Request{Method: get, Path: zones}, Perl, ReasonFeatureDisabled},
		{"gate trip sends the category to perl", base(func(p *Policy) { p.Local.Tripped = CategorySet(0).With(NodeNetworkRead) }),
			Request{Method: get, Path: list}, Perl, ReasonGateTripped},
		{"gate trip beats endpoint promotion", base(func(p *Policy) {
			p.Local.Tripped = CategorySet(0).With(NodeNetworkRead)
			p.Endpoints = map[string]EndpointRule{"/nodes/{node}/network": {UseRust: ptr(true)}}
		}), Request{Method: get, Path: list}, Perl, ReasonGateTripped},
		{"gate trip of another category changes nothing", base(func(p *Policy) { p.Local.Tripped = CategorySet(0).With(SDNRead) }),
			Request{Method: get, Path: list}, Rust, ReasonPhase},
		{"canary basic write moves one phase early", base(func(p *Policy) { p.Canary = canary }),
			Request{Method: "PUT", Path: iface, IfaceType: "eth", User: "terraform@pve!ci"}, Rust, ReasonCanary},
		{"canary user entry covers its tokens", base(func(p *Policy) { p.Canary = canary }),
			Request{Method: "PUT", Path: iface, IfaceType: "eth", User: "alice@pam!laptop"}, Rust, ReasonCanary},
		{"token entry does not cover the user's other tokens", base(func(p *Policy) { p.Canary = canary }),
			Request{Method: "PUT", Path: iface, IfaceType: "eth", User: "terraform@pve!other"}, Perl, ReasonPhase},
		{"non-canary user stays on the matrix", base(func(p *Policy) { p.Canary = canary }),
			Request{Method: "PUT", Path: iface, IfaceType: "eth", User: "bob@pam"}, Perl, ReasonPhase},
		{"canary never moves advanced writes two phases early", base(func(p *Policy) { p.Canary = canary }),
			Request{Method: "POST", Path: bridge, IfaceType: "bridge", User: "alice@pam"}, Perl, ReasonPhase},
		{"canary in perl-only moves nothing", base(func(p *Policy) { p.Phase = PerlOnly; p.Canary = canary }),
			Request{Method: get, Path: list, User: "alice@pam"}, Perl, ReasonPerlOnly},
		{"canary does not beat a gate trip", base(func(p *Policy) {
			p.Phase = RustBasicWrite
			p.Canary = canary
			p.Local.Tripped = CategorySet(0).With(NodeNetworkAdvancedWrite)
		}), Request{Method: "POST", Path: bridge, IfaceType: "bridge", User: "alice@pam"}, Perl, ReasonGateTripped},
		{"canary does not beat endpoint pin", base(func(p *Policy) {
			p.Canary = canary
			p.Endpoints = map[string]EndpointRule{"/nodes/{node}/network/{iface}": {UseRust: ptr(false)}}
		}), Request{Method: "PUT", Path: iface, IfaceType: "eth", User: "alice@pam"}, Perl, ReasonEndpointOverride},
		{"canary for a remote node stays remote", base(func(p *Policy) { p.Canary = canary }),
			Request{Method: "PUT", Path: "/api2/json/nodes/pve2/network/eno1", IfaceType: "eth", User: "alice@pam"}, Perl, ReasonRemoteNode},
		{"canary advanced write at rust-basic-write", base(func(p *Policy) { p.Phase = RustBasicWrite; p.Canary = canary }),
			Request{Method: "POST", Path: bridge, IfaceType: "bridge", User: "alice@pam"}, Rust, ReasonCanary},
		{"canary respects the advanced feature flag", base(func(p *Policy) {
			p.Phase = RustBasicWrite
			p.Canary = canary
			p.Features.EnableAdvancedNetworking = false
		}), Request{Method: "POST", Path: bridge, IfaceType: "bridge", User: "alice@pam"}, Perl, ReasonFeatureDisabled},
		{"canary at 100 percent", base(func(p *Policy) { p.Canary = Canary{Percent: 100} }),
			Request{Method: "PUT", Path: iface, IfaceType: "eth", User: "anyone@pve"}, Rust, ReasonCanary},
		{"canary needs a user", base(func(p *Policy) { p.Canary = Canary{Percent: 100} }),
			Request{Method: "PUT", Path: iface, IfaceType: "eth"}, Perl, ReasonPhase},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(&tc.p, tc.r)
			if d.Backend != tc.backend || d.Reason != tc.reason {
				t.Fatalf("got %s/%s, want %s/%s", d.Backend, d.Reason, tc.backend, tc.reason)
			}
			if d.Backend == Rust && (!d.Fallback || d.RustTimeout != 30*time.Second) {
				t.Fatalf("rust decision without fallback/timeout: %+v", d)
			}
		})
	}
}

// TestCanaryPercentSticky: raising percent keeps every earlier user in, and
// the share of users picked is close to the percent.
func TestCanaryPercentSticky(t *testing.T) {
	const n = 10000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("user%d@pve!tok%d", i, i%7)
	}
	prev := map[string]bool{}
	for _, pct := range []int{1, 5, 10, 20, 50, 100} {
		c := Canary{Percent: pct}
		in := map[string]bool{}
		for _, id := range ids {
			if c.Includes(id) {
				in[id] = true
			}
		}
		for id := range prev {
			if !in[id] {
				t.Fatalf("raising percent to %d dropped %s", pct, id)
			}
		}
		if got, want := len(in), n*pct/100; got < want*8/10 || got > want*12/10+10 {
			t.Fatalf("percent %d picked %d of %d users, want about %d", pct, got, n, want)
		}
		prev = in
	}
	if (&Canary{Percent: 0}).Includes("user1@pve") {
		t.Fatal("percent 0 with no users picked a user")
	}
}

func TestCategorySet(t *testing.T) {
	var s CategorySet
	s = s.With(SDNWrite).With(NodeNetworkRead)
	if !s.Has(SDNWrite) || !s.Has(NodeNetworkRead) || s.Has(SDNRead) {
		t.Fatalf("set %b", s)
	}
	if got := s.List(); len(got) != 2 || got[0] != NodeNetworkRead || got[1] != SDNWrite {
		t.Fatalf("List = %v", got)
	}
	if s.Without(SDNWrite).Has(SDNWrite) {
		t.Fatal("Without kept the member")
	}
}

func TestReasonsNamed(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Reasons() {
		name := r.String()
		if seen[name] || name == "" || name[0] == 'r' && name[:6] == "reason" {
			t.Fatalf("reason %d has name %q", r, name)
		}
		seen[name] = true
	}
	if len(seen) != len(reasonNames) {
		t.Fatalf("Reasons() lists %d of %d reasons", len(seen), len(reasonNames))
	}
}
