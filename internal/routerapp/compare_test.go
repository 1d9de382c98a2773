package routerapp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
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
			"--proxy-listen", proxy, "--perl-upstream", perl, "--rust-upstream", rust}, &bytes.Buffer{}, &stderr)
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
