package pveschema

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

type metricRec struct {
	mu   sync.Mutex
	adds map[string]int
}

func (m *metricRec) add(backend, template string, rule Rule, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.adds[backend+" "+template+" "+string(rule)] += n
}

func TestConformance(t *testing.T) {
	m := &metricRec{adds: map[string]int{}}
	c := NewConformance(m.add)
	list := "/nodes/{node}/network"
	perl := Answer{Backend: BackendPerl, Status: 200, Body: []byte(`{"data":[{"iface":"eth0","type":"eth","netmask":"24","address":"192.0.2.1"}]}`)}
	rust := Answer{Backend: BackendRust, Status: 200, Body: []byte(`{"data":[{"iface":"eth0","type":"eth","netmask":"24","address":"192.0.2.1","mtu":"abc","active":"yes"}]}`)}

	// Off until configured: nothing checked, no report, zero status.
	c.CheckJob(list, "GET", perl, rust)
	if c.Enabled() || c.Report() != nil || c.Checked() != 0 || !reflect.DeepEqual(c.Status(), Status{}) {
		t.Fatal("checking before Configure")
	}
	if err := c.Configure(true, ""); err != nil && !strings.Contains(err.Error(), DefaultPath) {
		t.Fatal(err)
	}
	c.CheckJob(list, "GET", perl, rust)
	c.CheckJob(list, "GET", perl, rust, Answer{Backend: BackendRust, Status: 502, Body: []byte("bad gateway")})
	c.CheckJob("/cluster/sdn/prefix-lists", "GET", rust) // no schema: skipped
	if c.Checked() != 4 {
		t.Fatalf("checked %d answers, want 4", c.Checked())
	}
	rep := c.Report()
	if rep == nil || rep.Source != "embedded" || len(rep.Violations) != 4 {
		t.Fatalf("report: %+v", rep)
	}
	if v := rep.Violations[0]; v.Backend != BackendRust || v.Baseline || v.Count != 2 {
		t.Fatalf("first row: %+v", v)
	}
	wantMetric := map[string]int{
		"perl " + list + " format": 2,
		"rust " + list + " format": 2,
		"rust " + list + " type":   4, // mtu and active, twice
	}
	if !reflect.DeepEqual(m.adds, wantMetric) {
		t.Fatalf("metric adds: %v", m.adds)
	}
	if st := c.Status(); st.Source != "embedded" || st.Unchecked != nil {
		t.Fatalf("status: %+v", st)
	}
	c.CheckJob("/nodes/{node}/sdn/zones", "GET", Answer{Backend: BackendPerl, Status: 200, Body: []byte(`{"data":[]}`)})
	if st := c.Status(); !reflect.DeepEqual(st.Unchecked, []string{"format pve-sdn-zone-id"}) {
		t.Fatalf("status after a zones check: %+v", st)
	}

	// Same schema again: the tally stays. A different schema: it starts
	// over. A broken file: the error, and the embedded schema serves.
	_ = c.Configure(true, "")
	if len(c.Report().Violations) != 4 {
		t.Fatal("tally reset by a reload of the same schema")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "apidoc.js")
	if err := os.WriteFile(file, apidocJS(embeddedJSON(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Configure(true, file); err != nil {
		t.Fatal(err)
	}
	if r := c.Report(); r.Source != file || len(r.Violations) != 0 {
		t.Fatalf("after switching schema: %+v", r)
	}
	err := c.Configure(true, filepath.Join(dir, "nope.js"))
	if err == nil || !strings.Contains(err.Error(), "nope.js") {
		t.Fatalf("err = %v", err)
	}
	if st := c.Status(); st.Source != "embedded" || !strings.Contains(st.Error, "nope.js") || !c.Enabled() {
		t.Fatalf("status after a broken file: %+v", st)
	}
	c.CheckJob(list, "GET", rust)
	if len(c.Report().Violations) == 0 {
		t.Fatal("embedded schema not serving after a broken file")
	}
	if err := c.Configure(false, ""); err != nil || c.Enabled() || c.Report() != nil {
		t.Fatal("schema = false still checks")
	}
}

// Workers check while config loads swap the checker (run with -race).
func TestConformanceConcurrent(t *testing.T) {
	c := NewConformance(func(string, string, Rule, int) {})
	_ = c.Configure(true, "")
	body := []byte(`{"data":[{"iface":"eth0","type":"eth","mtu":"x"}]}`)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				c.CheckJob("/nodes/{node}/network", "GET", Answer{Backend: BackendRust, Status: 200, Body: body})
				_ = c.Report()
				_ = c.Status()
			}
		}()
	}
	for i := 0; i < 5; i++ {
		_ = c.Configure(i%2 == 0, "")
	}
	wg.Wait()
}
