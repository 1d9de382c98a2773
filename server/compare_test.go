package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pve-migration/router/internal/compare"
	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/routing"
	"github.com/pve-migration/router/server"
)

// TestAdminCompare: /compare.json carries the contract's keys, /compare is
// plain HTML without script, both worst first, with phase and sample rate.
func TestAdminCompare(t *testing.T) {
	snap := snapshot(routing.RustReadOnly, func(s *config.Snapshot) { s.Compare.Enabled, s.Compare.SamplePercent = true, 25 })
	store := config.NewStore(snap)
	r := compare.NewReport(time.Now().Add(-time.Minute))
	r.Record("node-network-read", "/nodes/{node}/network/{iface}", "GET", compare.Verdict{Result: compare.Match}, time.Now())
	r.Record("node-network-read", "/nodes/{node}/network", "GET", compare.Verdict{Result: compare.Mismatch,
		Fields: []compare.Field{{Path: "data[].mtu", Kind: compare.KindType, Perl: json.RawMessage(`1500`), Rust: json.RawMessage(`"<b>1500</b>"`)}}}, time.Now())
	srv := httptest.NewServer(server.NewAdminHandler(server.AdminOptions{Config: store, Compare: r}))
	defer srv.Close()
	get := func(path string) (string, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
		return resp.Header.Get("Content-Type"), string(b)
	}
	ct, body := get("/compare.json")
	var doc map[string]any
	if err := json.Unmarshal([]byte(body), &doc); err != nil || !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%s %v: %s", ct, err, body)
	}
	tmpls := doc["templates"].([]any)
	first := tmpls[0].(map[string]any)
	for _, k := range []string{"template", "method", "compared", "matched", "mismatched", "noise", "errors", "fields"} {
		if _, ok := first[k]; !ok {
			t.Errorf("template lacks %q", k)
		}
	}
	f := first["fields"].([]any)[0].(map[string]any)
	for _, k := range []string{"path", "count", "kind", "example"} {
		if _, ok := f[k]; !ok {
			t.Errorf("field lacks %q", k)
		}
	}
	if first["template"] != "/nodes/{node}/network" || doc["phase"] != "rust-read-only" || doc["sample_percent"] != 25.0 {
		t.Errorf("doc %v", doc)
	}
	ct, page := get("/compare")
	if !strings.HasPrefix(ct, "text/html") || strings.Contains(strings.ToLower(page), "<script") || strings.Contains(page, "<b>1500") {
		t.Errorf("page not plain escaped HTML (%s):\n%s", ct, page)
	}
	if i, j := strings.Index(page, "<code>/nodes/{node}/network</code>"), strings.Index(page, "<code>/nodes/{node}/network/{iface}</code>"); i < 0 || j < 0 || i > j {
		t.Errorf("page not worst first")
	}
}
