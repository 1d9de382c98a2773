package pveschema

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestAgainstPVEJSONSchema runs PVE's own checker as the oracle: with
// PVE_COMMON_SRC naming pve-common's src directory (PVE/JSONSchema.pm,
// PVE/ParseUtils.pm, PVE/Exception.pm) and perl with JSON::XS,
// Devel::Cycle and Net::IP installed (Debian: libjson-xs-perl,
// libdevel-cycle-perl, libnet-ip-perl), generated answers for the router's network and SDN
// GETs are checked by check_prop and by this package, and the (path,
// rule) sets must be equal.
//
//	PVE_COMMON_SRC=~/src/pve-common/src go test -run AgainstPVE ./internal/pveschema
func TestAgainstPVEJSONSchema(t *testing.T) {
	src := os.Getenv("PVE_COMMON_SRC")
	if src == "" {
		t.Skip("PVE_COMMON_SRC not set (pve-common's src directory)")
	}
	if _, err := os.Stat(filepath.Join(src, "PVE", "JSONSchema.pm")); err != nil {
		t.Fatalf("PVE_COMMON_SRC: %v", err)
	}
	perl, err := exec.LookPath("perl")
	if err != nil {
		t.Skip("no perl")
	}
	s, err := Parse(embeddedJSON(t))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	templates := []string{
		"/nodes/{node}/network", "/nodes/{node}/network/{iface}",
		"/cluster/sdn/vnets", "/cluster/sdn/vnets/{vnet}", "/cluster/sdn/zones", "/cluster/sdn/zones/{zone}",
		"/cluster/sdn/controllers", "/cluster/sdn/ipams", "/cluster/sdn/dns", "/cluster/sdn/vnets/{vnet}/subnets",
		"/cluster/sdn/fabrics/all", "/cluster/sdn/fabrics/node", "/cluster/sdn/fabrics/fabric",
		"/nodes/{node}/sdn/zones/{zone}/content", "/cluster/sdn/dry-run",
	}
	rng := rand.New(rand.NewPCG(19, 3))
	type kase struct {
		template string
		schema   map[string]any
		data     json.RawMessage
	}
	var cases []kase
	for _, ex := range realExamples(t) {
		var env map[string]json.RawMessage
		if err := json.Unmarshal(ex.body, &env); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, kase{ex.template, s.returns["GET "+ex.template], env["data"]})
	}
	for _, tmpl := range templates {
		schema, ok := s.returns["GET "+tmpl]
		if !ok {
			t.Fatalf("no schema for %s", tmpl)
		}
		for i := 0; i < 150; i++ {
			b, err := json.Marshal(generate(rng, schema, 0))
			if err != nil {
				t.Fatal(err)
			}
			cases = append(cases, kase{tmpl, schema, b})
		}
	}
	type perlCase struct {
		Schema map[string]any  `json:"schema"`
		Data   json.RawMessage `json:"data"`
	}
	in := make([]perlCase, len(cases))
	for i, k := range cases {
		in[i] = perlCase{k.schema, k.data}
	}
	inJSON, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(perl, "-I"+src, "testdata/pvecheck.pl")
	cmd.Stdin = bytes.NewReader(inJSON)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("perl: %v\n%s", err, stderr.String())
	}
	var res struct {
		Backend string        `json:"backend"`
		Results [][][2]string `json:"results"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.Results) != len(cases) {
		t.Fatalf("perl output: %v (%d for %d cases)", err, len(res.Results), len(cases))
	}
	if res.Backend != "JSON::Backend::XS" {
		// JSON::PP reads numbers differently (1e20 keeps its text under
		// XS, -0 is 0): only PVE's backend is a faithful oracle.
		t.Skipf("perl's JSON backend is %s; PVE uses JSON::XS (libjson-xs-perl)", res.Backend)
	}
	perlErrs := res.Results
	violations := 0
	for i, k := range cases {
		vs, err := c.Check(k.template, "GET", k.data)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, v := range vs {
			got = append(got, v.Path+" "+string(v.Rule))
		}
		want := perlToRules(t, perlErrs[i])
		sort.Strings(got)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s %s:\n Go   %q\n Perl %q\n (%q)", k.template, k.data, got, want, perlErrs[i])
		}
		violations += len(got)
	}
	t.Logf("%d answers, %d violations, all as PVE's check_prop reports them", len(cases), violations)
}

var perlIndex = regexp.MustCompile(`\[\d+\]`)

// perlToRules turns check_prop's error hash into this package's
// "path rule" form.
func perlToRules(t *testing.T, errs [][2]string) []string {
	set := map[string]bool{}
	for _, e := range errs {
		path, msgs := e[0], e[1]
		if path == "_died" {
			t.Fatalf("check_prop died: %s", msgs)
		}
		switch {
		case path == "_root":
			path = "data"
		case strings.HasPrefix(path, "["):
			path = "data" + path
		default:
			path = "data." + path
		}
		path = perlIndex.ReplaceAllString(path, "[]")
		for _, m := range strings.Split(msgs, `\n`) {
			set[path+" "+string(ruleOfMessage(t, m))] = true
		}
	}
	var out []string
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func ruleOfMessage(t *testing.T, m string) Rule {
	// A property string's nested errors follow "invalid format - format
	// error" on lines of their own; they are that one format error.
	if strings.HasPrefix(m, "invalid format") {
		return RuleFormat
	}
	for _, r := range []struct {
		frag string
		rule Rule
	}{
		{"property is missing", RuleRequired}, {"missing property required by", RuleRequired},
		{"type check", RuleType}, {"an object is required", RuleType}, {"value must be an object", RuleType},
		{"does not have a value in the enumeration", RuleEnum}, {"not a valid oneOf variant", RuleEnum},
		{"does not match the regex pattern", RulePattern}, {"invalid format", RuleFormat},
		{"may only be", RuleLength}, {"must be at least", RuleLength},
		{"maximum value", RuleRange}, {"minimum value", RuleRange},
		{"not defined in schema", RuleExtra}, {"cannot set both", RuleExtra},
	} {
		if strings.Contains(m, r.frag) {
			return r.rule
		}
	}
	t.Fatalf("unknown check_prop message %q", m)
	return ""
}

// valuePool mixes valid and invalid values of every kind PVE answers carry.
var valuePool = []any{"abc", "eth0", "vmbr0", "eno1.2", "10.0.0.1", "10.0.0.0/24", "10.0.0.0/7", "fd00::1", "fd00::/64",
	"255.255.255.0", "24", "aa:bb:cc:dd:ee:ff", "node1", "it's", "Büro Netz", "", "65000:100", "49.0001.1921.6800.1002.00",
	"name=eth0", "name=eth0,ip=10.0.0.1/24", "eth0,hello_multiplier=1", "openfabric", "ospf", "evpn", "simple", "vnet", "new",
	"2-4094", "eth0 eth1", "1", "0", "yes", 1500, 0, 1, -1, 70000, 1.5, true, false, nil, []any{}, map[string]any{},
	[]any{"inet"}, "1500", "static", "manual", "bridge", "1e3", "+5", " 24", "24\n", "١٢", "\u212aeth0", "eth0\n",
	strings.Repeat("x", 300), "10.0.0.1\n", "0x10", -0.5, 1e20, "inet6", "a\u00a0b", "\x00", "ab,cd", "=x"}

// generate makes a value for schema: mostly shaped by it, sometimes not,
// with keys left out and extra keys added.
func generate(rng *rand.Rand, schema map[string]any, depth int) any {
	if rng.IntN(8) == 0 || depth > 4 {
		return valuePool[rng.IntN(len(valuePool))]
	}
	if e, ok := schema["enum"].([]any); ok && rng.IntN(3) > 0 {
		return e[rng.IntN(len(e))]
	}
	switch schema["type"] {
	case "array":
		n := rng.IntN(3)
		out := make([]any, n)
		items, _ := schema["items"].(map[string]any)
		if items == nil {
			items = map[string]any{}
		}
		if oneOf, ok := schema["oneOf"].([]any); ok && len(oneOf) > 0 {
			if alt, ok := oneOf[rng.IntN(len(oneOf))].(map[string]any); ok {
				if it, ok := alt["items"].(map[string]any); ok {
					items = it
				}
			}
		}
		for i := range out {
			out[i] = generate(rng, items, depth+1)
		}
		return out
	case "object":
		props, _ := schema["properties"].(map[string]any)
		out := map[string]any{}
		for k, ps := range props {
			if rng.IntN(5) == 0 {
				continue
			}
			if p, ok := ps.(map[string]any); ok {
				out[k] = generate(rng, p, depth+1)
			}
		}
		if rng.IntN(5) == 0 {
			out["extra-key"] = valuePool[rng.IntN(len(valuePool))]
		}
		return out
	case "integer", "number":
		return []any{1500, "1500", "abc", 0, -1, 70000, "24", 1.5, 4094, 1, 2, "1e3", "+5", "24\n", "١٢", 1e20, "-0", ".5"}[rng.IntN(18)]
	case "boolean":
		return []any{1, 0, "1", true, false, "yes", 2}[rng.IntN(7)]
	}
	if _, ok := schema["format"].(map[string]any); ok {
		return []any{"name=eth0", "eth0,ip=10.0.0.1/24", "name=eth0,hello_multiplier=3", "x=y", "eth0,eth1", "name=", "eth0,ip6=fd00::1/64"}[rng.IntN(7)]
	}
	return valuePool[rng.IntN(len(valuePool))]
}
