package pveschema

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

type realExample struct {
	file, template string
	body           []byte
}

// realExamples are the real PVE answers in testdata/examples (copied from
// the team's shared pve-api/examples; PROVENANCE.md says where from).
func realExamples(t testing.TB) []realExample {
	t.Helper()
	templates := map[string]string{
		"cluster_sdn_vnet_user1":    "/cluster/sdn/vnets/{vnet}",
		"cluster_sdn_vnets":         "/cluster/sdn/vnets",
		"nodes_network_iface_vmbr0": "/nodes/{node}/network/{iface}",
		"nodes_network_list":        "/nodes/{node}/network",
		"nodes_network_list_node2":  "/nodes/{node}/network",
	}
	files, err := filepath.Glob("testdata/examples/*.json")
	if err != nil || len(files) != 6 {
		t.Fatalf("examples: %v %v", files, err)
	}
	var out []realExample
	for _, f := range files {
		base := filepath.Base(f)
		name := base[:strings.Index(base, ".")]
		tmpl, ok := templates[name]
		if !ok {
			t.Fatalf("no template for %s", base)
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, realExample{file: base, template: tmpl, body: b})
	}
	return out
}

// Real PVE answers break their own schema in two places, and only there:
// netmask as a prefix length ("24") where the schema says ipv4mask, and a
// vnet alias with an apostrophe that its pattern does not allow. Every
// other lenient case these answers hold ("mtu":"1500"-style numeric
// strings, 1/0 booleans, "exists": null, keys the schema does not list
// such as bridge_fd and bridge_stp) passes.
func TestRealExamples(t *testing.T) {
	c, err := Embedded()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"cluster_sdn_vnet_user1.go-proxmox.pve7x.json":    {`data.alias pattern "myuser1's network"`},
		"cluster_sdn_vnets.go-proxmox.pve7x.json":         {`data[].alias pattern "myuser1's network"`},
		"nodes_network_iface_vmbr0.go-proxmox.pve7x.json": nil,
		"nodes_network_list.go-proxmox.pve7x.json":        {`data[].netmask format "24"`},
		"nodes_network_list.go-proxmox.pve9x.json":        {`data[].netmask format "32"`},
		"nodes_network_list_node2.go-proxmox.pve7x.json":  {`data[].netmask format "24"`},
	}
	for _, ex := range realExamples(t) {
		t.Run(ex.file, func(t *testing.T) {
			vs, err := c.CheckBody(ex.template, "GET", ex.body)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, v := range vs {
				got = append(got, v.Path+" "+string(v.Rule)+" "+v.Example)
			}
			sort.Strings(got)
			if !reflect.DeepEqual(got, want[ex.file]) {
				t.Fatalf("got %q\nwant %q", got, want[ex.file])
			}
		})
	}
}

// The strict cases on a real answer: each edit of the real 9.x network
// list breaks exactly one rule, where the issue says rust could.
func TestRealListEdited(t *testing.T) {
	c, err := Embedded()
	if err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile("testdata/examples/nodes_network_list.go-proxmox.pve9x.json")
	if err != nil {
		t.Fatal(err)
	}
	baseline := `data[].netmask format`
	cases := []struct {
		name, old, new, want string
	}{
		{"mtu as \"abc\"", `"iface": "eno1"`, `"iface": "eno1", "mtu": "abc"`, "data[].mtu type"},
		{"mtu out of range", `"iface": "eno1"`, `"iface": "eno1", "mtu": 9`, "data[].mtu range"},
		{"bridge without its required type", `"type": "bridge",`, ``, "data[].type required"},
		{"interface type outside the enum", `"type": "eth",`, `"type": "ethernet",`, "data[].type enum"},
		{"bad interface name", `"iface": "eno1"`, `"iface": "eno1!"`, "data[].iface format"},
		{"active as \"yes\"", `"iface": "eno1"`, `"iface": "eno1", "active": "yes"`, "data[].active type"},
		{"families entry outside the enum", `"type": "eth",`, `"type": "eth", "families": ["ipx"],`, "data[].families[] enum"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := strings.Replace(string(base), tc.old, tc.new, 1)
			if body == string(base) {
				t.Fatalf("edit %q not applied", tc.old)
			}
			vs, err := c.CheckBody("/nodes/{node}/network", "GET", []byte(body))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, v := range vs {
				if s := v.Path + " " + string(v.Rule); s != baseline {
					got = append(got, s)
				}
			}
			if !reflect.DeepEqual(got, []string{tc.want}) {
				t.Fatalf("got %q, want [%q]", got, tc.want)
			}
		})
	}
}

// The SDN fabric schemas combine oneOf by type-property with property
// strings; an openfabric node and an ospf node as pve-network writes them.
func TestEmbeddedFabricNodes(t *testing.T) {
	c, err := Embedded()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, data string
		want       []string
	}{
		{"openfabric and ospf nodes", `[
			{"fabric_id":"fab1","node_id":"pve1","protocol":"openfabric","ip":"10.0.0.1","interfaces":["name=ens19,hello_multiplier=3","name=ens20,ip=10.1.0.1/31"],"digest":"abc"},
			{"fabric_id":"ospf1","node_id":"pve2","protocol":"ospf","ip":"10.0.1.1","interfaces":["name=ens21"]}]`, nil},
		{"ospf interface with an openfabric key", `[
			{"fabric_id":"ospf1","node_id":"pve2","protocol":"ospf","interfaces":["name=ens21,hello_multiplier=3"]}]`, []string{"data[].interfaces[] format"}},
		{"bad node name", `[{"fabric_id":"fab1","node_id":"pve_1","protocol":"openfabric"}]`, []string{"data[].node_id format"}},
		{"unknown protocol", `[{"fabric_id":"fab1","node_id":"pve1","protocol":"bgp","interfaces":[]}]`, []string{"data[].protocol enum"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vs, err := c.Check("/cluster/sdn/fabrics/node", "GET", []byte(tc.data))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, v := range vs {
				got = append(got, v.Path+" "+string(v.Rule))
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %q want %q (%+v)", got, tc.want, vs)
			}
		})
	}
}
