package shadow_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pve-migration/router/envoy/dataplane"
	"github.com/pve-migration/router/examples/pvedemo"
	"github.com/pve-migration/router/internal/compare"
	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/internal/shadow"
	"github.com/pve-migration/router/server"
)

// The token both demo backends accept: the shadow requests only succeed
// when they carry the caller's credentials.
const (
	testToken  = "root@pam!cmp=5ecret-7f3a9c"
	testHeader = "PVEAPIToken=" + testToken
	netList    = "/api2/json/nodes/pve1/network"
)

// env is the whole system on loopback: two demo backends sharing state,
// the real decision service with the shadow worker, and the embedded data
// plane (Envoy's stand-in) in front.
type env struct {
	t          testing.TB
	perl, rust *pvedemo.Server
	perlURL    string
	rustURL    string
	store      *config.Store
	worker     *shadow.Worker
	url        string
	client     *http.Client
	proxy      *dataplane.Proxy
}

type envOpts struct {
	phase      string
	compare    string // the [compare] table's body
	perlFaults pvedemo.Faults
	rustFaults pvedemo.Faults
	queue      int
	check      shadow.Checker // schema check of both answers, if set
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	e := &env{t: t}
	state := t.TempDir()
	start := func(flavor pvedemo.Flavor, f pvedemo.Faults) (*pvedemo.Server, string) {
		s, err := pvedemo.New(pvedemo.Options{Flavor: flavor, StateDir: state, Token: testToken, Faults: f, Logger: quiet(), Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = s.Serve(ctx, ln) }()
		return s, "http://" + ln.Addr().String()
	}
	e.perl, e.perlURL = start(pvedemo.FlavorPerl, o.perlFaults)
	e.rust, e.rustURL = start(pvedemo.FlavorRust, o.rustFaults)
	if o.phase == "" {
		o.phase = "perl-only"
	}
	text := fmt.Sprintf("phase = %q\nperl_api_base_url = %q\nlog_migration_decisions = false\n[compare]\n%s\n", o.phase, e.perlURL, o.compare)
	snap, err := config.Parse("test.conf", []byte(text), func(k string) string {
		if k == config.EnvPerlAPIToken {
			return testToken
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	e.store = config.NewStore(snap)
	e.worker = shadow.New(shadow.Options{Config: e.store.Current, PerlURL: e.perlURL, RustURL: e.rustURL, Logger: quiet(), Queue: o.queue, Check: o.check})
	wg.Add(1)
	go func() { defer wg.Done(); e.worker.Run(ctx) }()
	lookup, err := server.NewPerlLookup(server.PerlLookupOptions{Config: e.store.Current, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	proc := server.NewProcessor(server.Options{Config: e.store.Current, Lookup: lookup, Logger: quiet(), Shadow: e.worker})
	client, stopExt, err := dataplane.InProcessExtProc(proc)
	if err != nil {
		t.Fatal(err)
	}
	p, err := dataplane.New(dataplane.Options{Perl: dataplane.Upstream{URL: e.perlURL}, Rust: dataplane.Upstream{URL: e.rustURL},
		ExtProc: client, Logger: quiet(), DisableHealthChecks: true})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.url = "http://" + ln.Addr().String()
	e.proxy = p
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = p.Serve(ctx, dataplane.ServeOptions{Listener: ln, ShutdownTimeout: 2 * time.Second})
	}()
	e.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}, Timeout: 30 * time.Second}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		_ = p.Close()
		stopExt()
		e.client.CloseIdleConnections()
	})
	return e
}

// do sends one client request through the data plane.
func (e *env) do(method, path, form string) (int, string) {
	e.t.Helper()
	var body io.Reader
	if form != "" {
		body = strings.NewReader(form)
	}
	req, err := http.NewRequest(method, e.url+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", testHeader)
	if form != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Pve-Served-By")
}

// gets sends n GETs of the paths in turn, conc at a time, and checks each
// answer is 200 from want.
func (e *env) gets(n, conc int, want string, paths ...string) {
	e.t.Helper()
	var wg sync.WaitGroup
	errs := make(chan string, n)
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				p := paths[i%len(paths)]
				if st, by := e.do("GET", p, ""); st != 200 || by != want {
					errs <- fmt.Sprintf("GET %s: %d from %q, want 200 from %s", p, st, by, want)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for m := range errs {
		e.t.Error(m)
	}
}

// settle waits until every submitted job has a verdict.
func (e *env) settle(submitted uint64) shadow.Stats {
	e.t.Helper()
	deadline := time.Now().Add(120 * time.Second)
	for {
		st := e.worker.Stats()
		if st.Submitted >= submitted && st.Done >= st.Submitted {
			return st
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("shadow jobs did not finish: %+v, want %d submitted", st, submitted)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// template returns the report's row for tmpl.
func (e *env) template(tmpl string) compare.TemplateSummary {
	for _, ts := range e.worker.Report().Summary().Templates {
		if ts.Template == tmpl {
			return ts
		}
	}
	return compare.TemplateSummary{}
}
