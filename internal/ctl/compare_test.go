package ctl

import (
	"encoding/json"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/pve-migration/router/internal/compare"
	"github.com/pve-migration/router/internal/config"
	pb "github.com/pve-migration/router/proto/pvemigration/v1"
	"github.com/pve-migration/router/server"
)

// startCompareRouter serves CompareService over real gRPC on loopback with
// a report holding a mismatching and a clean template.
func startCompareRouter(t *testing.T) string {
	t.Helper()
	snap, err := config.Parse("t.conf", []byte("phase = \"rust-read-only\"\n[compare]\nenabled = true\nsample_percent = 25\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := compare.NewReport(time.Now().Add(-time.Hour))
	now := time.Now()
	for range 3 {
		r.Record("node-network-read", "/nodes/{node}/network/{iface}", "GET", compare.Verdict{Result: compare.Match}, now)
	}
	for range 2 {
		r.Record("node-network-read", "/nodes/{node}/network", "GET", compare.Verdict{Result: compare.Mismatch, Fields: []compare.Field{
			{Path: "data[].mtu", Kind: compare.KindType, Perl: json.RawMessage(`1500`), Rust: json.RawMessage(`"1500"`)}}}, now)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	pb.RegisterCompareServiceServer(gs, server.NewCompareService(r, nil, func() *config.Snapshot { return snap }))
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

func TestCompareCommand(t *testing.T) {
	addr := startCompareRouter(t)
	t.Run("table", func(t *testing.T) {
		r := run(t, nil, "", "compare", "--router", addr)
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		lines := strings.Split(r.stdout, "\n")
		if !strings.HasPrefix(lines[0], "phase rust-read-only · compare on · sample 25% · window ") {
			t.Errorf("header %q", lines[0])
		}
		worst := strings.Index(r.stdout, "/nodes/{node}/network  ")
		clean := strings.Index(r.stdout, "/nodes/{node}/network/{iface}")
		if worst < 0 || clean < 0 || worst > clean {
			t.Errorf("not worst first:\n%s", r.stdout)
		}
		if !regexp.MustCompile(`/nodes/\{node\}/network +data\[\]\.mtu +type +2 +1500 +"1500"`).MatchString(r.stdout) {
			t.Errorf("field row missing:\n%s", r.stdout)
		}
	})
	t.Run("json after the flags", func(t *testing.T) {
		r := run(t, nil, "", "--router", addr, "compare", "--json")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		var doc struct {
			Templates []struct {
				Template, Method                     string
				Compared, Matched, Mismatched, Noise int
				Errors                               int
				Fields                               []struct {
					Path, Kind string
					Count      int
					Example    struct{ Perl, Rust json.RawMessage }
				}
			}
		}
		if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
			t.Fatalf("%v: %s", err, r.stdout)
		}
		if len(doc.Templates) != 2 || doc.Templates[0].Template != "/nodes/{node}/network" || doc.Templates[0].Mismatched != 2 ||
			doc.Templates[0].Fields[0].Path != "data[].mtu" || string(doc.Templates[0].Fields[0].Example.Rust) != `"1500"` {
			t.Errorf("doc = %+v", doc)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		r := run(t, nil, "", "compare", "--router", "unix:"+filepath.Join(t.TempDir(), "none.sock"))
		if r.code != ExitFailure || !strings.Contains(r.stderr, "not reachable") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("usage", func(t *testing.T) {
		if r := run(t, nil, "", "compare", "extra"); r.code != ExitUsage {
			t.Errorf("exit %d", r.code)
		}
	})
}
