package routing

import (
	"strings"
	"testing"
)

func TestPathTricks(t *testing.T) {
	tests := []struct {
		method, path string
		want         Category
		template     string
	}{
		{"GET", "/api2/json/nodes/pve1/network", NodeNetworkRead, "/nodes/{node}/network"},
		{"GET", "/api2/json//nodes//pve1///network", NodeNetworkRead, "/nodes/{node}/network"},
		{"GET", "/api2/json/./nodes/./pve1/network/.", NodeNetworkRead, "/nodes/{node}/network"},
		{"GET", "/api2/json/nodes/pve1/qemu/../network", NodeNetworkRead, "/nodes/{node}/network"},
		{"GET", "/api2/json/nodes/pve1/network/", NodeNetworkRead, "/nodes/{node}/network"},
		{"GET", "/api2/json/nodes/pve1/network?type=bridge&_dc=1", NodeNetworkRead, "/nodes/{node}/network"},
		{"GET", "/api2/json/nodes/pve1/network#frag", NotNetwork, ""},
		{"POST", "/api2/json/nodes/pve1/network#?type=eth", NotNetwork, ""},
		{"GET", "/api2/json/nodes/pve1/%6Eetwork", NodeNetworkRead, "/nodes/{node}/network"},
		{"GET", "/api2/json/nodes/pve1/network/eth0%3A1", NodeNetworkRead, "/nodes/{node}/network/{iface}"},
		{"GET", "/api2/extjs/nodes/pve1/network/vmbr0", NodeNetworkRead, "/nodes/{node}/network/{iface}"},
		// Escapes that leave the network API must not be routed as network.
		{"GET", "/api2/json/nodes/pve1/network/%2e%2e/%2E%2E/qemu", NotNetwork, ""},
		{"GET", "/api2/json/nodes/pve1/network/..%2f..%2fqemu", NotNetwork, ""},
		{"GET", "/api2/json/nodes/pve1%2Fnetwork", NotNetwork, ""},
		{"GET", "/api2/json/nodes/pve1/network%2F", NotNetwork, ""},
		{"GET", "/api2/json/nodes/pve1/network/vm%5Cbr0", NotNetwork, ""},
		{"GET", "/api2/json/nodes/pve1/network/%zz", NotNetwork, ""},
		{"GET", "/api2/json/nodes/pve1/network/%", NotNetwork, ""},
		{"GET", "/api2/json/nodes/pve1/network/a\x00b", NotNetwork, ""},
		{"GET", "/api2/json/nodes/pve1/network/\xff", NotNetwork, ""},
		{"GET", "/api2/json/nodes/pve1/network/%00", NotNetwork, ""},
		{"GET", "/api2/json/../../nodes/pve1/network", NotNetwork, ""},
		{"GET", "/api2/json/nodes/pve1/network/../../../access/ticket", NotNetwork, ""},
		// Formats and places the Rust API does not serve.
		{"GET", "/api2/html/nodes/pve1/network", NotNetwork, ""},
		{"GET", "/api2/spiceconfig/nodes/pve1/network", NotNetwork, ""},
		{"GET", "/API2/JSON/nodes/pve1/network", NotNetwork, ""},
		{"GET", "/api2/jsonx/nodes/pve1/network", NotNetwork, ""},
		{"GET", "/nodes/pve1/network", NotNetwork, ""},
		{"GET", "/", NotNetwork, ""},
		{"GET", "", NotNetwork, ""},
		{"GET", "api2/json/nodes/pve1/network", NotNetwork, ""},
		{"GET", "/api2/json", NotNetwork, ""},
		{"GET", "/api2/json/nodes/pve1/network/vmbr0/extra", NotNetwork, ""},
		// Methods: case-sensitive, and only the four PVE knows.
		{"get", "/api2/json/nodes/pve1/network", NotNetwork, ""},
		{"Get", "/api2/json/nodes/pve1/network", NotNetwork, ""},
		{"HEAD", "/api2/json/nodes/pve1/network", NotNetwork, ""},
		{"OPTIONS", "/api2/json/nodes/pve1/network", NotNetwork, ""},
		{"PATCH", "/api2/json/nodes/pve1/network/vmbr0", NotNetwork, ""},
		{"POST", "/api2/json/nodes/pve1/network/vmbr0", NotNetwork, ""},
		{"POST", "/api2/json/nodes/pve1/sdn", NotNetwork, ""},
		// Literal segments beat parameters.
		{"GET", "/api2/json/cluster/sdn/fabrics/all", SDNRead, "/cluster/sdn/fabrics/all"},
		{"PUT", "/api2/json/cluster/sdn", SDNWrite, "/cluster/sdn"},
		{"POST", "/api2/extjs/cluster/sdn/lock", SDNWrite, "/cluster/sdn/lock"},
		{"GET", "/api2/json/cluster/sdn/unknown-thing", NotNetwork, ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+strings.ToValidUTF8(tc.path, "?"), func(t *testing.T) {
			c := Classify(tc.method, tc.path, "eth")
			if c.Category != tc.want || c.Template != tc.template {
				t.Fatalf("got %s %q, want %s %q", c.Category, c.Template, tc.want, tc.template)
			}
			p := Policy{Phase: RustFull, FallbackEnabled: true, Features: Features{true, true}}
			if d := Decide(&p, Request{Method: tc.method, Path: tc.path}); tc.want == NotNetwork && d.Backend != Perl {
				t.Fatalf("not-network request went to %s", d.Backend)
			}
		})
	}
}

func TestNormalizePathAllocs(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		if _, ok := NormalizePath("/api2/json/nodes/pve1/network/vmbr0?x=1"); !ok {
			t.Fatal("not ok")
		}
	})
	if allocs != 0 {
		t.Fatalf("clean path normalisation allocates %v times", allocs)
	}
}

func TestIfaceType(t *testing.T) {
	tests := []struct {
		name, ct, body, query, want string
		wantErr                     string
	}{
		{"form", "application/x-www-form-urlencoded", "iface=vmbr1&type=bridge&autostart=1", "", "bridge", ""},
		{"form default content type", "", "type=eth&iface=eno1", "", "eth", ""},
		{"form with charset", "application/x-www-form-urlencoded; charset=UTF-8", "type=alias", "", "alias", ""},
		{"json", "application/json", `{"iface":"vmbr1","type":"OVSBridge"}`, "", "OVSBridge", ""},
		{"json charset", "application/json;charset=UTF-8", `{"type":"eth"}`, "", "eth", ""},
		{"json null type", "application/json", `{"type":null}`, "", "", ""},
		{"query only", "", "", "type=vlan", "vlan", ""},
		{"query and body agree", "", "type=eth", "type=eth", "eth", ""},
		{"no type", "", "iface=x", "", "", ""},
		{"empty", "", "", "", "", ""},
		{"query and body disagree", "", "type=eth", "type=bridge", "", "ambiguous"},
		{"repeated form key", "", "type=eth&type=bridge", "", "", "ambiguous"},
		{"json type not a string", "application/json", `{"type":1}`, "", "", "not a string"},
		{"bad json", "application/json", `{"type":`, "", "", "JSON body"},
		{"multipart", "multipart/form-data; boundary=x", "--x--", "", "", "neither form-urlencoded nor JSON"},
		{"bad escape", "", "type=%zz", "", "", "form body"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := IfaceType(tc.ct, []byte(tc.body), tc.query)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	big := make([]byte, MaxBodyBytes+1)
	if _, err := IfaceType("", big, ""); err == nil {
		t.Fatal("oversized body accepted")
	}
	secret := "password=hunter2-secret&type=%zz"
	if _, err := IfaceType("", []byte(secret), ""); err != nil && strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error echoes the body: %v", err)
	}
}
