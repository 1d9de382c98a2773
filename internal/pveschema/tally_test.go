package pveschema

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"testing"
)

func TestTallyReport(t *testing.T) {
	c, err := Embedded()
	if err != nil {
		t.Fatal(err)
	}
	list := "/nodes/{node}/network"
	perlBody := []byte(`{"data":[{"iface":"vmbr0","type":"bridge","netmask":"24","address":"10.0.0.2"}]}`)
	rustBody := []byte(`{"data":[{"iface":"vmbr0","type":"bridge","netmask":"24","address":"10.0.0.2","mtu":"abc"},{"iface":"vmbr1"}]}`)
	tally := NewTally()
	for i := 0; i < 3; i++ {
		if _, err := c.CheckAnswer(tally, list, "GET", BackendPerl, 200, perlBody); err != nil {
			t.Fatal(err)
		}
		if _, err := c.CheckAnswer(tally, list, "GET", BackendRust, 200, rustBody); err != nil {
			t.Fatal(err)
		}
	}
	// A failed answer and a method without schema are not tallied.
	if _, err := c.CheckAnswer(tally, list, "GET", BackendRust, 500, rustBody); err == nil {
		t.Fatal("500 answer checked")
	}
	if _, err := c.CheckAnswer(tally, "/cluster/sdn/prefix-lists", "GET", BackendRust, 200, rustBody); err == nil {
		t.Fatal("method without schema checked")
	}
	rep := tally.Report(c.Source())
	want := Report{Source: "embedded", Version: "PVE 9.1.3", Violations: []ReportViolation{
		{Template: list, Method: "GET", Backend: "rust", Path: "data[].mtu", Rule: RuleType, Count: 3, Example: `"abc"`},
		{Template: list, Method: "GET", Backend: "rust", Path: "data[].type", Rule: RuleRequired, Count: 3},
		{Template: list, Method: "GET", Backend: "perl", Path: "data[].netmask", Rule: RuleFormat, Count: 3, Example: `"24"`, Baseline: true},
		{Template: list, Method: "GET", Backend: "rust", Path: "data[].netmask", Rule: RuleFormat, Count: 3, Example: `"24"`, Baseline: true},
	}}
	if !reflect.DeepEqual(rep, want) {
		t.Fatalf("report:\n got %+v\nwant %+v", rep, want)
	}
	if !rep.Violations[0].RustOnly() || rep.Violations[3].RustOnly() {
		t.Fatal("RustOnly wrong")
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	wantJSON := `{"source":"embedded","version":"PVE 9.1.3","violations":[` +
		`{"template":"/nodes/{node}/network","method":"GET","backend":"rust","path":"data[].mtu","rule":"type","count":3,"example":"\"abc\"","baseline":false},` +
		`{"template":"/nodes/{node}/network","method":"GET","backend":"rust","path":"data[].type","rule":"required","count":3,"example":"","baseline":false},` +
		`{"template":"/nodes/{node}/network","method":"GET","backend":"perl","path":"data[].netmask","rule":"format","count":3,"example":"\"24\"","baseline":true},` +
		`{"template":"/nodes/{node}/network","method":"GET","backend":"rust","path":"data[].netmask","rule":"format","count":3,"example":"\"24\"","baseline":true}]}`
	if string(b) != wantJSON {
		t.Fatalf("JSON:\n got %s\nwant %s", b, wantJSON)
	}
	tally.Reset()
	if r := tally.Report(c.Source()); len(r.Violations) != 0 {
		t.Fatalf("after Reset: %+v", r)
	}
	if b, _ := json.Marshal(tally.Report(c.Source())); string(b) != `{"source":"embedded","version":"PVE 9.1.3","violations":[]}` {
		t.Fatalf("empty report JSON: %s", b)
	}
}

// A baseline is per method and path: perl breaking a rule elsewhere does
// not excuse rust.
func TestTallyBaselineIsPerPath(t *testing.T) {
	tally := NewTally()
	tally.Record("/a", "GET", BackendPerl, []Violation{{Path: "data.x", Rule: RuleType}})
	tally.Record("/a", "GET", BackendRust, []Violation{{Path: "data.y", Rule: RuleType}, {Path: "data.x", Rule: RuleEnum}})
	tally.Record("/b", "GET", BackendRust, []Violation{{Path: "data.x", Rule: RuleType}})
	for _, r := range tally.Report(Source{}).Violations {
		if r.Backend == BackendRust && r.Baseline {
			t.Errorf("rust row marked baseline: %+v", r)
		}
	}
}

func TestTallyConcurrentAndBounded(t *testing.T) {
	tally := NewTally()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				tally.Record("/t", "GET", BackendRust, []Violation{
					{Path: "data.same", Rule: RuleExtra},
					{Path: fmt.Sprintf("data.k%d_%d", g, i), Rule: RuleExtra},
				})
				if i%100 == 0 {
					_ = tally.Report(Source{})
				}
			}
		}(g)
	}
	wg.Wait()
	rep := tally.Report(Source{})
	if len(rep.Violations) != MaxTallyEntries {
		t.Fatalf("rows = %d, want the bound %d", len(rep.Violations), MaxTallyEntries)
	}
	var same int64
	for _, r := range rep.Violations {
		if r.Path == "data.same" {
			same = r.Count
		}
	}
	if same != 8*500 {
		t.Fatalf("count of the shared row = %d, want 4000", same)
	}
	if d := tally.Dropped(); d != 8*500-(MaxTallyEntries-1) {
		t.Fatalf("dropped = %d", d)
	}
}
