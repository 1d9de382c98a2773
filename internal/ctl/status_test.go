package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/internal/outcome"
	pb "github.com/pve-migration/router/proto/pvemigration/v1"
	"github.com/pve-migration/router/routing"
	"github.com/pve-migration/router/server"
)

// fakeStats is a fixed set of counters, as the telemetry package would
// report them after some traffic.
type fakeStats struct{}

func (fakeStats) Stats() outcome.Stats {
	return outcome.Stats{
		TotalRequests: 1000,
		ByBackend: map[string]outcome.BackendStats{
			"rust": {Requests: 790, Errors: 4, ErrorRate: 4.0 / 790, AvgSeconds: 0.008, P50Seconds: 0.006, P99Seconds: 0.031},
			"perl": {Requests: 208, Errors: 0, ErrorRate: 0, AvgSeconds: 0.0124, P50Seconds: 0.011, P99Seconds: 0.045},
			"none": {Requests: 2, Errors: 2, ErrorRate: 1},
		},
		RustDecisions: 800, RustSuccesses: 790, Fallbacks: 10,
		RustSuccessRate: 790.0 / 800, FallbackRate: 10.0 / 800,
	}
}

var _ outcome.StatsSource = fakeStats{}

// startRouter serves the router's real control API (server.ControlService)
// on a loopback port, reading store, as migration-router does.
func startRouter(t *testing.T, network, addr string, store *config.Store, health *server.HealthChecker) string {
	t.Helper()
	lis, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	pb.RegisterControlServiceServer(gs, server.NewControlService(server.ControlOptions{
		Config: store, Stats: fakeStats{}, Health: health, Version: "test-1.0",
	}))
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	if network == "unix" {
		return "unix:" + addr
	}
	return lis.Addr().String()
}

var (
	timeRE     = regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d`)
	durationRE = regexp.MustCompile(`in [0-9.]+(ns|µs|ms|s)\b`)
)

func TestStatusLive(t *testing.T) {
	dir := fixtureDir(t)
	path := filepath.Join(dir, "commented.conf")
	snap, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	store := config.NewStore(snap)
	perl := httptest.NewServer(pveHandler(t))
	defer perl.Close()
	rustAddr := closedAddr(t)
	health, err := server.NewHealthChecker(server.HealthOptions{
		Config: func() *config.Snapshot {
			s := *store.Current()
			s.PerlAPIBaseURL = perl.URL
			return &s
		},
		RustURL: "http://" + rustAddr,
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	health.CheckNow(context.Background())
	addr := startRouter(t, "tcp", "127.0.0.1:0", store, health)
	norm := func(s string) string {
		s = strings.ReplaceAll(s, addr, "$ROUTER")
		s = strings.ReplaceAll(s, perl.URL, "$PERL")
		s = strings.ReplaceAll(s, rustAddr, "$RUST")
		s = timeRE.ReplaceAllString(s, "$$TIME")
		s = durationRE.ReplaceAllString(s, "in $$LATENCY")
		return normalise(dir, s)
	}

	t.Run("text", func(t *testing.T) {
		r := run(t, nil, "", "status", "--router", addr, "--config", path)
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		checkGolden(t, "status-live", norm(r.golden(dir)))
	})

	t.Run("json", func(t *testing.T) {
		r := run(t, nil, "", "status", "--json", "--router", addr, "--config", path)
		var v statusView
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || r.code != 0 {
			t.Fatalf("exit %d, %v\n%s", r.code, err, r.stdout)
		}
		if v.Source != "router" || !v.Router.Reachable || v.Router.Version != "test-1.0" || v.Phase != "rust-read-only" ||
			v.PhaseSource != "file" || !v.Fallback || v.FallbackTimeoutSeconds != 25 || v.Config != path {
			t.Errorf("status = %+v", v)
		}
		if v.Stats == nil || v.Stats.TotalRequests != 1000 || v.Stats.ByBackend["rust"].P99Seconds != 0.031 || v.Stats.FallbackRate != 10.0/800 {
			t.Errorf("stats = %+v", v.Stats)
		}
		if v.Health["perl"] == nil || !v.Health["perl"].Reachable || v.Health["rust"] == nil || v.Health["rust"].Reachable {
			t.Errorf("health = %+v %+v", v.Health["perl"], v.Health["rust"])
		}
		if len(v.Endpoints) != 1 || v.Endpoints[0].Template != "/nodes/{node}/network/{iface}" || v.Endpoints[0].UseRust == nil || *v.Endpoints[0].UseRust {
			t.Errorf("endpoints = %+v", v.Endpoints)
		}
	})

	t.Run("unix socket", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "grpc.sock")
		uaddr := startRouter(t, "unix", sock, store, nil)
		r := run(t, nil, "", "status", "--router", uaddr, "--config", path)
		if r.code != 0 || !strings.Contains(r.stdout, "router     up "+uaddr) {
			t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("file ahead of the router", func(t *testing.T) {
		if r := run(t, nil, "", "set-phase", "rust-basic-write", "--config", path); r.code != 0 {
			t.Fatal(r.stderr)
		}
		r := run(t, nil, "", "status", "--router", addr, "--config", path)
		if !strings.Contains(r.stdout, "note: the file says phase rust-basic-write: the router has not applied it yet") {
			t.Errorf("no note about the pending edit:\n%s", r.stdout)
		}
	})

	t.Run("rejected reload", func(t *testing.T) {
		store.Apply(nil, &config.ValidationError{Problems: []config.Problem{{File: path, Key: "phase", Msg: `unknown phase "rust-ful"`}}}, time.Now())
		r := run(t, nil, "", "status", "--router", addr, "--config", path)
		for _, want := range []string{"reload     error at ", `phase: unknown phase "rust-ful"`, "keeps serving its last good configuration"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("status lacks %q:\n%s", want, r.stdout)
			}
		}
	})
}

// TestStatusFallsBackToFile: with no router listening, status reads the
// file, says so, and exits 0; a timeout is short.
func TestStatusFallsBackToFile(t *testing.T) {
	dir := fixtureDir(t)
	start := time.Now()
	r := run(t, nil, "", "status", "--config", filepath.Join(dir, "seed.conf"), "--router", closedAddr(t))
	if r.code != 0 || !strings.Contains(r.stdout, "not reachable") || !strings.Contains(r.stdout, "phase      rust-read-only (from file)") {
		t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("status took %s against a closed port", d)
	}
	// A router that accepts but never answers is given up on after --timeout.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	start = time.Now()
	r = run(t, nil, "", "status", "--config", filepath.Join(dir, "seed.conf"), "--router", lis.Addr().String(), "--timeout", "300ms")
	if r.code != 0 || !strings.Contains(r.stdout, "deadline") && !strings.Contains(r.stdout, "not reachable") {
		t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("status took %s with --timeout 300ms", d)
	}
}

// TestSetPhaseWithLiveWatcher edits a file that the router's own watcher
// (config.Watch into a config.Store) is watching: every set-phase is picked
// up, the watcher never records a parse error, and status through the
// control API reports the phase that was set.
func TestSetPhaseWithLiveWatcher(t *testing.T) {
	dir := fixtureDir(t)
	path := filepath.Join(dir, "commented.conf")
	snap, err := config.LoadResolved(path, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	store := config.NewStore(snap)
	var mu sync.Mutex
	var reloadErrs []error
	store.OnReload = func(result string, _ *config.Snapshot, err error) {
		if err != nil {
			mu.Lock()
			reloadErrs = append(reloadErrs, err)
			mu.Unlock()
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- config.Watch(ctx, store, config.WatchOptions{
			Path: path, Explicit: true, PollInterval: 50 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Ready:  func() { close(ready) },
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	}()
	<-ready
	addr := startRouter(t, "tcp", "127.0.0.1:0", store, nil)

	sequence := []routing.Phase{routing.RustBasicWrite, routing.RustAdvanced, routing.PerlOnly, routing.RustReadOnly}
	for i := 0; i < 24; i++ {
		want := sequence[i%len(sequence)]
		r := run(t, nil, "", "set-phase", want.String(), "--config", path)
		if r.code != 0 {
			t.Fatalf("set-phase %s: exit %d\n%s", want, r.code, r.stderr)
		}
		deadline := time.Now().Add(5 * time.Second)
		for store.Current().Policy.Phase != want {
			if time.Now().After(deadline) {
				t.Fatalf("edit %d: the watcher did not pick up phase %s (serving %s)", i, want, store.Current().Policy.Phase)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if i%6 == 0 {
			r := run(t, nil, "", "status", "--json", "--router", addr, "--config", path)
			var v statusView
			if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.Phase != want.String() || v.Source != "router" {
				t.Errorf("status after set-phase %s: %v %+v", want, err, v)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reloadErrs) > 0 || store.ReloadCounts()[config.ResultError] != 0 {
		t.Errorf("the watcher recorded reload errors: %v", errors.Join(reloadErrs...))
	}
	if store.ReloadCounts()[config.ResultOK] < 24 {
		t.Errorf("reloads = %v, want at least 24 ok", store.ReloadCounts())
	}
}
