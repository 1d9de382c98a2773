package routerapp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pve-migration/router/internal/logsink"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/pve-migration/router/examples/pvedemo"
	pb "github.com/pve-migration/router/proto/pvemigration/v1"
)

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer = logsink.Buffer

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func demoBackend(t *testing.T, flavor pvedemo.Flavor, state string) string {
	t.Helper()
	srv, err := pvedemo.New(pvedemo.Options{Flavor: flavor, StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return "http://" + ln.Addr().String()
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRunWholeRouter starts the real program in-process: config file,
// ext_proc on a unix socket, admin HTTP, and the embedded data plane in
// front of two demo backends; then it changes the phase by editing the
// file and stops it with the context, as SIGTERM would.
func TestRunWholeRouter(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	perl := demoBackend(t, pvedemo.FlavorPerl, state)
	rust := demoBackend(t, pvedemo.FlavorRust, state)
	conf := filepath.Join(dir, "network-migration.conf")
	write := func(phase string) {
		body := fmt.Sprintf("phase = %q\nperl_api_base_url = %q\n", phase, perl)
		tmp := conf + ".tmp"
		if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, conf); err != nil {
			t.Fatal(err)
		}
	}
	write("rust-read-only")
	sock := filepath.Join(dir, "extproc.sock")
	admin, proxy := freeAddr(t), freeAddr(t)

	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- Run(ctx, []string{"--config", conf, "--grpc-listen", "unix:" + sock, "--admin-listen", admin,
			"--proxy-listen", proxy, "--perl-upstream", perl, "--rust-upstream", rust, "--reload-interval", "100ms",
			"--node", "pve1", "--kill-switch", filepath.Join(dir, "perl-only")},
			&bytes.Buffer{}, &stderr)
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

	waitFor(t, "admin /health 200", func() bool {
		resp, err := http.Get("http://" + admin + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	waitFor(t, "data plane listening", func() bool {
		c, err := net.Dial("tcp", proxy)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	conn, err := grpc.NewClient("unix:"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hc.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("grpc health = %v, %v", hc, err)
	}

	servedBy := func(method, path string) string {
		req, _ := http.NewRequest(method, "http://"+proxy+path, nil)
		req.Header.Set("x-pve-backend", "rust") // a client can never choose
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header.Get("x-pve-served-by")
	}
	if got := servedBy("GET", "/api2/json/nodes/pve1/network"); got != "rust" {
		t.Fatalf("rust-read-only list served by %q", got)
	}
	if got := servedBy("GET", "/api2/json/nodes/pve1/qemu"); got != "perl" {
		t.Fatalf("not-network served by %q", got)
	}

	write("perl-only")
	ctl := pb.NewControlServiceClient(conn)
	waitFor(t, "phase perl-only in GetStatus", func() bool {
		st, err := ctl.GetStatus(ctx, &pb.GetStatusRequest{})
		return err == nil && st.GetPhase() == "perl-only"
	})
	if got := servedBy("GET", "/api2/json/nodes/pve1/network"); got != "perl" {
		t.Fatalf("after rollback the list is served by %q", got)
	}

	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var metrics bytes.Buffer
	_, _ = metrics.ReadFrom(resp.Body)
	resp.Body.Close()
	for _, fam := range []string{"pve_migration_requests_total", "pve_migration_config_reloads_total", "pve_migration_phase_info",
		"pve_migration_dataplane_requests_total", "pve_migration_dataplane_ext_proc_fail_open_total", `pve_migration_dataplane_served_total{served_by="rust"}`} {
		if !strings.Contains(metrics.String(), fam) {
			t.Errorf("/metrics lacks %s", fam)
		}
	}
	// The initial load counts as a reload (issue 13, finding 7): with the
	// rollback that is at least two successful ones.
	if m := regexp.MustCompile(`pve_migration_config_reloads_total\{[^}]*result="ok"[^}]*\} (\d+)`).FindStringSubmatch(metrics.String()); m == nil || atoiOr0(m[1]) < 2 {
		t.Errorf("config_reloads_total{result=ok}: %v, want the initial load and the rollback", m)
	}
	resp, err = http.Get("http://" + admin + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var status map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&status); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if status["phase"] != "perl-only" {
		t.Errorf("/status phase = %v", status["phase"])
	}
	node, _ := status["node"].(map[string]any)
	if status["kill_switch"] != false || node["node"] != "pve1" || node["effective_phase"] != "perl-only" || node["state_file_error"] != nil {
		t.Errorf("/status kill_switch = %v, node = %v; want false, pve1 on perl-only with its state file written", status["kill_switch"], node)
	}
}

func TestFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--tls-cert", "x"}, ExitUsage, "--tls-cert and --tls-key go together"},
		{[]string{"--proxy-listen", ":8006"}, ExitUsage, "--proxy-listen needs --perl-upstream and --rust-upstream"},
		{[]string{"--log-format", "xml"}, ExitUsage, `--log-format "xml"`},
		{[]string{"--reload-interval", "0s"}, ExitUsage, "--reload-interval 0"},
		{[]string{"--nope"}, ExitUsage, "flag provided but not defined: -nope"},
		{[]string{"extra"}, ExitUsage, `unexpected argument "extra"`},
		{[]string{"--config", "/nonexistent/x.conf"}, ExitFailure, "/nonexistent/x.conf"},
		{[]string{"healthcheck"}, ExitUsage, "usage: migration-router healthcheck URL"},
		{[]string{"--node", "pve_1"}, ExitUsage, `--node: invalid node name "pve_1"`},
		{[]string{"--node", "localhost"}, ExitUsage, `"localhost" is not a node name`},
		{[]string{"--node", ""}, ExitUsage, "--node: no node name"},
		{[]string{"--state-interval", "0s"}, ExitUsage, "--state-interval 0s"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stderr syncBuffer
			got := Run(context.Background(), tc.args, &bytes.Buffer{}, &stderr)
			if got != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("Run = %d, stderr %q; want %d containing %q", got, stderr.String(), tc.code, tc.want)
			}
		})
	}
}

func TestDefaultsBindLoopback(t *testing.T) {
	var f flags
	fs := newFlagSet(&f, &bytes.Buffer{})
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	for name, addr := range map[string]string{"grpc-listen": f.grpcListen, "admin-listen": f.adminListen} {
		host, _, err := net.SplitHostPort(addr)
		if err != nil || !net.ParseIP(host).IsLoopback() {
			t.Errorf("--%s defaults to %q, not a loopback address", name, addr)
		}
	}
	if f.proxyListen != "" {
		t.Errorf("the data plane is on by default (%q)", f.proxyListen)
	}
}

func atoiOr0(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
