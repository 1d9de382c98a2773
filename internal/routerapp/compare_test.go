package routerapp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"github.com/pve-migration/router/internal/compare"
	"github.com/pve-migration/router/internal/config"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/pve-migration/router/examples/pvedemo"
	pb "github.com/pve-migration/router/proto/pvemigration/v1"
	"github.com/pve-migration/router/server"
)

// TestRunWithCompare runs the whole program with [compare] on against a
// rust backend that diverges, and reads the evidence on every face: the
// CompareService, /compare.json, /compare and /metrics.
func TestRunWithCompare(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	perl := demoBackend(t, pvedemo.FlavorPerl, state)
	rust := demoBackend(t, pvedemo.FlavorRust, state)
	req, _ := http.NewRequest("POST", rust+"/debug/faults", strings.NewReader(`{"diverge":"data[].method"}`))
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	conf := filepath.Join(dir, "network-migration.conf")
	body := fmt.Sprintf("phase = \"perl-only\"\nperl_api_base_url = %q\n[compare]\nenabled = true\nsample_percent = 100\n", perl)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "grpc.sock")
	admin, proxy := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- Run(ctx, []string{"--config", conf, "--grpc-listen", "unix:" + sock, "--admin-listen", admin,
			"--proxy-listen", proxy, "--perl-upstream", perl, "--rust-upstream", rust, "--node", "pve1", "--kill-switch", filepath.Join(dir, "kill"), "--state-file", "off"}, &bytes.Buffer{}, &stderr)
	}()
	defer func() {
		cancel()
		select {
		case c := <-code:
			if c != ExitOK {
				t.Errorf("Run returned %d; log:\n%s", c, stderr.String())
			}
		case <-time.After(20 * time.Second):
			t.Error("Run did not stop after its context ended")
		}
	}()
	get := func(url string) string {
		resp, err := http.Get(url)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	waitFor(t, "admin up", func() bool { return get("http://"+admin+"/health") != "" })
	waitFor(t, "data plane up", func() bool { return get("http://"+proxy+"/api2/json/version") != "" })
	for range 5 {
		if get("http://"+proxy+"/api2/json/nodes/pve1/network") == "" {
			t.Fatal("GET through the data plane failed")
		}
	}

	conn, err := grpc.NewClient("unix:"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var doc struct {
		Templates []struct {
			Template   string
			Mismatched int
			Fields     []struct{ Path string }
		}
	}
	waitFor(t, "5 mismatches in CompareService", func() bool {
		resp, err := pb.NewCompareServiceClient(conn).GetCompare(ctx, &pb.GetCompareRequest{})
		if err != nil || json.Unmarshal(resp.GetReportJson(), &doc) != nil {
			return false
		}
		return len(doc.Templates) == 1 && doc.Templates[0].Mismatched == 5
	})
	if doc.Templates[0].Fields[0].Path != "data[].method" {
		t.Errorf("fields %+v", doc.Templates[0].Fields)
	}
	if j := get("http://" + admin + "/compare.json"); !strings.Contains(j, `"path": "data[].method"`) {
		t.Errorf("/compare.json: %s", j)
	}
	if p := get("http://" + admin + "/compare"); !strings.Contains(p, "data[].method") {
		t.Errorf("/compare: %s", p)
	}
	// The same jobs' answers were checked against PVE's schema: the
	// diverged rust value is rust's alone, perl's own quirks are baseline.
	var sdoc struct {
		Schema struct {
			Source, Version string
			Violations      []struct {
				Backend, Path, Rule string
				Count               int
				Baseline            bool
			}
		}
	}
	if err := json.Unmarshal([]byte(get("http://"+admin+"/compare.json")), &sdoc); err != nil {
		t.Fatal(err)
	}
	if sdoc.Schema.Source != "embedded" || sdoc.Schema.Version == "" || len(sdoc.Schema.Violations) == 0 {
		t.Fatalf("compare.json schema: %+v", sdoc.Schema)
	}
	first := sdoc.Schema.Violations[0]
	if first.Backend != "rust" || first.Path != "data[].method" || first.Rule != "enum" || first.Baseline || first.Count != 5 {
		t.Errorf("first schema violation %+v, want rust's own enum break of data[].method, 5 times", first)
	}
	for _, v := range sdoc.Schema.Violations[1:] {
		if !v.Baseline {
			t.Errorf("violation %+v: only the diverged field is rust's alone", v)
		}
	}
	if p := get("http://" + admin + "/compare"); !strings.Contains(p, "Schema conformance") || !strings.Contains(p, "manual-diverged") {
		t.Errorf("/compare lacks the schema section: %s", p)
	}
	var st struct {
		Schema *struct{ Source, Version string }
	}
	if err := json.Unmarshal([]byte(get("http://"+admin+"/status")), &st); err != nil || st.Schema == nil ||
		st.Schema.Source != "embedded" || st.Schema.Version != "PVE 9.1.3" {
		t.Errorf("/status does not say which schema is in force: %+v %v", st.Schema, err)
	}
	resp, err := pb.NewControlServiceClient(conn).GetStatus(ctx, &pb.GetStatusRequest{})
	if err != nil || resp.GetSchema().GetSource() != "embedded" || resp.GetSchema().GetVersion() != "PVE 9.1.3" {
		t.Errorf("GetStatus schema = %v, %v", resp.GetSchema(), err)
	}
	if m := get("http://" + admin + "/metrics"); !strings.Contains(m,
		`pve_migration_schema_violations_total{backend="rust",rule="enum",template="/nodes/{node}/network"} 5`) {
		t.Errorf("/metrics lacks the schema violation counter")
	}

	if m := get("http://" + admin + "/metrics"); !strings.Contains(m,
		`pve_migration_compare_total{category="node-network-read",result="mismatch",template="/nodes/{node}/network"} 5`) {
		t.Errorf("/metrics lacks the compare counter:\n%s", m)
	}
	// Shadow requests are no served traffic.
	if m := get("http://" + admin + "/metrics"); strings.Contains(m, `pve_migration_dataplane_served_total{served_by="rust"}`) {
		t.Errorf("a shadow request counted as served by rust")
	}
}

func TestCompareFlagErrors(t *testing.T) {
	for _, arg := range []string{"ftp://x", "http://u:p@rust:8008", "rust:8008"} {
		t.Run(arg, func(t *testing.T) {
			var stderr syncBuffer
			got := Run(context.Background(), []string{"--compare-rust-url", arg}, &bytes.Buffer{}, &stderr)
			if got != ExitUsage || !strings.Contains(stderr.String(), "--compare-rust-url") || strings.Contains(stderr.String(), ":p@") {
				t.Fatalf("Run = %d, stderr %q", got, stderr.String())
			}
		})
	}
}

// TestPinnedClient: the shadow comparison reaches a backend whose
// certificate is pinned (--perl-fingerprint, --rust-fingerprint) and
// refuses one that does not match.
func TestPinnedClient(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	defer srv.Close()
	sum := sha256.Sum256(srv.Certificate().Raw)
	var parts []string
	for _, b := range sum {
		parts = append(parts, fmt.Sprintf("%02X", b))
	}
	good := strings.Join(parts, ":")
	bad := strings.Repeat("AB:", 31) + "AB"
	base, err := server.TLSOptions{}.HTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, pin string
		ok        bool
	}{{"no pin, unknown CA", "", false}, {"matching pin", good, true}, {"other pin", bad, false}} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := pinnedClient(base, tc.pin)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Get(srv.URL)
			if err == nil {
				resp.Body.Close()
			}
			if (err == nil) != tc.ok {
				t.Errorf("GET err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
	if _, err := pinnedClient(base, "zz"); err == nil || !strings.Contains(err.Error(), `"zz"`) {
		t.Errorf("bad fingerprint: %v", err)
	}
}

// TestCompareWindowFollowsGateWindow: the gate's read evidence is the
// comparison's figures over [gate] window, not over all time.
func TestCompareWindowFollowsGateWindow(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	rep := compare.NewReport(t0)
	for i := range 10 {
		v := compare.Verdict{Result: compare.Match}
		if i < 4 {
			v.Result = compare.Mismatch
		}
		// Four mismatches 20 minutes ago, six matches in the last minute.
		at := t0.Add(time.Duration(i) * time.Second)
		if i >= 4 {
			at = t0.Add(20*time.Minute + time.Duration(i)*time.Second)
		}
		rep.Record("node-network-read", "/nodes/{node}/network", "GET", v, at)
	}
	now := t0.Add(21 * time.Minute)
	for _, tc := range []struct {
		window               time.Duration
		compared, mismatched int
	}{
		{5 * time.Minute, 6, 0},
		{30 * time.Minute, 10, 4},
	} {
		snap := &config.Snapshot{}
		snap.Gate.Window = tc.window
		w := compareWindow{report: rep, config: func() *config.Snapshot { return snap }}
		c, m := w.Window("node-network-read", now, 0)
		if c != tc.compared || m != tc.mismatched {
			t.Errorf("window %s: compared %d mismatched %d, want %d and %d", tc.window, c, m, tc.compared, tc.mismatched)
		}
		if c, _ := w.Window("sdn-read", now, 0); c != 0 {
			t.Errorf("sdn-read has %d compared reads", c)
		}
	}
}
