package routing

import (
	"bufio"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

type apiNode struct {
	Path     string                     `json:"path"`
	Info     map[string]json.RawMessage `json:"info"`
	Children []apiNode                  `json:"children"`
}

type methodPath struct{ method, path string }

// loadAPI reads every method+path of PVE 9.1's schema (testdata/apidata.json
// is the API viewer's apidata.js as JSON, copied from shared/pve-api).
func loadAPI(t testing.TB) []methodPath {
	raw, err := os.ReadFile("testdata/apidata.json")
	if err != nil {
		t.Fatal(err)
	}
	var roots []apiNode
	if err := json.Unmarshal(raw, &roots); err != nil {
		t.Fatal(err)
	}
	var out []methodPath
	var walk func([]apiNode)
	walk = func(ns []apiNode) {
		for _, n := range ns {
			for m := range n.Info {
				out = append(out, methodPath{m, n.Path})
			}
			walk(n.Children)
		}
	}
	walk(roots)
	return out
}

var placeholder = regexp.MustCompile(`\{[^}]+\}`)

// realistic fills a template's placeholders with values a real client sends.
func realistic(tmpl string) string {
	vals := map[string]string{
		"{node}": "pve1", "{iface}": "vmbr0", "{vmid}": "100", "{vnet}": "vnet1", "{zone}": "zone1",
		"{subnet}": "zone1-10.0.0.0-24", "{controller}": "evpn1", "{ipam}": "pve", "{dns}": "powerdns1",
		"{id}": "fabric1", "{fabric_id}": "fabric1", "{node_id}": "pve1", "{fabric}": "fabric1",
		"{pos}": "0", "{storage}": "local", "{seq}": "10", "{route-map-id}": "rm1", "{order}": "10",
	}
	return placeholder.ReplaceAllStringFunc(tmpl, func(s string) string {
		if v, ok := vals[s]; ok {
			return v
		}
		return "x1"
	})
}

// expectedCategory is the contract's category table applied to a schema
// path, written independently of the catalogue.
func expectedCategory(method, p string) Category {
	switch {
	case p == "/nodes/{node}/network" && method == "GET", p == "/nodes/{node}/network/{iface}" && method == "GET":
		return NodeNetworkRead
	case p == "/nodes/{node}/network" && (method == "PUT" || method == "DELETE"):
		return NodeNetworkBasicWrite
	case p == "/nodes/{node}/network" && method == "POST", p == "/nodes/{node}/network/{iface}":
		return NodeNetworkAdvancedWrite // no type given: advanced
	case p == "/cluster/sdn" || strings.HasPrefix(p, "/cluster/sdn/"):
		if method == "GET" {
			return SDNRead
		}
		return SDNWrite
	case strings.HasPrefix(p, "/nodes/{node}/sdn"):
		if method == "GET" {
			return SDNRead
		}
		return SDNWrite
	}
	return NotNetwork
}

func TestEveryPVEEndpoint(t *testing.T) {
	api := loadAPI(t)
	if len(api) != 649 {
		t.Fatalf("apidata has %d method+path pairs, want 649", len(api))
	}
	network := 0
	for _, mp := range api {
		want := expectedCategory(mp.method, mp.path)
		for _, prefix := range []string{"/api2/json", "/api2/extjs"} {
			path := prefix + realistic(mp.path)
			c := Classify(mp.method, path, "")
			if c.Category != want {
				t.Errorf("%s %s: category %s, want %s", mp.method, path, c.Category, want)
			}
			if want != NotNetwork && c.Template != mp.path {
				t.Errorf("%s %s: template %q, want %q", mp.method, path, c.Template, mp.path)
			}
			// Every non-network endpoint stays on Perl in every phase,
			// whatever the flags and even with every template promoted.
			for _, ph := range Phases() {
				p := Policy{Phase: ph, FallbackEnabled: true, Features: Features{true, true}, Endpoints: promoteAll()}
				d := Decide(&p, Request{Method: mp.method, Path: path})
				if want == NotNetwork && d.Backend != Perl {
					t.Errorf("%s %s in %s went to %s", mp.method, path, ph, d.Backend)
				}
			}
		}
		if want != NotNetwork {
			network++
		}
	}
	t.Logf("%d schema endpoints, %d of them network", len(api), network)
	if network != 80 {
		t.Errorf("%d network endpoints in the schema, want 80", network)
	}
}

func promoteAll() map[string]EndpointRule {
	m := map[string]EndpointRule{}
	for _, tm := range Templates() {
		m[tm] = EndpointRule{UseRust: ptr(true)}
	}
	return m
}

// TestCatalogueMatchesEndpointsTSV checks that the catalogue covers exactly
// the node-network and SDN rows of shared/pve-api/endpoints.tsv, including
// the newer prefix-list and route-map endpoints missing from the schema.
func TestCatalogueMatchesEndpointsTSV(t *testing.T) {
	f, err := os.Open("testdata/endpoints.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[methodPath]bool{}
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		if cols[4] == "other-network" {
			continue
		}
		want[methodPath{cols[0], strings.TrimPrefix(cols[1], "/api2/json")}] = true
	}
	got := map[methodPath]bool{}
	for _, tm := range Templates() {
		for _, m := range TemplateMethods(tm) {
			got[methodPath{m, tm}] = true
		}
	}
	for mp := range want {
		if !got[mp] {
			t.Errorf("endpoints.tsv has %s %s, the catalogue does not", mp.method, mp.path)
		}
	}
	for mp := range got {
		if !want[mp] {
			t.Errorf("catalogue has %s %s, endpoints.tsv does not", mp.method, mp.path)
		}
	}
	if len(want) != 97 {
		t.Errorf("endpoints.tsv has %d network method+paths, want 97", len(want))
	}
}
