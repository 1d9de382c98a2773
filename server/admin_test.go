package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/internal/outcome"
	pb "github.com/pve-migration/router/proto/pvemigration/v1"
	"github.com/pve-migration/router/routing"
	"github.com/pve-migration/router/server"
)

// quiet drops logs that tests do not look at.
var quiet = slog.New(slog.DiscardHandler)

// fakeStats is a StatsSource with fixed figures.
type fakeStats struct{}

func (fakeStats) Stats() outcome.Stats {
	return outcome.Stats{
		TotalRequests: 10,
		ByBackend: map[string]outcome.BackendStats{
			"rust": {Requests: 7, Errors: 1, ErrorRate: 1.0 / 7, AvgSeconds: 0.01, P50Seconds: 0.008, P99Seconds: 0.05},
			"perl": {Requests: 3, AvgSeconds: 0.1, P50Seconds: 0.09, P99Seconds: 0.3},
		},
		RustDecisions: 8, RustSuccesses: 6, Fallbacks: 1, RustSuccessRate: 0.75, FallbackRate: 0.125,
	}
}

// pveVersion answers /api2/json/version like pveproxy: 401 without a
// valid token, the version object with one.
func pveVersion(t *testing.T) (*httptest.Server, func() []string) {
	var mu sync.Mutex
	var auth []string
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		if r.URL.Path != "/api2/json/version" {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "PVEAPIToken="+testToken {
			http.Error(w, "authentication failure", http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, `{"data":{"version":"9.1.1","release":"9.1","repoid":"abc"}}`)
	}))
	t.Cleanup(s.Close)
	return s, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), auth...) }
}

func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return "http://" + addr
}

func getJSON(t *testing.T, h http.Handler, path string) (int, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("GET %s: %v\n%s", path, err, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET %s: content-type %q", path, ct)
	}
	if strings.Contains(rec.Body.String(), testTokenSecret) {
		t.Errorf("GET %s shows the token secret", path)
	}
	return rec.Code, m
}

func keys(m map[string]any) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ",")
}

func TestHealthChecker(t *testing.T) {
	perl, auth := pveVersion(t)
	rust := closedPort(t)
	cases := []struct {
		name               string
		perlURL, rustURL   string
		token              config.Secret
		wantPerl, wantRust string
		wantPerlStatus     int
	}{
		{"token accepted, rust down", perl.URL, rust, testToken, server.StateReachable, server.StateUnreachable, 200},
		{"401 is reachable, no rust url", perl.URL, "", "", server.StateReachable, server.StateUnknown, 401},
		{"perl down", closedPort(t), perl.URL, testToken, server.StateUnreachable, server.StateReachable, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			snap := snapshot(routing.PerlOnly, func(s *config.Snapshot) { s.PerlAPIBaseURL = c.perlURL; s.PerlAPIToken = c.token })
			hc, err := server.NewHealthChecker(server.HealthOptions{Config: func() *config.Snapshot { return snap }, RustURL: c.rustURL, Timeout: time.Second, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			if r := hc.Report(); r.Perl.State != server.StateUnknown {
				t.Fatalf("before the first probe: %+v", r.Perl)
			}
			hc.CheckNow(context.Background())
			r := hc.Report()
			if r.Perl.State != c.wantPerl || r.Rust.State != c.wantRust || r.Perl.HTTPStatus != c.wantPerlStatus {
				t.Fatalf("report %+v", r)
			}
			for _, p := range []server.ProbeResult{r.Perl, r.Rust} {
				if p.State == server.StateUnreachable && p.Error == "" {
					t.Errorf("unreachable without error: %+v", p)
				}
				if p.State != server.StateUnknown && (p.CheckedAt == nil || p.Latency <= 0) {
					t.Errorf("probe without time or latency: %+v", p)
				}
				if strings.Contains(p.Error, testTokenSecret) {
					t.Errorf("error contains the token: %s", p.Error)
				}
			}
		})
	}
	for _, a := range auth() {
		if a != "" && a != "PVEAPIToken="+testToken {
			t.Errorf("probe sent Authorization %q", a)
		}
	}
}

func TestHealthCheckerRunsInBackground(t *testing.T) {
	perl, auth := pveVersion(t)
	snap := snapshot(routing.PerlOnly, func(s *config.Snapshot) { s.PerlAPIBaseURL = perl.URL })
	hc, err := server.NewHealthChecker(server.HealthOptions{Config: func() *config.Snapshot { return snap }, Interval: 20 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { hc.Run(ctx); close(done) }()
	deadline := time.Now().Add(2 * time.Second)
	for hc.Report().Perl.State != server.StateReachable && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	// Readers never trigger probes.
	h := server.NewAdminHandler(server.AdminOptions{Health: hc})
	for range 50 {
		getJSON(t, h, "/health")
	}
	time.Sleep(70 * time.Millisecond)
	cancel()
	<-done
	if n := len(auth()); n < 1 || n > 20 {
		t.Fatalf("%d probes in ~100ms at a 20ms interval with 50 readers; readers must not trigger probes", n)
	}
}

func TestAdminHandler(t *testing.T) {
	snap := snapshot(routing.RustBasicWrite, func(s *config.Snapshot) {
		s.PerlAPIToken = testToken
		s.Policy.Endpoints["/nodes/{node}/network"] = routing.EndpointRule{UseRust: ptr(true), RustMethods: []string{"GET"}, RustTimeout: 5 * time.Second}
		s.Policy.Endpoints["/cluster/sdn"] = routing.EndpointRule{FallbackOnError: ptr(false)}
	})
	store := config.NewStore(snap)
	store.Apply(nil, errors.New(`network-migration.conf:3: unknown phase "rust-everything"`), time.Date(2026, 5, 1, 13, 0, 0, 0, time.UTC))
	ready := &server.Readiness{}
	hc, err := server.NewHealthChecker(server.HealthOptions{Config: store.Current, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "# TYPE pve_migration_requests_total counter\n")
	})
	h := server.NewAdminHandler(server.AdminOptions{Config: store, Health: hc, Metrics: metrics, Stats: fakeStats{}, Version: "v1.2.3", Ready: ready})

	t.Run("health 503 until gRPC serves", func(t *testing.T) {
		code, m := getJSON(t, h, "/health")
		if code != 503 || m["serving"] != false || m["status"] != "not-serving" {
			t.Fatalf("%d %v", code, m)
		}
	})
	t.Run("health 200 and shape", func(t *testing.T) {
		ready.SetGRPCServing(true)
		code, m := getJSON(t, h, "/health")
		if code != 200 || m["serving"] != true || m["status"] != "serving" {
			t.Fatalf("%d %v", code, m)
		}
		if got, want := keys(m), "config_path,last_reload,perl,phase,phase_source,rust,serving,status,version"; got != want {
			t.Errorf("keys %s, want %s", got, want)
		}
		if m["phase"] != "rust-basic-write" || m["phase_source"] != "file" || m["config_path"] != snap.Path {
			t.Errorf("%v", m)
		}
		lr := m["last_reload"].(map[string]any)
		if lr["result"] != "error" || !strings.Contains(lr["error"].(string), "rust-everything") || lr["at"] == nil {
			t.Errorf("last_reload %v", lr)
		}
		perl := m["perl"].(map[string]any)
		if got, want := keys(perl), "latency_ms,reachable,state,url"; got != want {
			t.Errorf("perl keys %s, want %s", got, want)
		}
		if m["rust"].(map[string]any)["state"] != "unknown" {
			t.Errorf("rust %v", m["rust"])
		}
	})
	t.Run("health without config", func(t *testing.T) {
		code, _ := getJSON(t, server.NewAdminHandler(server.AdminOptions{}), "/health")
		if code != 503 {
			t.Fatalf("code %d", code)
		}
	})
	t.Run("status shape", func(t *testing.T) {
		code, m := getJSON(t, h, "/status")
		if code != 200 {
			t.Fatal(code)
		}
		want := "config_path,endpoints,fallback,features,gate,health,kill_switch,last_reload,loaded_at,log_decisions,metrics_enabled,perl_api_base_url,perl_api_token_id,perl_api_token_set,phase,phase_source,serving,stats,version"
		if got := keys(m); got != want {
			t.Errorf("keys %s\nwant %s", got, want)
		}
		if m["perl_api_token_id"] != "root@pam!router" || m["perl_api_token_set"] != true {
			t.Errorf("token view %v %v", m["perl_api_token_id"], m["perl_api_token_set"])
		}
		eps := m["endpoints"].([]any)
		if len(eps) != 2 || eps[0].(map[string]any)["template"] != "/cluster/sdn" {
			t.Errorf("endpoints %v", eps)
		}
		e1 := eps[1].(map[string]any)
		if e1["use_rust"] != true || e1["rust_timeout_seconds"] != 5.0 || e1["rust_methods"].([]any)[0] != "GET" {
			t.Errorf("endpoint %v", e1)
		}
		fb := m["fallback"].(map[string]any)
		if fb["enabled"] != true || fb["timeout_seconds"] != 30.0 || fb["source"] != "default" {
			t.Errorf("fallback %v", fb)
		}
		st := m["stats"].(map[string]any)
		if st["total_requests"] != 10.0 || st["fallback_rate"] != 0.125 {
			t.Errorf("stats %v", st)
		}
		rust := st["by_backend"].(map[string]any)["rust"].(map[string]any)
		if got, want := keys(rust), "avg_seconds,error_rate,errors,p50_seconds,p99_seconds,requests"; got != want {
			t.Errorf("backend stats keys %s", got)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), "pve_migration_requests_total") {
			t.Fatalf("%d %s", rec.Code, rec.Body.String())
		}
		rec = httptest.NewRecorder()
		server.NewAdminHandler(server.AdminOptions{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if rec.Code != 404 {
			t.Fatalf("no metrics handler: %d", rec.Code)
		}
	})
	t.Run("only GET", func(t *testing.T) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/health", nil))
		if rec.Code != http.StatusMethodNotAllowed {
			t.Fatalf("POST /health: %d", rec.Code)
		}
	})
}

// TestServeAdmin: the admin server really listens and shuts down.
func TestServeAdmin(t *testing.T) {
	ln, err := server.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	store := config.NewStore(snapshot(routing.PerlOnly))
	go func() {
		done <- server.ServeAdminListener(ctx, ln, server.NewAdminHandler(server.AdminOptions{Config: store}))
	}()
	resp, err := http.Get("http://" + ln.Addr().String() + "/health")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestControlAPI: GetStatus and Explain over real gRPC.
func TestControlAPI(t *testing.T) {
	snap := snapshot(routing.RustBasicWrite, func(s *config.Snapshot) {
		s.PerlAPIToken = testToken
		s.Policy.Endpoints["/cluster/sdn/vnets"] = routing.EndpointRule{UseRust: ptr(true), RustTimeout: 2500 * time.Millisecond}
	})
	store := config.NewStore(snap)
	store.Apply(snap, nil, time.Date(2026, 5, 1, 13, 0, 0, 0, time.UTC))
	ready := &server.Readiness{}
	ctrl := server.NewControlService(server.ControlOptions{Config: store, Stats: fakeStats{}, Version: "v1.2.3", Ready: ready})
	ln, err := server.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- server.Serve(ctx, server.ServeConfig{Listener: ln, Processor: server.NewProcessor(server.Options{Config: store.Current, Logger: quiet}), Control: ctrl, Config: store.Current, Ready: ready, Logger: quiet})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	conn, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewControlServiceClient(conn)

	st, err := c.GetStatus(ctx, &pb.GetStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetPhase() != "rust-basic-write" || st.GetPhaseSource() != "file" || !st.GetFallbackEnabled() ||
		st.GetFallbackTimeout().AsDuration() != 30*time.Second || st.GetFeatures().GetEnableSdnMigration() ||
		!st.GetFeatures().GetEnableAdvancedNetworking() || st.GetVersion() != "v1.2.3" || !st.GetPerlApiTokenSet() {
		t.Errorf("status %v", st)
	}
	if len(st.GetEndpoints()) != 1 || st.GetEndpoints()[0].GetTemplate() != "/cluster/sdn/vnets" || !st.GetEndpoints()[0].GetUseRust() ||
		st.GetEndpoints()[0].FallbackOnError != nil || st.GetEndpoints()[0].GetRustTimeout().AsDuration() != 2500*time.Millisecond {
		t.Errorf("endpoints %v", st.GetEndpoints())
	}
	if st.GetLastReload().GetResult() != "unchanged" || st.GetLastReload().GetAt() == nil {
		t.Errorf("reload %v", st.GetLastReload())
	}
	if s := st.GetStats(); s.GetTotalRequests() != 10 || s.GetByBackend()["rust"].GetP99Seconds() != 0.05 || s.GetRustSuccessRate() != 0.75 {
		t.Errorf("stats %v", s)
	}
	if st.GetHealth().GetPerl().GetState() != "unknown" || st.GetHealth().GetRust().GetState() != "unknown" {
		t.Errorf("health %v", st.GetHealth())
	}
	if strings.Contains(st.String(), testTokenSecret) {
		t.Error("GetStatus shows the token secret")
	}

	for _, r := range []struct{ method, path, typ string }{
		{"GET", "/api2/json/nodes/pve1/network", ""},
		{"POST", "/api2/json/nodes/pve1/network", "eth"},
		{"POST", "/api2/json/nodes/pve1/network", ""},
		{"DELETE", "/api2/extjs/nodes/pve1/network/vmbr0", "bridge"},
		{"GET", "/api2/json/cluster/sdn/vnets", ""},
		{"POST", "/api2/json/cluster/sdn/vnets?x=1", ""},
		{"GET", "/api2/json/version", ""},
	} {
		t.Run("explain "+r.method+" "+r.path+" "+r.typ, func(t *testing.T) {
			got, err := c.Explain(ctx, &pb.ExplainRequest{Method: r.method, Path: r.path, Type: r.typ})
			if err != nil {
				t.Fatal(err)
			}
			want := routing.Decide(&snap.Policy, routing.Request{Method: r.method, Path: r.path, IfaceType: r.typ})
			if got.GetBackend() != want.Backend.String() || got.GetCategory() != want.Category.String() || got.GetReason() != want.Reason.String() ||
				got.GetTemplate() != want.Template || got.GetFallback() != want.Fallback || got.GetRustTimeout().AsDuration() != want.RustTimeout ||
				got.GetPhase() != "rust-basic-write" {
				t.Errorf("explain %v, Decide %+v", got, want)
			}
		})
	}
	// As migration-ctl: the method is upper-cased, a full URL is accepted.
	got, err := c.Explain(ctx, &pb.ExplainRequest{Method: " get", Path: "https://pve1:8006/api2/json/nodes/pve1/network?x=1"})
	if err != nil || got.GetBackend() != "rust" || got.GetTemplate() != "/nodes/{node}/network" {
		t.Errorf("explain lower-case method, full URL: %v %v", got, err)
	}
	for _, bad := range []*pb.ExplainRequest{{Path: "/x"}, {Method: "GET"}, {Method: "GET", Path: "api2/json"}} {
		if _, err := c.Explain(ctx, bad); status.Code(err) != codes.InvalidArgument {
			t.Errorf("Explain(%v): %v, want InvalidArgument", bad, err)
		}
	}
}

// TestGRPCHealth: NOT_SERVING until a config is loaded, then SERVING for
// the whole server and for the ext_proc service.
func TestGRPCHealth(t *testing.T) {
	var loaded *config.Snapshot
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	cfg := func() *config.Snapshot { <-mu; defer func() { mu <- struct{}{} }(); return loaded }
	ln, err := server.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- server.Serve(ctx, server.ServeConfig{Listener: ln, Processor: server.NewProcessor(server.Options{Config: cfg, Logger: quiet}), Config: cfg, Logger: quiet})
	}()
	defer func() { cancel(); <-done }()
	conn, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	check := func(svc string) healthpb.HealthCheckResponse_ServingStatus {
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetStatus()
	}
	for _, svc := range []string{"", server.ExtProcServiceName} {
		if s := check(svc); s != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("%q before config: %s", svc, s)
		}
	}
	<-mu
	loaded = snapshot(routing.PerlOnly)
	mu <- struct{}{}
	deadline := time.Now().Add(2 * time.Second)
	for _, svc := range []string{"", server.ExtProcServiceName} {
		for check(svc) != healthpb.HealthCheckResponse_SERVING {
			if time.Now().After(deadline) {
				t.Fatalf("%q never SERVING", svc)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
