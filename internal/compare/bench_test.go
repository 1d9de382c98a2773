package compare

// BenchmarkCompare is the comparison's CPU per shadowed request on a real
// PVE network list (go-proxmox's PVE 7.4 fixture, see
// /work/shared/pve-api/examples/PROVENANCE.md): byte-identical answers (the
// fast path), the same answer in another hash order (what two Perl
// processes send), and one with a number turned into a string.
//
//	go test -run '^$' -bench BenchmarkCompare -count 5 ./internal/compare

import (
	"encoding/json"
	"os"
	"slices"
	"testing"
)

func fixture(tb testing.TB) []byte {
	b, err := os.ReadFile("testdata/nodes_network_list.pve7x.json")
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// variants returns the fixture re-encoded with its list reversed, and with
// the first element's priority as a string.
func variants(tb testing.TB) (orig, reordered, typed []byte) {
	orig = fixture(tb)
	var doc map[string]any
	if err := json.Unmarshal(orig, &doc); err != nil {
		tb.Fatal(err)
	}
	list := doc["data"].([]any)
	slices.Reverse(list)
	reordered, _ = json.Marshal(doc)
	list[0].(map[string]any)["priority"] = "99"
	typed, _ = json.Marshal(doc)
	return orig, reordered, typed
}

func TestRealAnswer(t *testing.T) {
	orig, reordered, typed := variants(t)
	if v := Compare(Input{Perl: ans(string(orig)), Rust: ans(string(reordered)), Again: ans(string(orig)), ServedBy: "perl"}); v.Result != Match {
		t.Errorf("reordered list: %s %+v", v.Result, v.Fields)
	}
	v := Compare(Input{Perl: ans(string(orig)), Rust: ans(string(typed)), Again: ans(string(reordered)), ServedBy: "perl"})
	if v.Result != Mismatch || len(v.Fields) != 1 || v.Fields[0].Path != "data[].priority" || v.Fields[0].Kind != KindType {
		t.Errorf("priority as a string: %s %+v", v.Result, v.Fields)
	}
}

func BenchmarkCompare(b *testing.B) {
	orig, reordered, typed := variants(b)
	for _, c := range []struct {
		name              string
		perl, rust, again []byte
	}{
		{"identical", orig, orig, orig},
		{"reordered", orig, reordered, reordered},
		{"type-mismatch", orig, typed, reordered},
	} {
		b.Run(c.name, func(b *testing.B) {
			in := Input{Perl: Answer{200, c.perl}, Rust: Answer{200, c.rust}, Again: Answer{200, c.again}, ServedBy: "perl"}
			b.ReportAllocs()
			for b.Loop() {
				Compare(in)
			}
		})
	}
}
