package pveschema

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var validRules = map[Rule]bool{RuleRequired: true, RuleType: true, RuleEnum: true, RulePattern: true,
	RuleFormat: true, RuleRange: true, RuleLength: true, RuleExtra: true}

// FuzzCheckBody feeds arbitrary answer bodies to the network and SDN
// schemas. A check never panics, is deterministic, names only contract
// rules at paths under data, and one violation per path and rule.
// Seeds: the real PVE answers in testdata/examples and edits of them.
//
//	go test -run '^$' -fuzz FuzzCheckBody -fuzztime 30s ./internal/pveschema
func FuzzCheckBody(f *testing.F) {
	files, _ := filepath.Glob("testdata/examples/*.json")
	for _, fn := range files {
		b, err := os.ReadFile(fn)
		if err != nil {
			f.Fatal(err)
		}
		for ti := range fuzzTemplates {
			f.Add(uint8(ti), b)
		}
	}
	f.Add(uint8(0), []byte(`{"data":[{"iface":"eno1","type":"eth","mtu":"abc","netmask":"24","address":"1.2.3.4"}]}`))
	f.Add(uint8(2), []byte(`{"data":{"fabrics":[{"id":"f1","protocol":"ospf"}],"nodes":[{"fabric_id":"f1","node_id":"n1","protocol":"openfabric","interfaces":["name=eth0"]}]}}`))
	f.Add(uint8(1), []byte(`{"success":0,"data":null}`))
	f.Add(uint8(3), []byte(`{"data":[{"vnet":"v","type":"vnet","alias":"it's","tag":"0x10"}]}`))
	c, err := Embedded()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, ti uint8, body []byte) {
		tmpl := fuzzTemplates[int(ti)%len(fuzzTemplates)]
		a, errA := c.CheckBody(tmpl, "GET", body)
		b, errB := c.CheckBody(tmpl, "GET", body)
		if (errA == nil) != (errB == nil) || !reflect.DeepEqual(a, b) {
			t.Fatalf("not deterministic: %v %v / %v %v", a, errA, b, errB)
		}
		seen := map[string]bool{}
		for _, v := range a {
			if !validRules[v.Rule] {
				t.Fatalf("rule %q", v.Rule)
			}
			if v.Path != "data" && !strings.HasPrefix(v.Path, "data.") && !strings.HasPrefix(v.Path, "data[]") {
				t.Fatalf("path %q", v.Path)
			}
			k := v.Path + " " + string(v.Rule)
			if seen[k] {
				t.Fatalf("duplicate %s", k)
			}
			seen[k] = true
			if len(v.Example) > maxExample+len("…") {
				t.Fatalf("example too long: %d", len(v.Example))
			}
		}
	})
}

var fuzzTemplates = []string{
	"/nodes/{node}/network",
	"/nodes/{node}/network/{iface}",
	"/cluster/sdn/fabrics/all",
	"/cluster/sdn/vnets",
	"/cluster/sdn/zones",
	"/cluster/sdn/fabrics/node/{fabric_id}",
}

// FuzzTranslatePerlRegex: translation never panics, and what it produces
// either compiles or is an error (reported unchecked), never a panic.
func FuzzTranslatePerlRegex(f *testing.F) {
	for _, p := range []string{`(?^i:[\(\)-_.\w\d\s]{0,256})`, `(?^:^((?>[+-]?[\w\-\._=]+,?)+)$)`, `[A-Za-z0-9\-_\s]{,16}`,
		`a++`, `[[:alpha:]]`, `\0\w+=`, `[^]a]`, `(?^x:a)`, `\`, `[`, `(?^`} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		re, err := compilePerlAnchored(p)
		if err == nil && re == nil {
			t.Fatal("nil regexp without error")
		}
	})
}
