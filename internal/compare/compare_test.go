package compare

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
)

func ans(body string) Answer { return Answer{Status: 200, Body: []byte(body)} }

func paths(fs []Field) string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Path+":"+string(f.Kind))
	}
	return strings.Join(out, " ")
}

func TestCompare(t *testing.T) {
	list := `{"data":[{"iface":"vmbr0","type":"bridge","mtu":1500,"active":1,"bridge_ports":"eth0"},{"iface":"eth0","type":"eth","families":["inet","inet6"]}],"changes":"--- /etc/network/interfaces\t2026-01-01 10:00:00\n+++ /etc/network/interfaces.new\t2026-01-01 10:01:00\n@@ -1 +1 @@\n-a\n+b\n"}`
	tests := []struct {
		name       string
		in         Input
		want       Result
		wantFields string
	}{
		{"identical", Input{Perl: ans(list), Rust: ans(list)}, Match, ""},
		{"set order and mtimes differ", Input{Perl: ans(list), Rust: ans(`{"data":[{"iface":"eth0","type":"eth","families":["inet6","inet"]},{"bridge_ports":"eth0","active":1,"mtu":1500,"type":"bridge","iface":"vmbr0"}],"changes":"--- /etc/network/interfaces\t2026-02-02 11:00:00\n+++ /etc/network/interfaces.new\t2026-02-02 11:01:00\n@@ -1 +1 @@\n-a\n+b\n"}`)}, Match, ""},
		{"hunk differs", Input{Perl: ans(`{"data":null,"changes":"--- a 1\n+++ b 2\n-x\n"}`), Rust: ans(`{"data":null,"changes":"--- a 1\n+++ b 2\n-y\n"}`)}, Mismatch, "changes:value"},
		{"numeric string", Input{Perl: ans(`{"data":[{"iface":"vmbr0","mtu":1500}]}`), Rust: ans(`{"data":[{"iface":"vmbr0","mtu":"1500"}]}`)}, Mismatch, "data[].mtu:type"},
		{"string vs bool is shape", Input{Perl: ans(`{"data":{"a":"x"}}`), Rust: ans(`{"data":{"a":true}}`)}, Mismatch, "data.a:shape"},
		{"number formats equal", Input{Perl: ans(`{"data":{"a":1.0}}`), Rust: ans(`{"data":{"a":1}}`)}, Match, ""},
		{"missing port list", Input{Perl: ans(`{"data":[{"iface":"vmbr0","bridge_ports":"eth0"}]}`), Rust: ans(`{"data":[{"iface":"vmbr0"}]}`)}, Mismatch, "data[].bridge_ports:missing"},
		{"extra element", Input{Perl: ans(`{"data":[{"vnet":"a"}]}`), Rust: ans(`{"data":[{"vnet":"a"},{"vnet":"b"}]}`)}, Mismatch, "data[]:extra"},
		{"outside the envelope ignored", Input{Perl: ans(`{"data":1,"foo":2}`), Rust: ans(`{"data":1,"foo":3}`)}, Match, ""},
		{"extjs envelope", Input{Extjs: true, Perl: ans(`{"data":1,"success":1}`), Rust: ans(`{"data":1,"success":0}`)}, Mismatch, "success:value"},
		{"json ignores success", Input{Perl: ans(`{"data":1,"success":1}`), Rust: ans(`{"data":1,"success":0}`)}, Match, ""},
		{"status", Input{Perl: ans(`{"data":1}`), Rust: Answer{Status: 501, Body: []byte(`{"data":null}`)}}, Mismatch, "(status):status"},
		{"not json", Input{Perl: ans(`{"data":1}`), Rust: ans(`<html>`)}, Error, ""},
		{"both the same non-JSON", Input{Perl: ans(`<html>`), Rust: ans(`<html>`)}, Error, ""},
		{"noise when rust serves identical bytes", Input{Perl: ans(`{"data":{"t":1}}`), Rust: ans(`{"data":{"t":1}}`), Again: ans(`{"data":{"t":2}}`), ServedBy: "rust"}, Match, ""},
		{"ignored", Input{Perl: ans(`{"data":[{"iface":"a","active":1}]}`), Rust: ans(`{"data":[{"iface":"a","active":0}]}`), Ignore: []string{"data[].active"}}, Match, ""},
		{"ignore is not a prefix match", Input{Perl: ans(`{"data":{"active2":1}}`), Rust: ans(`{"data":{"active2":0}}`), Ignore: []string{"data.active"}}, Mismatch, "data.active2:value"},
		{"noise on the serving side", Input{Perl: ans(`{"data":{"t":1,"x":1}}`), Rust: ans(`{"data":{"t":2,"x":1}}`), Again: ans(`{"data":{"t":3,"x":1}}`), ServedBy: "perl"}, Noise, "data.t:noise"},
		{"noise and mismatch", Input{Perl: ans(`{"data":{"t":1,"x":1}}`), Rust: ans(`{"data":{"t":2,"x":2}}`), Again: ans(`{"data":{"t":3,"x":1}}`), ServedBy: "perl"}, Mismatch, "data.t:noise data.x:value"},
		{"rust serves: rust calibrates", Input{Perl: ans(`{"data":{"t":1}}`), Rust: ans(`{"data":{"t":2}}`), Again: ans(`{"data":{"t":2}}`), ServedBy: "rust"}, Mismatch, "data.t:value"},
		{"learned noise", Input{Perl: ans(`{"data":{"t":1}}`), Rust: ans(`{"data":{"t":2}}`), Learned: func(p string) bool { return p == "data.t" }}, Noise, "data.t:noise"},
		// Something that comes and goes between two answers of the
		// serving backend is a state change nobody routed (pvesh, an SDN
		// edit through another node): skipped, never learned as noise
		// ("data[]" would cover every path of the template for good).
		{"element appears between the serving answers", Input{Perl: ans(`{"data":[{"vnet":"a","x":1}]}`), Rust: ans(`{"data":[{"vnet":"a","x":2}]}`),
			Again: ans(`{"data":[{"vnet":"a","x":1},{"vnet":"b","x":1}]}`), ServedBy: "perl"}, Skipped, ""},
		{"field disappears between the serving answers", Input{Perl: ans(`{"data":{"t":1,"x":1}}`), Rust: ans(`{"data":{"t":1,"x":2}}`),
			Again: ans(`{"data":{"x":1}}`), ServedBy: "perl"}, Skipped, ""},
		{"digest is never noise", Input{Perl: ans(`{"data":{"digest":"a"}}`), Rust: ans(`{"data":{"digest":"b"}}`), Again: ans(`{"data":{"digest":"c"}}`), ServedBy: "perl"}, Mismatch, "data.digest:value"},
		{"serving status changed", Input{Perl: ans(`{"data":1}`), Rust: ans(`{"data":1}`), Again: Answer{Status: 500}, ServedBy: "perl"}, Error, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Compare(tt.in)
			if v.Result != tt.want || paths(v.Fields) != tt.wantFields {
				t.Errorf("Compare = %s %q (%s), want %s %q", v.Result, paths(v.Fields), v.Reason, tt.want, tt.wantFields)
			}
			if v.Result == Error && v.Reason == "" {
				t.Error("an error verdict needs a reason")
			}
		})
	}
}

func TestExampleRedactsAndShortens(t *testing.T) {
	v := Compare(Input{Perl: ans(`{"data":{"psk":"s3cret","comment":"` + strings.Repeat("x", 500) + `"}}`), Rust: ans(`{"data":{"psk":"other","comment":"y"}}`)})
	for _, f := range v.Fields {
		raw := string(f.Perl) + string(f.Rust)
		if strings.Contains(raw, "s3cret") || strings.Contains(raw, "other") {
			t.Errorf("%s example shows a secret: %s", f.Path, raw)
		}
		if len(f.Perl) > maxExample+20 || !json.Valid(f.Perl) {
			t.Errorf("%s example not shortened to valid JSON: %d bytes", f.Path, len(f.Perl))
		}
	}
}

// A difference at a container (data null on one side, a shape change,
// an object where a number was) shows the whole value: a credential
// nested in it (an SDN IPAM's token, a DNS plugin's key) must still be
// redacted, in /compare, /compare.json and migration-ctl compare.
// TestNoiseLearnedOnlyWhenRepeated: a path that differed between the two
// answers of one backend once (a change nobody routed, pvesh on the
// node) is not learned as noise for the template; seen in a second job
// it is.
func TestNoiseLearnedOnlyWhenRepeated(t *testing.T) {
	r := NewReport(time.Unix(1_000_000, 0))
	noisy := Verdict{Result: Noise, Fields: []Field{{Path: "data[].mtu", Kind: KindNoise}}, NoisePaths: []string{"data[].mtu"}}
	r.Record("node-network-read", "/nodes/{node}/network", "GET", noisy, time.Unix(1_000_001, 0))
	if r.Learned("/nodes/{node}/network")("data[].mtu") {
		t.Fatal("learned from a single job: one out-of-band change hides every later mtu mismatch")
	}
	r.Record("node-network-read", "/nodes/{node}/network", "GET", noisy, time.Unix(1_000_002, 0))
	if !r.Learned("/nodes/{node}/network")("data[].mtu") {
		t.Fatal("noise seen in two jobs not learned")
	}
}

func TestExampleRedactsNestedSecrets(t *testing.T) {
	cases := []struct{ name, perl, rust string }{
		{"object vs null", `{"data":{"ipam":"nb","type":"netbox","token":"SEKRIT"}}`, `{"data":null}`},
		{"object vs array", `{"data":{"dns":"pdns","key":"SEKRIT"}}`, `{"data":[1]}`},
		{"nested object vs number", `{"data":[{"id":"a","x":{"password":"SEKRIT"}}]}`, `{"data":[{"id":"a","x":5}]}`},
		{"deep in an array", `{"data":{"list":[{"Token":"SEKRIT"}]}}`, `{"data":{"list":"none"}}`},
		{"rust side", `{"data":null}`, `{"data":{"psk":"SEKRIT","ticket":"SEKRIT"}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := Compare(Input{Perl: ans(c.perl), Rust: ans(c.rust)})
			if v.Result != Mismatch || len(v.Fields) == 0 {
				t.Fatalf("want a mismatch, got %+v", v)
			}
			for _, f := range v.Fields {
				raw := string(f.Perl) + string(f.Rust)
				if strings.Contains(raw, "SEKRIT") {
					t.Errorf("%s example shows a nested secret: %s", f.Path, raw)
				}
				if !strings.Contains(raw, "(redacted)") {
					t.Errorf("%s example lost the redaction marker: %s", f.Path, raw)
				}
			}
		})
	}
}

func TestReport(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	r := NewReport(t0)
	mis := Verdict{Result: Mismatch, Fields: []Field{{Path: "data[].mtu", Kind: KindType, Perl: json.RawMessage(`1500`), Rust: json.RawMessage(`"1500"`)}}}
	noisy := Verdict{Result: Noise, Fields: []Field{{Path: "data.t", Kind: KindNoise}}, NoisePaths: []string{"data.t"}}
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			now := t0.Add(time.Duration(i) * time.Second)
			r.Record("node-network-read", "/nodes/{node}/network", "GET", mis, now)
			r.Record("node-network-read", "/nodes/{node}/network/{iface}", "GET", Verdict{Result: Match}, now)
			r.Record("sdn-read", "/cluster/sdn/vnets", "GET", noisy, now)
			r.Record("sdn-read", "/cluster/sdn/vnets", "GET", Verdict{Result: Error, Reason: "timeout"}, now)
		}(i)
	}
	wg.Wait()
	s := r.Summary()
	if len(s.Templates) != 3 || s.Templates[0].Template != "/nodes/{node}/network" {
		t.Fatalf("templates not worst first: %+v", s.Templates)
	}
	top := s.Templates[0]
	if top.Compared != 50 || top.Mismatched != 50 || len(top.Fields) != 1 || top.Fields[0].Count != 50 || string(top.Fields[0].Example.Rust) != `"1500"` {
		t.Errorf("top = %+v", top)
	}
	vn := s.Templates[1]
	if vn.Template != "/cluster/sdn/vnets" || vn.Noise != 50 || vn.Errors != 50 || vn.Reasons["timeout"] != 50 || vn.Compared != 50 {
		t.Errorf("vnets = %+v", vn)
	}
	if !r.Learned("/cluster/sdn/vnets")("data.t") || r.Learned("/nodes/{node}/network")("data.t") {
		t.Error("noise learned for the wrong template")
	}
	end := t0.Add(49 * time.Second)
	if c, m := r.Window("node-network-read", end, 10*time.Second); c != 20 || m != 10 {
		t.Errorf("window 10s = %d/%d, want 20/10", c, m)
	}
	if c, m := r.Window("node-network-read", end, time.Hour); c != 100 || m != 50 {
		t.Errorf("window 1h = %d/%d, want 100/50", c, m)
	}
	if c, _ := r.Window("sdn-read", end, time.Hour); c != 50 {
		t.Errorf("errors counted as evidence: %d", c)
	}
	t.Run("a path counts once per job", func(t *testing.T) {
		r := NewReport(t0)
		two := Verdict{Result: Mismatch, Fields: []Field{{Path: "data[].m", Kind: KindValue}, {Path: "data[].m", Kind: KindValue}}}
		r.Record("c", "/t", "GET", two, t0)
		if f := r.Summary().Templates[0].Fields; len(f) != 1 || f[0].Count != 1 {
			t.Errorf("fields = %+v, want data[].m counted once", f)
		}
	})
	if c, _ := r.Window("node-network-read", end.Add(2*time.Hour), time.Hour); c != 0 {
		t.Errorf("stale buckets counted: %d", c)
	}
}
