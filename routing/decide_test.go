package routing

import (
	"fmt"
	"testing"
	"time"
)

// Representative requests, one per category.
var categoryRequests = map[Category]Request{
	NotNetwork:               {Method: "GET", Path: "/api2/json/nodes/pve1/qemu"},
	NodeNetworkRead:          {Method: "GET", Path: "/api2/json/nodes/pve1/network"},
	NodeNetworkBasicWrite:    {Method: "PUT", Path: "/api2/json/nodes/pve1/network/eno1", IfaceType: "eth"},
	NodeNetworkAdvancedWrite: {Method: "POST", Path: "/api2/json/nodes/pve1/network", IfaceType: "bridge"},
	SDNRead:                  {Method: "GET", Path: "/api2/json/cluster/sdn/vnets"},
	SDNWrite:                 {Method: "PUT", Path: "/api2/json/cluster/sdn"},
}

// matrix is the contract's phase matrix, written as it is printed there:
// one letter per phase, perl-only .. rust-full.
var matrix = map[Category]string{
	NodeNetworkRead:          "PRRRRR",
	NodeNetworkBasicWrite:    "PPRRRR",
	NodeNetworkAdvancedWrite: "PPPRRR",
	SDNRead:                  "PPPPRR",
	SDNWrite:                 "PPPPRR",
	NotNetwork:               "PPPPPP",
}

func ptr[T any](v T) *T { return &v }

func TestDecideMatrix(t *testing.T) {
	for _, ph := range Phases() {
		for _, cat := range Categories() {
			for _, sdn := range []bool{false, true} {
				for _, adv := range []bool{false, true} {
					name := fmt.Sprintf("%s/%s/sdn=%v/adv=%v", ph, cat, sdn, adv)
					t.Run(name, func(t *testing.T) {
						p := DefaultPolicy()
						p.Phase = ph
						p.Features = Features{EnableSDNMigration: sdn, EnableAdvancedNetworking: adv}
						d := Decide(&p, categoryRequests[cat])
						if d.Category != cat {
							t.Fatalf("category = %s, want %s", d.Category, cat)
						}
						want := Perl
						if matrix[cat][ph] == 'R' {
							want = Rust
						}
						wantReason := ReasonPhase
						switch {
						case cat == NotNetwork:
							want, wantReason = Perl, ReasonNotNetwork
						case ph == PerlOnly:
							want, wantReason = Perl, ReasonPerlOnly
						case cat == NodeNetworkAdvancedWrite && !adv, (cat == SDNRead || cat == SDNWrite) && !sdn:
							want, wantReason = Perl, ReasonFeatureDisabled
						}
						if d.Backend != want || d.Reason != wantReason {
							t.Fatalf("got %s/%s, want %s/%s", d.Backend, d.Reason, want, wantReason)
						}
						if d.Backend == Rust && (!d.Fallback || d.RustTimeout != 30*time.Second) {
							t.Fatalf("rust decision without default fallback/timeout: %+v", d)
						}
						if d.Backend == Perl && (d.Fallback || d.RustTimeout != 0) {
							t.Fatalf("perl decision carries rust settings: %+v", d)
						}
					})
				}
			}
		}
	}
}

func TestDecideOverrides(t *testing.T) {
	const list = "/nodes/{node}/network"
	const iface = "/nodes/{node}/network/{iface}"
	get := Request{Method: "GET", Path: "/api2/json/nodes/pve1/network"}
	post := Request{Method: "POST", Path: "/api2/extjs/nodes/pve1/network", IfaceType: "eth"}
	del := Request{Method: "DELETE", Path: "/api2/json/nodes/pve1/network/vmbr0"}
	sdn := Request{Method: "GET", Path: "/api2/json/cluster/sdn/zones"}
	tests := []struct {
		name     string
		phase    Phase
		fallback bool
		feat     Features
		eps      map[string]EndpointRule
		req      Request
		backend  Backend
		reason   Reason
		fb       bool
		timeout  time.Duration
	}{
		{"promote GET in perl-only is beaten by rollback", PerlOnly, true, Features{true, true},
			map[string]EndpointRule{list: {UseRust: ptr(true)}}, get, Perl, ReasonPerlOnly, false, 0},
		{"seed: promote GET only", RustReadOnly, true, Features{false, true},
			map[string]EndpointRule{list: {UseRust: ptr(true), RustMethods: []string{"GET"}}}, get, Rust, ReasonEndpointOverride, true, 30 * time.Second},
		{"seed: POST not in rust_methods stays perl", RustFull, true, Features{true, true},
			map[string]EndpointRule{list: {UseRust: ptr(true), RustMethods: []string{"GET"}}}, post, Perl, ReasonEndpointOverride, false, 0},
		{"promote write beyond phase", RustReadOnly, true, Features{false, true},
			map[string]EndpointRule{list: {UseRust: ptr(true)}}, post, Rust, ReasonEndpointOverride, true, 30 * time.Second},
		{"pin to perl beats matrix", RustFull, true, Features{true, true},
			map[string]EndpointRule{list: {UseRust: ptr(false)}}, get, Perl, ReasonEndpointOverride, false, 0},
		{"entry without use_rust only tunes", RustReadOnly, true, Features{false, true},
			map[string]EndpointRule{list: {FallbackOnError: ptr(false), RustTimeout: 5 * time.Second}}, get, Rust, ReasonPhase, false, 5 * time.Second},
		{"entry without use_rust does not promote", PerlOnly + 1, true, Features{false, true},
			map[string]EndpointRule{list: {RustTimeout: 5 * time.Second}}, post, Perl, ReasonPhase, false, 0},
		{"global fallback off", RustReadOnly, false, Features{false, true}, nil, get, Rust, ReasonPhase, false, 30 * time.Second},
		{"global fallback off beats endpoint on", RustReadOnly, false, Features{false, true},
			map[string]EndpointRule{list: {FallbackOnError: ptr(true)}}, get, Rust, ReasonPhase, false, 30 * time.Second},
		{"feature flag beats promotion", RustFull, true, Features{false, true},
			map[string]EndpointRule{"/cluster/sdn/zones": {UseRust: ptr(true)}}, sdn, Perl, ReasonFeatureDisabled, false, 0},
		{"delete with unknown type is advanced, flag off", RustFull, true, Features{true, false},
			map[string]EndpointRule{iface: {UseRust: ptr(true)}}, del, Perl, ReasonFeatureDisabled, false, 0},
		{"override on other template does not apply", RustReadOnly, true, Features{false, true},
			map[string]EndpointRule{iface: {UseRust: ptr(false)}}, get, Rust, ReasonPhase, true, 30 * time.Second},
		{"promote with method list on DELETE", RustBasicWrite, true, Features{false, true},
			map[string]EndpointRule{iface: {UseRust: ptr(true), RustMethods: []string{"DELETE"}, RustTimeout: time.Second}}, del, Rust, ReasonEndpointOverride, true, time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Policy{Phase: tc.phase, FallbackEnabled: tc.fallback, FallbackTimeout: 30 * time.Second, Features: tc.feat, Endpoints: tc.eps}
			d := Decide(&p, tc.req)
			if d.Backend != tc.backend || d.Reason != tc.reason || d.Fallback != tc.fb || d.RustTimeout != tc.timeout {
				t.Fatalf("got %s/%s fallback=%v timeout=%s, want %s/%s fallback=%v timeout=%s",
					d.Backend, d.Reason, d.Fallback, d.RustTimeout, tc.backend, tc.reason, tc.fb, tc.timeout)
			}
		})
	}
}

func TestInterfaceTypes(t *testing.T) {
	basic := []string{"eth", "alias"}
	advanced := []string{"bridge", "bond", "vlan", "OVSBridge", "OVSBond", "OVSPort", "OVSIntPort", "vnet", "fabric", "unknown", "", "ETH", "Eth", "eth "}
	for _, m := range []string{"POST /api2/json/nodes/pve1/network", "PUT /api2/json/nodes/pve1/network/eno1", "DELETE /api2/json/nodes/pve1/network/eno1"} {
		var method, path string
		fmt.Sscan(m, &method, &path)
		for _, ty := range basic {
			if c := Classify(method, path, ty); c.Category != NodeNetworkBasicWrite || !c.NeedsType {
				t.Errorf("%s type=%q: %+v, want basic", m, ty, c)
			}
		}
		for _, ty := range advanced {
			if c := Classify(method, path, ty); c.Category != NodeNetworkAdvancedWrite || !c.NeedsType {
				t.Errorf("%s type=%q: %+v, want advanced", m, ty, c)
			}
		}
	}
	for _, m := range []string{"PUT", "DELETE"} {
		if c := Classify(m, "/api2/json/nodes/pve1/network", "bridge"); c.Category != NodeNetworkBasicWrite || c.NeedsType {
			t.Errorf("%s apply/revert: %+v, want basic without type", m, c)
		}
	}
}

func TestPhaseParse(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"perl-only", "perl-only"}, {"PerlOnly", "perl-only"}, {"PERL-ONLY", "perl-only"},
		{"rust-read-only", "rust-read-only"}, {"RustReadOnly", "rust-read-only"}, {"rustreadonly", "rust-read-only"},
		{"RustBasicWrite", "rust-basic-write"}, {"rust-advanced", "rust-advanced"}, {"RustSdn", "rust-sdn"},
		{"rust_full", "rust-full"}, {" RustFull ", "rust-full"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			p, err := ParsePhase(tc.in)
			if err != nil || p.String() != tc.want {
				t.Fatalf("ParsePhase(%q) = %s, %v; want %s", tc.in, p, err, tc.want)
			}
		})
	}
	for _, tc := range []struct{ in, want string }{
		{"rust-readonly-x", `unknown phase "rust-readonly-x" (valid: perl-only, rust-read-only, rust-basic-write, rust-advanced, rust-sdn, rust-full); did you mean "rust-read-only"?`},
		{"rust-ful", `unknown phase "rust-ful" (valid: perl-only, rust-read-only, rust-basic-write, rust-advanced, rust-sdn, rust-full); did you mean "rust-full"?`},
		{"banana", `unknown phase "banana" (valid: perl-only, rust-read-only, rust-basic-write, rust-advanced, rust-sdn, rust-full)`},
		{"", `unknown phase "" (valid: perl-only, rust-read-only, rust-basic-write, rust-advanced, rust-sdn, rust-full)`},
	} {
		t.Run("bad/"+tc.in, func(t *testing.T) {
			_, err := ParsePhase(tc.in)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("ParsePhase(%q) error = %v\nwant %s", tc.in, err, tc.want)
			}
		})
	}
}

func TestTemplateKey(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"/api2/json/nodes/{node}/network", "/nodes/{node}/network", true},
		{"/api2/extjs/nodes/{node}/network/{iface}", "/nodes/{node}/network/{iface}", true},
		{"/nodes/{node}/network/", "/nodes/{node}/network", true},
		{"/api2/json/cluster/sdn", "/cluster/sdn", true},
		{"/api2/json/nodes/{node}/networks", "/nodes/{node}/networks", false},
		{"/api2/html/nodes/{node}/network", "/api2/html/nodes/{node}/network", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := TemplateKey(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("TemplateKey(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
	if s := Suggest("/nodes/{node}/networks", Templates()); s != "/nodes/{node}/network" {
		t.Fatalf("Suggest = %q", s)
	}
}
