package pveschema

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// compileOne compiles one return schema (JSON text) as "GET /t".
func compileOne(t testing.TB, schema string) *Checker {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(schema), &m); err != nil {
		t.Fatalf("test schema: %v", err)
	}
	c, err := Compile(&Schema{returns: map[string]map[string]any{"GET /t": m}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// short is a violation without its message, for table comparisons.
type short struct {
	Path string
	Rule Rule
}

func shorten(vs []Violation) []short {
	var out []short
	for _, v := range vs {
		out = append(out, short{v.Path, v.Rule})
	}
	return out
}

type ruleCase struct {
	name   string
	schema string
	data   string
	want   []short // nil: no violation
}

func runRuleCases(t *testing.T, cases []ruleCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := compileOne(t, tc.schema)
			vs, err := c.Check("/t", "GET", []byte(tc.data))
			if err != nil {
				t.Fatal(err)
			}
			if got := shorten(vs); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("data %s against %s:\n got %v\nwant %v\n(%+v)", tc.data, tc.schema, got, tc.want, vs)
			}
		})
	}
}

func v(path string, r Rule) []short { return []short{{path, r}} }

// The cases follow JSONSchema.pm's check_type and is_integer/is_number.
func TestRuleType(t *testing.T) {
	integer := `{"type":"integer"}`
	number := `{"type":"number"}`
	boolean := `{"type":"boolean"}`
	str := `{"type":"string"}`
	runRuleCases(t, []ruleCase{
		// lenient: integer and number are matched on the scalar's text
		{"integer as JSON number", integer, `24`, nil},
		{"integer as string (PVE's netmask, mtu)", integer, `"24"`, nil},
		{"integer with sign", integer, `"+5"`, nil},
		{"negative integer", integer, `-3`, nil},
		{"integer written 1.0 is Perl's 1", integer, `1.0`, nil},
		{"integer written 1e3 is Perl's 1000", integer, `1e3`, nil},
		{"integer with trailing newline (Perl's $)", integer, `"24\n"`, nil},
		{"integer beyond 64 bits keeps its text (JSON::XS)", `{"format":"pve-node"}`, `100000000000000000000`, nil},
		{"-0 is Perl's 0", `{"enum":["0"]}`, `-0`, nil},
		{"1E400 is Perl's Inf, no number", number, `1E400`, v("data", RuleType)},
		{"range on \"24\\n\" reads 24", `{"type":"number","minimum":1,"maximum":600}`, `"24\n"`, nil},
		{"other scripts' digits: an integer whose value is 0", `{"type":"integer","minimum":1}`, `"١٢"`, v("data", RuleRange)},
		{"fraction is no integer", integer, `1.5`, v("data", RuleType)},
		{"text is no integer", integer, `"abc"`, v("data", RuleType)},
		{"empty string is no integer", integer, `""`, v("data", RuleType)},
		{"spaces are no integer", integer, `" 24"`, v("data", RuleType)},
		{"JSON true is no integer", integer, `true`, v("data", RuleType)},
		{"array is no integer", integer, `[1]`, v("data", RuleType)},
		{"number as string", number, `"1.5"`, nil},
		{"number .5", number, `".5"`, nil},
		{"number 5.", number, `"5."`, nil},
		{"number with exponent", number, `"1e-3"`, nil},
		{"number text", number, `"1.5.1"`, v("data", RuleType)},
		{"hex is no number", number, `"0x10"`, v("data", RuleType)},
		// lenient: boolean is 0/1 as number or string, or a JSON boolean
		{"boolean 1", boolean, `1`, nil},
		{"boolean 0", boolean, `0`, nil},
		{"boolean \"1\"", boolean, `"1"`, nil},
		{"boolean \"0\"", boolean, `"0"`, nil},
		{"boolean true", boolean, `true`, nil},
		{"boolean false", boolean, `false`, nil},
		{"boolean 2", boolean, `2`, v("data", RuleType)},
		{"boolean \"true\" string", boolean, `"true"`, v("data", RuleType)},
		{"boolean \"yes\"", boolean, `"yes"`, v("data", RuleType)},
		{"boolean 1.0 is Perl's 1", boolean, `1.0`, nil},
		// string accepts any non-reference scalar
		{"string", str, `"x"`, nil},
		{"number is a string", str, `1500`, nil},
		{"JSON boolean is a reference, no string", str, `true`, v("data", RuleType)},
		{"object is no string", str, `{}`, v("data", RuleType)},
		{"array is no string", str, `[]`, v("data", RuleType)},
		{"array", `{"type":"array"}`, `[]`, nil},
		{"object is no array", `{"type":"array"}`, `{}`, v("data", RuleType)},
		{"string is no object", `{"type":"object"}`, `"x"`, v("data", RuleType)},
		{"null type: null passes", `{"type":"null"}`, `null`, nil},
		{"null type: a value fails", `{"type":"null"}`, `"UPID:x"`, v("data", RuleType)},
		{"any", `{"type":"any"}`, `[{"a":1}]`, nil},
		{"no type checks nothing", `{}`, `{"x":[1]}`, nil},
		{"unknown type name passes scalars", `{"type":"weird"}`, `"x"`, nil},
		{"unknown type name fails references", `{"type":"weird"}`, `[]`, v("data", RuleType)},
		{"union type", `{"type":["integer","null"]}`, `"7"`, nil},
		{"union type miss", `{"type":["integer","boolean"]}`, `"x"`, v("data", RuleType)},
	})
}

func TestRuleRequiredAndExtra(t *testing.T) {
	obj := `{"type":"object","properties":{"iface":{"type":"string"},"mtu":{"type":"integer","optional":1}}}`
	closed := `{"type":"object","additionalProperties":0,"properties":{"iface":{"type":"string"}}}`
	runRuleCases(t, []ruleCase{
		{"all there", obj, `{"iface":"eth0","mtu":1500}`, nil},
		{"optional absent", obj, `{"iface":"eth0"}`, nil},
		{"optional null (Perl undef)", obj, `{"iface":"eth0","mtu":null}`, nil},
		{"required absent", obj, `{"mtu":1500}`, v("data.iface", RuleRequired)},
		{"required null", obj, `{"iface":null}`, v("data.iface", RuleRequired)},
		{"optional 0 means required", `{"properties":{"vnet":{"type":"string","optional":0}}}`, `{}`, v("data.vnet", RuleRequired)},
		{"group makes it optional", `{"properties":{"x":{"type":"string","group":"g"}}}`, `{}`, nil},
		{"extra keys allowed by default", obj, `{"iface":"eth0","bridge_fd":"0"}`, nil},
		{"extra keys allowed by additionalProperties 1", `{"additionalProperties":1,"properties":{}}`, `{"x":1}`, nil},
		{"extra key where additionalProperties is 0", closed, `{"iface":"e","x":1}`, v("data.x", RuleExtra)},
		{"extra key where additionalProperties is false", `{"additionalProperties":false,"properties":{}}`, `{"x":1}`, v("data.x", RuleExtra)},
		{"extra checked by additionalProperties schema", `{"additionalProperties":{"type":"integer"},"properties":{}}`, `{"x":"a","y":"2"}`, v("data.x", RuleType)},
		// check_prop only enters check_object with properties or a true
		// additionalProperties: `additionalProperties: 0` alone checks nothing.
		{"additionalProperties 0 without properties", `{"type":"object","additionalProperties":0}`, `{"x":1}`, nil},
		{"absent top-level data", `{"type":"array"}`, `null`, v("data", RuleRequired)},
		{"optional top-level data", `{"type":"array","optional":1}`, `null`, nil},
		{"array items", `{"type":"array","items":{"type":"object","properties":{"mtu":{"type":"integer"}}}}`,
			`[{"mtu":1500},{"mtu":"abc"},{}]`, []short{{"data[].mtu", RuleRequired}, {"data[].mtu", RuleType}}},
		{"one violation per path and rule in an answer", `{"type":"array","items":{"type":"object","properties":{"mtu":{"type":"integer"}}}}`,
			`[{"mtu":"x"},{"mtu":"y"},{"mtu":"z"}]`, v("data[].mtu", RuleType)},
		{"nested object", `{"properties":{"pending":{"type":"object","optional":1,"properties":{"tag":{"type":"integer"}}}}}`,
			`{"pending":{"tag":"x"}}`, v("data.pending.tag", RuleType)},
		{"JSON boolean where an object is described", `{"properties":{"a":{"type":"string"}}}`, `true`, v("data", RuleType)},
		{"requires: partner absent", `{"properties":{"address":{"type":"string","optional":1,"requires":"netmask"},"netmask":{"type":"string","optional":1}}}`,
			`{"address":"10.0.0.1"}`, v("data.netmask", RuleRequired)},
		{"requires: partner present", `{"properties":{"address":{"type":"string","optional":1,"requires":"netmask"},"netmask":{"type":"string","optional":1}}}`,
			`{"address":"10.0.0.1","netmask":"24"}`, nil},
		{"alias moves to its target", `{"properties":{"b":{"type":"integer"},"a":{"alias":"b"}}}`, `{"a":"5"}`, nil},
		{"alias value is checked as the target", `{"properties":{"b":{"type":"integer"},"a":{"alias":"b"}}}`, `{"a":"x"}`, v("data.b", RuleType)},
		{"alias and target both set", `{"properties":{"b":{"type":"integer"},"a":{"alias":"b"}}}`, `{"a":"5","b":6}`, v("data.a", RuleExtra)},
	})
}

func TestRuleScalar(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{"enum hit", `{"enum":["bridge","eth"]}`, `"eth"`, nil},
		{"empty enum takes nothing", `{"enum":[]}`, `"eth"`, v("data", RuleEnum)},
		{"pattern \"0\" is false in Perl: not checked", `{"pattern":"0"}`, `"x"`, nil},
		{"type \"\" is false in Perl: not checked", `{"type":""}`, `[]`, nil},
		{"enum miss", `{"enum":["bridge","eth"]}`, `"Eth"`, v("data", RuleEnum)},
		{"enum compares as strings: number vs string", `{"enum":["1","2"]}`, `1`, nil},
		{"enum compares as strings: schema numbers", `{"enum":[1,2]}`, `"2"`, nil},
		{"enum: 1.0 is Perl's 1", `{"enum":["1"]}`, `1.0`, nil},
		{"pattern anchored at both ends", `{"pattern":"a+"}`, `"baa"`, v("data", RulePattern)},
		{"pattern hit", `{"pattern":"a+"}`, `"aaa"`, nil},
		{"pattern (?^i:) is case-insensitive", `{"pattern":"(?^i:abc)"}`, `"ABC"`, nil},
		{"pattern (?^:) is case-sensitive", `{"pattern":"(?^:abc)"}`, `"ABC"`, v("data", RulePattern)},
		{"pattern on a number's text", `{"pattern":"\\d+"}`, `42`, nil},
		{"pattern: Perl $ before a final newline", `{"pattern":"abc"}`, `"abc\n"`, nil},
		{"vnet alias with apostrophe (real PVE answer)", `{"pattern":"(?^i:[\\(\\)-_.\\w\\d\\s]{0,256})"}`, `"myuser1's network"`, v("data", RulePattern)},
		{"vnet alias with Unicode letters (Perl's \\w)", `{"pattern":"(?^i:[\\(\\)-_.\\w\\d\\s]{0,256})"}`, `"Büro Netz (2)"`, nil},
		{"maxLength", `{"maxLength":3}`, `"abcd"`, v("data", RuleLength)},
		{"maxLength counts characters", `{"maxLength":3}`, `"äöü"`, nil},
		{"minLength", `{"minLength":2}`, `"e"`, v("data", RuleLength)},
		{"length of a number's text", `{"maxLength":3}`, `65520`, v("data", RuleLength)},
		{"maximum", `{"type":"integer","maximum":65520}`, `"65521"`, v("data", RuleRange)},
		{"minimum", `{"type":"integer","minimum":1280}`, `1279`, v("data", RuleRange)},
		{"in range", `{"type":"integer","minimum":1280,"maximum":65520}`, `"1500"`, nil},
		{"range only applies to numbers", `{"minimum":5}`, `"abc"`, nil},
		{"range on a float", `{"type":"number","maximum":600}`, `600.5`, v("data", RuleRange)},
		// check_prop stops at the first rule that fails: format, pattern,
		// length, range, enum.
		{"format before pattern", `{"format":"ipv4","pattern":"x"}`, `"bad"`, v("data", RuleFormat)},
		{"pattern before length", `{"pattern":"a","maxLength":0}`, `"b"`, v("data", RulePattern)},
		{"length before range", `{"maxLength":1,"maximum":5}`, `"10"`, v("data", RuleLength)},
		{"range before enum", `{"maximum":5,"enum":["1"]}`, `"10"`, v("data", RuleRange)},
		{"type failure stops everything", `{"type":"integer","enum":["x"]}`, `"x"`, v("data", RuleType)},
		{"unknown format is never a violation", `{"format":"pve-no-such-format"}`, `"anything"`, nil},
		{"format regex is accepted as is", `{"format":"regex"}`, `"(["`, nil},
	})
}

// The formats the network and SDN schemas name, ported from JSONSchema.pm
// and pve-network.
func TestFormats(t *testing.T) {
	cases := []struct {
		format string
		ok     []string
		bad    []string
	}{
		{"ipv4", []string{"192.168.2.50", "0.0.0.0", "255.255.255.255"}, []string{"256.1.1.1", "1.2.3", "01.2.3.4", "1.2.3.4/24", ""}},
		{"ipv6", []string{"fe80::1", "::", "2001:db8::2:1", "::ffff:192.0.2.1", "fd00:0:0:0:0:0:0:1"}, []string{"fe80:::1", "1::2::3", "g::1", "192.168.1.1"}},
		{"ip", []string{"10.0.0.1", "fd00::1"}, []string{"host"}},
		{"ipv4mask", []string{"255.255.255.0", "0.0.0.0", "255.255.255.255", "255.255.254.0"}, []string{"24", "255.0.255.0", "255.255.255.1"}},
		{"CIDRv4", []string{"10.0.0.0/8", "192.168.2.50/32"}, []string{"10.0.0.0/7", "10.0.0.0/33", "10.0.0.0", "10.0.0.0/x"}},
		{"CIDRv6", []string{"fd00::/64", "fd00::1/128", "fd00::/8"}, []string{"fd00::/7", "fd00::/129", "fd00::"}},
		{"CIDR", []string{"10.0.0.0/24", "fd00::/64"}, []string{"10.0.0.0"}},
		{"pve-iface", []string{"eth0", "eno1.2", "vmbr0:1", "vmbr2.10", "EnP3s0", "ab"}, []string{"e", "1eth", "eth-0", "a23456789012345678901x", "eth0.x"}},
		{"pve-iface-list", []string{"eno1 eno2", "eno1,eno2;eno3", "", "eno1.2 vmbr2.10"}, []string{"eno1 bad!"}},
		{"pve-configid", []string{"local-lvm", "ab_c"}, []string{"a", "1ab", "a.b"}},
		{"mac-addr", []string{"aa:bb:cc:dd:ee:ff", "02:00:00:00:00:01", "BC:24:11:00:00:01"}, []string{"ab:bb:cc:dd:ee:ff", "aa:bb:cc:dd:ee", "aa-bb-cc-dd-ee-ff"}},
		{"pve-vlan-id-or-range-list", []string{"2-4094", "100", "2-4094 100", "10,20-30"}, []string{"1", "4095", "10-5", "10-10", "x"}},
		{"pve-node", []string{"pve1", "node-2"}, []string{"-pve", "pve_1", "pve."}},
		{"pve-node-list", []string{"pve1,pve2"}, []string{"pve1,_x"}},
		{"pve-ipv4-config", []string{"dhcp", "manual", "10.0.0.1/24"}, []string{"auto", "10.0.0.1"}},
		{"pve-ipv6-config", []string{"auto", "dhcp", "fd00::1/64"}, []string{"fd00::1"}},
		{"ip-list", []string{"10.0.0.1 fd00::1"}, []string{"10.0.0.1 x"}},
		{"dns-name", []string{"example.com", "a"}, []string{"-a.com", "a..b"}},
		{"address", []string{"example.com", "10.0.0.1"}, []string{"a_b"}},
		{"pve-sdn-fabric-id", []string{"ab", "fab1", "a"}, []string{"abcdefghi", "a_b"}},
		{"pve-sdn-isis-net", []string{"49.0001.1921.6800.1002.00"}, []string{"49.0001.00"}},
		{"pve-sdn-bgp-rt-list", []string{"65000:100", "65000:100,65000:200"}, []string{"65000", "4294967296:1"}},
		{"pve-storage-id", []string{"local-lvm", "nfs.1"}, []string{"a", "local-"}},
		{"pve-vmid", []string{"100", "999999999"}, []string{"99", "0100"}},
		{"email-opt", []string{"", "root@example.com"}, []string{"root@"}},
		{"urlencoded", []string{"a%20b"}, []string{"a b"}},
	}
	for _, tc := range cases {
		t.Run(tc.format, func(t *testing.T) {
			f, ok := resolveFormat(tc.format)
			if !ok {
				t.Fatalf("format %s not known", tc.format)
			}
			for _, s := range tc.ok {
				if !f(s) {
					t.Errorf("%s rejects %q", tc.format, s)
				}
			}
			for _, s := range tc.bad {
				if f(s) {
					t.Errorf("%s accepts %q", tc.format, s)
				}
			}
		})
	}
	if _, ok := resolveFormat("pve-no-such-format"); ok {
		t.Error("unknown format resolved")
	}
}

func TestUncheckedListedOnce(t *testing.T) {
	c := compileOne(t, `{"type":"array","items":{"properties":{
		"a":{"format":"pve-foo"},"b":{"format":"pve-foo"},
		"d":{"pattern":"(a)\\1"}}}}`)
	got := c.Unchecked()
	want := []string{"format pve-foo", `pattern "(a)\\1" (error parsing regexp: invalid escape sequence: ` + "`\\1`" + `)`}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Unchecked() = %q, want %q", got, want)
	}
	vs, err := c.Check("/t", "GET", []byte(`[{"a":"x","b":"y","d":"q"}]`))
	if err != nil || len(vs) != 0 {
		t.Fatalf("unchecked parts gave %v, %v", vs, err)
	}
}

// Property strings (a format given as a schema), as parse_property_string
// reads them; the SDN fabric interfaces are lists of them.
func TestRulePropertyString(t *testing.T) {
	iface := `{"type":"string","format":{
		"name":{"type":"string","format":"pve-iface","default_key":1},
		"ip":{"type":"string","format":"CIDRv4","optional":1},
		"hello_multiplier":{"type":"integer","minimum":2,"maximum":100,"optional":1},
		"passive":{"type":"boolean","optional":1},
		"nic":{"alias":"name"}}}`
	runRuleCases(t, []ruleCase{
		{"key=value pairs", iface, `"name=eth0,ip=10.0.0.1/24,hello_multiplier=3"`, nil},
		{"default key", iface, `"eth0,ip=10.0.0.1/24"`, nil},
		{"blank parts and a trailing comma", iface, `"name=eth0, ,"`, nil},
		{"boolean words", iface, `"eth0,passive=yes"`, nil},
		{"alias", iface, `"nic=eth0"`, nil},
		{"required key missing", iface, `"ip=10.0.0.1/24"`, v("data", RuleFormat)},
		{"unknown key", iface, `"eth0,color=red"`, v("data", RuleFormat)},
		{"duplicate key", iface, `"name=eth0,name=eth1"`, v("data", RuleFormat)},
		{"two keyless parts", iface, `"eth0,eth1"`, v("data", RuleFormat)},
		{"key without value", iface, `"eth0,ip="`, v("data", RuleFormat)},
		{"value failing its own format", iface, `"eth0,ip=10.0.0.1"`, v("data", RuleFormat)},
		{"value out of range", iface, `"eth0,hello_multiplier=1"`, v("data", RuleFormat)},
		{"boolean word unknown", iface, `"eth0,passive=maybe"`, v("data", RuleFormat)},
		{"no default key", `{"format":{"a":{"type":"string"}}}`, `"x"`, v("data", RuleFormat)},
	})
	c := compileOne(t, iface)
	vs, _ := c.Check("/t", "GET", []byte(`"eth0,ip=10.0.0.1"`))
	if len(vs) != 1 || !strings.Contains(vs[0].Message, "ip: invalid format") {
		t.Fatalf("message does not name the key: %+v", vs)
	}
}

// oneOf with type-property, as PVE's SDN fabric schemas use it.
func TestRuleOneOfTypeProperty(t *testing.T) {
	fabricNode := `{"type":"object","additionalProperties":0,"properties":{
		"protocol":{"type":"string","enum":["openfabric","ospf"]},
		"interfaces":{"type":"array","type-property":"protocol","oneOf":[
			{"instance-types":["openfabric"],"type":"array","optional":1,"items":{"type":"string","enum":["of"]}},
			{"instance-types":["ospf"],"type":"array","items":{"type":"string","enum":["os"]}}]},
		"area":{"type":"string","type-property":"protocol","instance-types":["ospf"]}}}`
	runRuleCases(t, []ruleCase{
		{"ospf variant", fabricNode, `{"protocol":"ospf","interfaces":["os"],"area":"0"}`, nil},
		{"ospf variant checks its items", fabricNode, `{"protocol":"ospf","interfaces":["of"],"area":"0"}`, v("data.interfaces[]", RuleEnum)},
		{"openfabric variant", fabricNode, `{"protocol":"openfabric","interfaces":["of"]}`, nil},
		{"variant optionality: openfabric may omit interfaces", fabricNode, `{"protocol":"openfabric"}`, nil},
		{"variant optionality: ospf may not", fabricNode, `{"protocol":"ospf","area":"0"}`, v("data.interfaces", RuleRequired)},
		{"property of another instance type may be absent", fabricNode, `{"protocol":"openfabric","interfaces":[]}`, nil},
		{"property of this instance type is required", fabricNode, `{"protocol":"ospf","interfaces":[]}`, v("data.area", RuleRequired)},
		{"no variant for the type: the key is extra", fabricNode, `{"protocol":"bgp","interfaces":[]}`,
			[]short{{"data.interfaces", RuleExtra}, {"data.protocol", RuleEnum}}},
	})
	// check_one_of: a oneOf with type-property-schema picks the object's
	// variant by its type property.
	typed := `{"type":"object","type-property":"type","type-property-schema":{"type":"string","enum":["a","b"]},"oneOf":[
		{"instance-type":"a","type":"object","additionalProperties":0,"properties":{"x":{"type":"integer"}}},
		{"instance-type":"b","type":"object","additionalProperties":0,"properties":{"y":{"type":"string"}}}]}`
	runRuleCases(t, []ruleCase{
		{"typed variant a", typed, `{"type":"a","x":"1"}`, nil},
		{"typed variant b", typed, `{"type":"b","y":"z"}`, nil},
		{"typed variant a misses x", typed, `{"type":"a"}`, v("data.x", RuleRequired)},
		{"typed variant a with b's key", typed, `{"type":"a","x":1,"y":"z"}`, v("data.y", RuleExtra)},
		{"typed unknown type", typed, `{"type":"c"}`, v("data.type", RuleEnum)},
		{"typed missing type", typed, `{"x":1}`, v("data.type", RuleRequired)},
		{"typed oneOf on a scalar", typed, `"a"`, v("data", RuleType)},
	})
}

func TestCheckBodyEnvelope(t *testing.T) {
	c := compileOne(t, `{"type":"array","items":{"properties":{"iface":{"type":"string"}}}}`)
	cases := []struct {
		name string
		body string
		want []short
		err  error
	}{
		{"json envelope with total and changes", `{"data":[{"iface":"eth0"}],"total":1,"changes":"--- a\n+++ b\n"}`, nil, nil},
		{"extjs success", `{"success":1,"data":[{"iface":"eth0"}]}`, nil, nil},
		{"extjs failure is not checked", `{"success":0,"status":500,"message":"boom","data":null}`, nil, ErrNotSuccess},
		{"no data member", `{"total":0}`, v("data", RuleRequired), nil},
		{"data violation", `{"data":[{}]}`, v("data[].iface", RuleRequired), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vs, err := c.CheckBody("/t", "GET", []byte(tc.body))
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if got := shorten(vs); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v want %v", got, tc.want)
			}
		})
	}
	for _, bad := range []string{`{"data":`, `[1]`, `{"data":1} x`, ``} {
		if _, err := c.CheckBody("/t", "GET", []byte(bad)); err == nil {
			t.Errorf("CheckBody(%q) gave no error", bad)
		}
	}
	if _, err := c.Check("/nope", "GET", []byte(`1`)); !errors.Is(err, ErrNoSchema) {
		t.Errorf("unknown template: err = %v", err)
	}
	if _, err := c.Check("/t", "PUT", []byte(`1`)); !errors.Is(err, ErrNoSchema) {
		t.Errorf("unknown method: err = %v", err)
	}
	if _, err := c.Check("/t", "get", []byte(`[]`)); err != nil {
		t.Errorf("lower-case method: %v", err)
	}
	for _, tmpl := range []string{"/api2/json/t", "/api2/extjs/t"} {
		if !c.Has(tmpl, "GET") {
			t.Errorf("Has(%q) = false; a config key's format prefix is not part of the template", tmpl)
		}
	}
	if c.Has("/api2/html/t", "GET") {
		t.Error("Has(/api2/html/t) = true")
	}
}

func TestCheckValueDecodedForms(t *testing.T) {
	c := compileOne(t, `{"properties":{"mtu":{"type":"integer"},"a":{"type":"boolean"}}}`)
	for _, data := range []any{
		map[string]any{"mtu": json.Number("1500"), "a": true},
		map[string]any{"mtu": float64(1500), "a": float64(1)},
		map[string]any{"mtu": "1500", "a": "0"},
	} {
		vs, err := c.CheckValue("/t", "GET", data)
		if err != nil || vs != nil {
			t.Errorf("CheckValue(%v) = %v, %v", data, vs, err)
		}
	}
	vs, _ := c.CheckValue("/t", "GET", map[string]any{"mtu": float64(1500.5), "a": true})
	if got := shorten(vs); !reflect.DeepEqual(got, v("data.mtu", RuleType)) {
		t.Errorf("float mtu: %v", got)
	}
}

func TestExampleValues(t *testing.T) {
	c := compileOne(t, `{"additionalProperties":0,"properties":{"mtu":{"type":"integer"},"l":{"maxLength":1},"o":{"type":"string","optional":1}}}`)
	vs, err := c.Check("/t", "GET", []byte(`{"mtu":"abc","l":"`+strings.Repeat("x", 200)+`","o":{"a":1},"token":"s3cret","api-key":"k"}`))
	if err != nil {
		t.Fatal(err)
	}
	e := compileOne(t, `{"properties":{"password":{"enum":["a"]},"p":{"format":{"secret":{"type":"string","enum":["b"]}}}}}`)
	evs, err := e.Check("/t", "GET", []byte(`{"password":"s3cret","p":"secret=s3cret"}`))
	if err != nil || len(evs) != 2 {
		t.Fatalf("%v %v", evs, err)
	}
	vs = append(vs, evs...)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, x := range vs[:len(vs)-2] {
		got[x.Path] = x.Example
	}
	want := map[string]string{
		"data.mtu":     `"abc"`,
		"data.l":       `"` + strings.Repeat("x", maxExample-1) + "…",
		"data.o":       "{…1 keys}",
		"data.token":   "(redacted)",
		"data.api-key": "(redacted)",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("examples:\n got %q\nwant %q", got, want)
	}
	for _, x := range vs {
		if strings.Contains(x.Message, "s3cret") || strings.Contains(x.Path, "s3cret") || strings.Contains(x.Example, "s3cret") {
			t.Errorf("secret leaked: %+v", x)
		}
	}
}
