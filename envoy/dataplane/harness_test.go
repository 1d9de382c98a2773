package dataplane

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"

	"github.com/pve-migration/router/envoy"
	"github.com/pve-migration/router/examples/pvedemo"
	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/internal/extproclocal"
	"github.com/pve-migration/router/server"
)

// linkTest is the test whose subtests run data plane tests with the
// decision service (or the scripted fake) behind the in-process link
// instead of gRPC (link_test.go); newEnv and newUnitEnv look at the test
// name.
const linkTest = "TestOverInProcessLink"

func overLink(t testing.TB) bool { return strings.HasPrefix(t.Name(), linkTest+"/") }

// linkTo connects to srv over the in-process link; stop waits for the
// streams still open.
func linkTo(srv extprocv3.ExternalProcessorServer) (extprocv3.ExternalProcessorClient, func()) {
	link := extproclocal.New(srv, extproclocal.Options{})
	return link, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = link.Close(ctx)
	}
}

// testEnv is the whole system on loopback: two demo PVE backends sharing a
// state directory, the real decision service (server.NewProcessor) behind a
// real gRPC server, and the data plane serving on a loopback port.
type testEnv struct {
	t          testing.TB
	perl, rust *pvedemo.Server
	perlURL    string
	rustURL    string
	rustAddr   string
	store      *config.Store
	env        func(string) string
	confPath   string
	proxy      *Proxy
	url        string // the data plane's base URL
	proc       *server.Processor
	opts       Options // what proxy was built with
	client     *http.Client
	stopExt    func()
	grpcStop   func()
	cancel     context.CancelFunc
	wg         sync.WaitGroup

	mu      sync.Mutex
	records []AccessRecord
}

type envOptions struct {
	phase         string
	extra         string // more TOML
	unimplemented []string
	token         string
	rustFaults    pvedemo.Faults
	settings      *envoy.ExtProcSettings
	// noExtProc starts the data plane with a decision service that is
	// down (a dialled address nothing listens on).
	noExtProc bool
	// inProcess connects the data plane to the decision service over
	// the in-process link (internal/extproclocal) instead of loopback
	// gRPC, as the router does without --ext-proc.
	inProcess bool
	watch     bool // watch confPath for changes
	// healthChecks turns on envoy.yaml's active health check of rust
	// (off by default: its GET /api2/json/version would show up in the
	// backends' request logs and fault counters).
	healthChecks bool
	proxyOpts    func(*Options)

	// rustNoFallbackHeader: the rust backend does not mark failed extjs
	// answers with x-pve-fallback.
	rustNoFallbackHeader bool
	// rustMiddleware, if set, wraps the rust backend's handler (served
	// as a plain http.Handler then, so Faults.Refuse does not apply).
	rustMiddleware func(http.Handler) http.Handler
}

func quietLogger() *slog.Logger {
	if os.Getenv("DATAPLANE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func configText(phase, perlURL, extra string) string {
	return fmt.Sprintf("phase = %q\nfallback_enabled = true\nfallback_timeout = 5\nperl_api_base_url = %q\nperl_api_timeout = 10\nlog_migration_decisions = false\n%s\n", phase, perlURL, extra)
}

func newEnv(t testing.TB, o envOptions) *testEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e := &testEnv{t: t, cancel: cancel}
	t.Cleanup(e.close)
	state := t.TempDir()
	start := func(flavor pvedemo.Flavor, unimpl []string, f pvedemo.Faults, mw func(http.Handler) http.Handler) (*pvedemo.Server, string) {
		s, err := pvedemo.New(pvedemo.Options{Flavor: flavor, StateDir: state, Token: o.token, Unimplemented: unimpl, Faults: f, Logger: quietLogger(), Seed: 1, NoFallbackHeader: o.rustNoFallbackHeader})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		e.wg.Add(1)
		if mw != nil {
			hs := &http.Server{Handler: mw(s)}
			go func() { defer e.wg.Done(); _ = hs.Serve(ln) }()
			context.AfterFunc(ctx, func() { _ = hs.Close() })
			return s, "http://" + ln.Addr().String()
		}
		go func() {
			defer e.wg.Done()
			_ = s.Serve(ctx, ln)
		}()
		return s, "http://" + ln.Addr().String()
	}
	e.perl, e.perlURL = start(pvedemo.FlavorPerl, nil, pvedemo.Faults{}, nil)
	e.rust, e.rustURL = start(pvedemo.FlavorRust, o.unimplemented, o.rustFaults, o.rustMiddleware)
	e.rustAddr = strings.TrimPrefix(e.rustURL, "http://")

	phase := o.phase
	if phase == "" {
		phase = "perl-only"
	}
	e.confPath = filepath.Join(t.TempDir(), "network-migration.conf")
	if err := os.WriteFile(e.confPath, []byte(configText(phase, e.perlURL, o.extra)), 0o644); err != nil {
		t.Fatal(err)
	}
	e.env = func(k string) string {
		if k == config.EnvPerlAPIToken {
			return o.token // the decision service's DELETE type lookups authenticate
		}
		return ""
	}
	snap, err := config.Load(e.confPath, e.env)
	if err != nil {
		t.Fatal(err)
	}
	e.store = config.NewStore(snap)
	if o.watch {
		ready := make(chan struct{})
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			_ = config.Watch(ctx, e.store, config.WatchOptions{Path: e.confPath, Explicit: true, Env: e.env, PollInterval: 100 * time.Millisecond, Logger: quietLogger(), Ready: func() { close(ready) }})
		}()
		<-ready
	}
	lookup, err := server.NewPerlLookup(server.PerlLookupOptions{Config: e.store.Current, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	proc := server.NewProcessor(server.Options{Config: e.store.Current, Lookup: lookup, Logger: quietLogger()})
	e.proc = proc

	var opts Options
	if o.noExtProc {
		// An address where nothing listens: every stream fails to open.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		client, closeFn, err := DialExtProc(addr)
		if err != nil {
			t.Fatal(err)
		}
		e.stopExt = func() { _ = closeFn() }
		opts.ExtProc = client
	} else if o.inProcess || overLink(t) {
		// The router's default without --ext-proc: the same Processor
		// called in process, no gRPC.
		client, stop := linkTo(proc)
		e.stopExt = stop
		opts.ExtProc = client
	} else {
		// A real gRPC server on loopback TCP, as Envoy would reach it.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		gs := grpc.NewServer()
		extprocv3.RegisterExternalProcessorServer(gs, proc)
		go func() { _ = gs.Serve(ln) }()
		e.grpcStop = gs.Stop
		client, closeFn, err := DialExtProc(ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		e.stopExt = func() { _ = closeFn() }
		opts.ExtProc = client
	}
	opts.Perl = Upstream{URL: e.perlURL}
	opts.Rust = Upstream{URL: e.rustURL}
	opts.Logger = quietLogger()
	opts.ExtProcSettings = o.settings
	opts.DisableHealthChecks = !o.healthChecks
	opts.AccessLog = func(r AccessRecord) {
		e.mu.Lock()
		e.records = append(e.records, r)
		e.mu.Unlock()
	}
	if o.proxyOpts != nil {
		o.proxyOpts(&opts)
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.proxy, e.opts = p, opts
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.url = "http://" + ln.Addr().String()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		if err := p.Serve(ctx, ServeOptions{Listener: ln, ShutdownTimeout: 2 * time.Second}); err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	e.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}, Timeout: 30 * time.Second}
	return e
}

func (e *testEnv) close() {
	e.cancel()
	e.wg.Wait()
	if e.proxy != nil {
		_ = e.proxy.Close()
	}
	if e.stopExt != nil {
		e.stopExt()
	}
	if e.grpcStop != nil {
		e.grpcStop()
	}
	if e.client != nil {
		e.client.CloseIdleConnections()
	}
}

// writeConfig replaces the config file atomically, as an editor or
// migration-ctl would; the watcher picks it up.
func (e *testEnv) writeConfig(phase, extra string) {
	e.t.Helper()
	tmp := e.confPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(configText(phase, e.perlURL, extra)), 0o644); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, e.confPath); err != nil {
		e.t.Fatal(err)
	}
}

type result struct {
	status   int
	servedBy string
	attempts string
	header   http.Header
	body     []byte
}

func (e *testEnv) do(method, path string, form url.Values, hdr map[string]string) result {
	e.t.Helper()
	r, err := e.try(method, path, form, hdr)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

func (e *testEnv) try(method, path string, form url.Values, hdr map[string]string) (result, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, e.url+path, body)
	if err != nil {
		return result{}, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return result{}, err
	}
	return result{status: resp.StatusCode, servedBy: resp.Header.Get("X-Pve-Served-By"), attempts: resp.Header.Get("X-Envoy-Attempt-Count"), header: resp.Header, body: b}, nil
}

// seen counts the requests a backend recorded for method and path.
func seen(s *pvedemo.Server, method, path string) int {
	n := 0
	for _, r := range s.Requests() {
		if r.Method == method && r.Path == path {
			n++
		}
	}
	return n
}

func applied(s *pvedemo.Server, key string) int64 { return s.Applied()[key] }

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
