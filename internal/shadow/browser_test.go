package shadow_test

import (
	"context"
	"github.com/pve-migration/router/internal/pveschema"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pve-migration/router/examples/pvedemo"
	"github.com/pve-migration/router/server"
)

// chromium finds headless Chromium: $CHROMIUM, else chromium or
// chromium-browser on $PATH ("" when there is none).
func chromium() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		if lp, err := exec.LookPath(p); err == nil {
			return lp
		}
		return ""
	}
	for _, n := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	return ""
}

// runChromium runs headless Chromium with args and returns its stdout.
func runChromium(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--user-data-dir=" + t.TempDir(), "--hide-scrollbars"}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}

var rowRE = regexp.MustCompile(`<tr class="[a-z]*"><td><code>([^<]+)</code></td><td>GET</td><td>[a-z-]+</td><td class="n">(\d+)</td><td class="n">\d+</td><td class="n mismatched">(\d+)</td>`)

// TestComparePageInBrowser renders /compare, filled by a real run against
// the demo backends (rust diverging on "method"), in headless Chromium and
// checks the DOM it built: the mismatch table is there, worst first.
// COMPARE_SCREENSHOT=FILE also saves a screenshot (the README's).
func TestComparePageInBrowser(t *testing.T) {
	bin := chromium()
	if bin == "" {
		t.Skip("headless Chromium not found ($CHROMIUM, chromium, chromium-browser): run scripts/chromium.sh install (Debian's chromium package), or scripts/chromium.sh test")
	}
	// The schema section too, fed by the same jobs as the router feeds it.
	schema := pveschema.NewConformance(nil)
	if err := schema.Configure(true, ""); err != nil {
		t.Fatal(err)
	}
	check := func(template, method, backend string, status int, data []byte) {
		schema.CheckJob(template, method, pveschema.Answer{Backend: backend, Status: status, Body: data})
	}
	e := newEnv(t, envOpts{compare: on100, queue: 4096, rustFaults: pvedemo.Faults{Diverge: "method"}, check: check})
	e.gets(30, 2, "perl", netList)
	e.gets(10, 2, "perl", netList+"/vmbr0")
	e.gets(5, 1, "perl", "/api2/json/cluster/sdn/vnets")
	e.settle(45)

	admin := httptest.NewServer(server.NewAdminHandler(server.AdminOptions{Config: e.store, Compare: e.worker.Report(), Schema: schema}))
	defer admin.Close()

	dom := runChromium(t, bin, "--dump-dom", admin.URL+"/compare")
	if !strings.Contains(dom, `<table id="templates">`) || !strings.Contains(dom, `id="fields"`) {
		t.Fatalf("no mismatch table in the rendered page:\n%s", dom)
	}
	rows := rowRE.FindAllStringSubmatch(dom, -1)
	if len(rows) != 3 {
		t.Fatalf("%d template rows in the DOM, want 3:\n%s", len(rows), dom)
	}
	want := []struct {
		tmpl                 string
		compared, mismatched int
	}{{"/nodes/{node}/network", 30, 30}, {"/nodes/{node}/network/{iface}", 10, 10}, {"/cluster/sdn/vnets", 5, 0}}
	prev := int(^uint(0) >> 1)
	for i, r := range rows {
		c, _ := strconv.Atoi(r[2])
		m, _ := strconv.Atoi(r[3])
		if m > prev {
			t.Errorf("row %d (%s, %d mismatched) after a row with %d: not worst first", i, r[1], m, prev)
		}
		prev = m
		if r[1] != want[i].tmpl || c != want[i].compared || m != want[i].mismatched {
			t.Errorf("row %d = %s %d/%d, want %s %d/%d", i, r[1], c, m, want[i].tmpl, want[i].compared, want[i].mismatched)
		}
	}
	for _, s := range []string{`id="phase">perl-only<`, `id="sample">100%<`, "data[].method", "data.method", `-diverged`} {
		if !strings.Contains(dom, s) {
			t.Errorf("page lacks %q", s)
		}
	}
	// Rust's diverged method breaks the schema's enum and perl's does not:
	// a rust-only row; perl's own netmask quirk is baseline.
	if !strings.Contains(dom, `<section id="schema">`) || !regexp.MustCompile(`<tr class="rust-only"><td>/nodes/\{node\}/network</td><td>GET</td><td>rust</td><td><code>data\[\]\.method</code></td><td>enum</td>`).MatchString(dom) {
		t.Errorf("no rust-only schema violation of data[].method in the page:\n%s", dom)
	}
	if strings.Contains(dom, "5ecret") || strings.Contains(strings.ToLower(dom), "<script") {
		t.Error("page shows a credential or carries a script")
	}
	if out := os.Getenv("COMPARE_SCREENSHOT"); out != "" {
		runChromium(t, bin, "--screenshot="+out, "--window-size=1200,1180", admin.URL+"/compare")
		if st, err := os.Stat(out); err != nil || st.Size() == 0 {
			t.Fatalf("screenshot %s not written: %v", out, err)
		}
		t.Logf("screenshot written to %s", out)
	}
}
