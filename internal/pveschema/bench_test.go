package pveschema

import (
	"os"
	"regexp"
	"testing"
)

// Benchmarks, benchstat-friendly (one run holds the baselines):
//
//	go test -run '^$' -bench . -benchmem -count 10 ./internal/pveschema > new.txt
//	benchstat new.txt
//
// BenchmarkCheck/compiled is what a compare worker pays per answer for the
// real PVE 9 network list; /naive interprets the raw schema for every
// answer (the method's returns turned into checks, regular expressions
// included, each time), which is what compiling once per config load
// saves; /decode-only is the JSON decoding both include, and
// /compiled-decoded the walk alone, on an answer decoded already.
func BenchmarkCheck(b *testing.B) {
	body, err := os.ReadFile("testdata/examples/nodes_network_list.go-proxmox.pve9x.json")
	if err != nil {
		b.Fatal(err)
	}
	c, err := Embedded()
	if err != nil {
		b.Fatal(err)
	}
	s, err := Parse(embeddedJSON(b))
	if err != nil {
		b.Fatal(err)
	}
	const tmpl = "/nodes/{node}/network"
	b.Run("compiled", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := c.CheckBody(tmpl, "GET", body); err != nil {
				b.Fatal(err)
			}
		}
	})
	// A compare worker that has decoded the answer already (with
	// UseNumber) pays only the walk.
	decoded, err := decode(body)
	if err != nil {
		b.Fatal(err)
	}
	data := decoded.(map[string]any)["data"]
	b.Run("compiled-decoded", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := c.CheckValue(tmpl, "GET", data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("naive", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := naiveCheckBody(s, tmpl, "GET", body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode-only", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := decode(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// naiveCheckBody checks like CheckBody but from the raw schema each time.
func naiveCheckBody(s *Schema, template, method string, body []byte) ([]Violation, error) {
	comp := &compiler{unchecked: map[string]struct{}{}, patterns: map[string]*regexp.Regexp{}}
	n := comp.node(s.returns[methodKey(template, method)])
	v, err := decode(body)
	if err != nil {
		return nil, err
	}
	return checkNode(n, v.(map[string]any)["data"]), nil
}

// BenchmarkCompile is the cost at config load: the embedded schema
// (gunzip, parse, compile all 649 methods) and a node's apidoc.js read
// from disk (here the full 1.3 MB apidata.json wrapped as apidoc.js, when
// the team's shared copy is present).
func BenchmarkCompile(b *testing.B) {
	b.Run("embedded", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := compileEmbedded(); err != nil {
				b.Fatal(err)
			}
		}
	})
	full, err := os.ReadFile("../../../shared/pve-api/apidata.json")
	if err != nil {
		return
	}
	path := b.TempDir() + "/apidoc.js"
	if err := os.WriteFile(path, apidocJS(full), 0o644); err != nil {
		b.Fatal(err)
	}
	b.Run("apidoc.js", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := LoadFile(path); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// The naive baseline must find what the compiled checker finds, or the
// comparison is void.
func TestNaiveBaselineAgrees(t *testing.T) {
	c, err := Embedded()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Parse(embeddedJSON(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, ex := range realExamples(t) {
		a, errA := c.CheckBody(ex.template, "GET", ex.body)
		b, errB := naiveCheckBody(s, ex.template, "GET", ex.body)
		if errA != nil || errB != nil || len(a) != len(b) {
			t.Errorf("%s: compiled %v %v, naive %v %v", ex.file, a, errA, b, errB)
		}
	}
}
