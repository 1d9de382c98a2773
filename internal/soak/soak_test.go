package soak

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/pve-migration/router/envoy"
	"github.com/pve-migration/router/envoy/dataplane"
	"github.com/pve-migration/router/examples/pvedemo"
	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/routing"
	"github.com/pve-migration/router/server"
)

// plan is one soak run's shape. The short version (make test) keeps the
// whole test under 30 s on a loaded two-core machine under -race.
type plan struct {
	traffic time.Duration // how long traffic flows
	step    time.Duration // phase flip, fault change and resource sample period
	rate    int           // requests per second, all workers together
	workers int
}

func soakPlan(t *testing.T) plan {
	p := plan{traffic: 21 * time.Second, step: 3 * time.Second, rate: 30, workers: 6}
	v := os.Getenv("SOAK_DURATION")
	if v == "" {
		if testing.Short() {
			t.Skip("soak: skipped with -short")
		}
		return p
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 30*time.Second {
		t.Fatalf("SOAK_DURATION=%q: want a duration of at least 30s (e.g. 10m)", v)
	}
	return plan{traffic: d, step: 10 * time.Second, rate: 40, workers: 8}
}

// The schedule: at step s the phase is phaseCycle[(s+s/6)%6] and rust
// behaves as faultCycle[s%6]. The shift by s/6 pairs every fault with a
// different phase on each round of a long run; the first round (the
// whole short run) puts each fault on a phase that sends traffic to rust,
// and keeps "refuse", which gets rust ejected for 30 s by outlier
// detection, for last. Every transition, the rollback to perl-only
// included, happens under traffic.
var phaseCycle = []string{"rust-read-only", "rust-full", "rust-advanced", "rust-sdn", "perl-only", "rust-basic-write"}

var faultCycle = []struct {
	name string
	f    pvedemo.Faults
}{
	{"healthy", pvedemo.Faults{}},
	{"error_rate=0.5", pvedemo.Faults{ErrorRate: 0.5}},
	{"latency=1.5s (over the 1s rust timeout)", pvedemo.Faults{Latency: 1500 * time.Millisecond}},
	{"crash_after=3", pvedemo.Faults{CrashAfter: 3}},
	{"latency=200ms", pvedemo.Faults{Latency: 200 * time.Millisecond}},
	// Applies each write, then drops its connection: with the clients'
	// Idempotency-Key, a transport that replays writes would apply them
	// twice (checkWrites).
	{"drop_after_write", pvedemo.Faults{DropAfterWrite: true}},
	{"refuse", pvedemo.Faults{Refuse: true}},
}

func phaseAt(step int) string { return phaseCycle[(step+step/len(phaseCycle))%len(phaseCycle)] }

const node = "pve1"

// rig is the system under soak, all in this process on loopback.
type rig struct {
	t        *testing.T
	step     time.Duration
	ctx      context.Context
	log      *slog.Logger
	state    string
	token    string
	confPath string
	store    *config.Store
	env      func(string) string

	perl    *pvedemo.Server
	perlURL string

	rustMu         sync.Mutex
	rust           *pvedemo.Server
	rustAddr       string
	rustStops      []func()
	retiredApplied map[string]int64 // applied counters of crashed rust instances
	rustRestart    int

	grpcAddr string
	proc     *server.Processor
	svcMu    sync.Mutex
	svcStop  func()

	proxy    *dataplane.Proxy
	proxyURL string

	wg sync.WaitGroup

	// The backends' write records (their request logs are rings),
	// merged across polls and checked per x-request-id once no further
	// attempt of that request is possible. Checked ids are dropped, so
	// the harness's own memory stays flat and the heap samples measure
	// the system under test.
	recMu     sync.Mutex
	seenRecs  map[recordKey]bool
	byID      map[string][]attempt
	watermark time.Time
	replays   []string
	nReplays  int
	nChecked  int
}

type recordKey struct {
	backend string
	inst    int
	at      time.Time
	id      string
	method  string
	path    string
}

// attempt is one backend's record of a write.
type attempt struct {
	backend string
	rec     pvedemo.RequestRecord
}

// settle is how long after its last record a write request can still get
// another attempt: far above the route timeout (rust 1 s + perl 10 s).
const settle = 30 * time.Second

func TestSoak(t *testing.T) {
	pl := soakPlan(t)
	ctx, cancel := context.WithCancel(context.Background())
	r := &rig{t: t, step: pl.step, ctx: ctx, log: slog.New(slog.DiscardHandler), seenRecs: map[recordKey]bool{}, byID: map[string][]attempt{}, retiredApplied: map[string]int64{}}
	if os.Getenv("SOAK_LOG") != "" {
		r.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	defer func() {
		cancel()
		r.wg.Wait()
	}()
	r.start()

	samples := []sample{measure("before traffic")}

	stats := newLedger()
	trafficCtx, stopTraffic := context.WithTimeout(ctx, pl.traffic)
	defer stopTraffic()
	var workers sync.WaitGroup
	tokens := rateTokens(trafficCtx, pl.rate)
	clients := make([]*client, pl.workers)
	for i := range clients {
		c, err := r.newClient(i%2 == 1) // odd workers log in with a ticket
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		clients[i] = c
		workers.Add(1)
		go func(c *client, seed uint64) {
			defer workers.Done()
			c.run(trafficCtx, tokens, stats, mrand.New(mrand.NewPCG(seed, 7)))
		}(c, uint64(i+1))
	}

	// The conductor: every step flips the phase, changes the rust faults
	// and samples resources; once, mid-run, it restarts the decision
	// service and writes a broken config before the next good one.
	start := time.Now()
	restartAt := pl.traffic * 2 / 5
	restarted, badEdit := false, false
	tick := time.NewTicker(pl.step)
	defer tick.Stop()
	for step := 1; ; step++ {
		select {
		case <-trafficCtx.Done():
		case <-tick.C:
		}
		if trafficCtx.Err() != nil {
			break
		}
		phase := phaseAt(step)
		if !badEdit && step == 3 {
			badEdit = true
			r.breakConfig()
		}
		r.setPhase(phase)
		fc := faultCycle[step%len(faultCycle)]
		r.setRustFaults(fc.f)
		if !restarted && time.Since(start) >= restartAt {
			restarted = true
			r.restartService(500 * time.Millisecond)
		}
		samples = append(samples, measure(fmt.Sprintf("t=%4.0fs phase=%s rust=%s", time.Since(start).Seconds(), phase, fc.name)))
		r.collect()
	}
	workers.Wait()
	for _, c := range clients {
		c.http.CloseIdleConnections()
	}
	if !restarted {
		t.Errorf("the decision service was never restarted (traffic %v too short)", pl.traffic)
	}

	// Quiesce: faults off, idle connections closed, then the resource
	// sample that must match the one taken after warm-up.
	r.setRustFaults(pvedemo.Faults{})
	r.collect()
	samples = append(samples, r.quiesce(samples))

	r.report(stats, samples)
	r.checkGETs(stats)
	r.checkWrites(stats)
	checkResources(t, samples)
}

// start brings up the backends, the config watcher, the decision service
// and the data plane.
func (r *rig) start() {
	t := r.t
	r.state = t.TempDir()
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	r.token = "soak@pve!soak=" + hex.EncodeToString(secret)

	var err error
	r.perl, err = pvedemo.New(pvedemo.Options{Flavor: pvedemo.FlavorPerl, StateDir: r.state, Node: node, Token: r.token, Logger: r.log, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t, "127.0.0.1:0")
	r.perlURL = "http://" + ln.Addr().String()
	r.wg.Add(1)
	go func() { defer r.wg.Done(); _ = r.perl.Serve(r.ctx, ln) }()

	rln := listen(t, "127.0.0.1:0")
	r.rustAddr = rln.Addr().String()
	if err := r.startRust(rln); err != nil {
		t.Fatal(err)
	}
	r.wg.Add(1)
	go func() { defer r.wg.Done(); r.restartCrashedRust() }()

	// The config: watched, polled fast, with the token in the environment
	// for the service's DELETE type lookups.
	r.confPath = filepath.Join(t.TempDir(), "network-migration.conf")
	r.env = func(k string) string {
		if k == config.EnvPerlAPIToken {
			return r.token
		}
		return ""
	}
	r.writeConfig(phaseAt(0))
	snap, err := config.Load(r.confPath, r.env)
	if err != nil {
		t.Fatal(err)
	}
	r.store = config.NewStore(snap)
	ready := make(chan struct{})
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		_ = config.Watch(r.ctx, r.store, config.WatchOptions{Path: r.confPath, Explicit: true, Env: r.env, PollInterval: 250 * time.Millisecond, Logger: r.log, Ready: func() { close(ready) }})
	}()
	<-ready

	lookup, err := server.NewPerlLookup(server.PerlLookupOptions{Config: r.store.Current, Logger: r.log})
	if err != nil {
		t.Fatal(err)
	}
	r.proc = server.NewProcessor(server.Options{Config: r.store.Current, Lookup: lookup, Logger: r.log})
	gln := listen(t, "127.0.0.1:0")
	r.grpcAddr = gln.Addr().String()
	r.startService(gln)

	// The data plane asks the service at its address (--ext-proc), so the
	// service can stop and come back on the same port.
	client, closeExt, err := dataplane.DialExtProc(r.grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeExt() })
	r.proxy, err = dataplane.New(dataplane.Options{
		Perl:      dataplane.Upstream{URL: r.perlURL},
		Rust:      dataplane.Upstream{URL: "http://" + r.rustAddr},
		ExtProc:   client,
		Bootstrap: soakBootstrap(t, r.step),
		Logger:    r.log,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.proxy.Close() })
	pln := listen(t, "127.0.0.1:0")
	r.proxyURL = "http://" + pln.Addr().String()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := r.proxy.Serve(r.ctx, dataplane.ServeOptions{Listener: pln, ShutdownTimeout: 3 * time.Second}); err != nil {
			t.Errorf("data plane: %v", err)
		}
	}()
}

func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// startRust serves a new rust instance on ln. It is called from the
// crash monitor's goroutine, so it reports errors instead of failing.
func (r *rig) startRust(ln net.Listener) error {
	s, err := pvedemo.New(pvedemo.Options{
		Flavor: pvedemo.FlavorRust, StateDir: r.state, Node: node, Token: r.token, Logger: r.log, Seed: uint64(2 + r.rustRestart),
		// Rust has not implemented zone updates yet: its 501 sends them
		// to perl, the one case where a write is retried after reaching
		// rust.
		Unimplemented: []string{"PUT:/cluster/sdn/zones/{zone}"},
	})
	if err != nil {
		_ = ln.Close()
		return err
	}
	ctx, cancel := context.WithCancel(r.ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ctx, ln) }()
	r.rust = s
	r.rustStops = append(r.rustStops, func() { cancel(); <-done })
	return nil
}

// restartCrashedRust plays systemd: after a crash, a new rust process on
// the same address and state.
func (r *rig) restartCrashedRust() {
	for {
		r.rustMu.Lock()
		cur := r.rust
		r.rustMu.Unlock()
		select {
		case <-r.ctx.Done():
			r.rustMu.Lock()
			for _, stop := range r.rustStops {
				stop()
			}
			r.rustMu.Unlock()
			return
		case <-cur.Crashed():
		}
		// Take the crashed instance's last records and counters, then
		// let it go.
		r.collectFrom([]instance{{"rust", r.rustRestart, cur}}, false)
		for k, v := range cur.Applied() {
			r.rustMu.Lock()
			r.retiredApplied[k] += v
			r.rustMu.Unlock()
		}
		var ln net.Listener
		for i := 0; ; i++ {
			var err error
			if ln, err = net.Listen("tcp", r.rustAddr); err == nil {
				break
			}
			if i == 50 || r.ctx.Err() != nil {
				r.t.Errorf("rust could not listen again on %s: %v", r.rustAddr, err)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		r.rustMu.Lock()
		r.rustRestart++
		err := r.startRust(ln)
		r.rustMu.Unlock()
		if err != nil {
			r.t.Errorf("restart rust: %v", err)
			return
		}
	}
}

func (r *rig) setRustFaults(f pvedemo.Faults) {
	r.rustMu.Lock()
	defer r.rustMu.Unlock()
	if err := r.rust.SetFaults(f); err != nil {
		r.t.Errorf("rust faults: %v", err)
	}
}

func (r *rig) startService(ln net.Listener) {
	ctx, cancel := context.WithCancel(r.ctx)
	done := make(chan error, 1)
	go func() {
		done <- server.Serve(ctx, server.ServeConfig{Listener: ln, Processor: r.proc, Config: r.store.Current, ShutdownTimeout: 2 * time.Second, Logger: r.log})
	}()
	r.svcMu.Lock()
	r.svcStop = func() {
		cancel()
		if err := <-done; err != nil {
			r.t.Errorf("decision service: %v", err)
		}
	}
	r.svcMu.Unlock()
	r.t.Cleanup(func() {
		r.svcMu.Lock()
		stop := r.svcStop
		r.svcStop = nil
		r.svcMu.Unlock()
		if stop != nil {
			stop()
		}
	})
}

// restartService stops the decision service (graceful: open streams drain
// for up to ShutdownTimeout), leaves the port dark for down, and starts a
// new server on the same address.
func (r *rig) restartService(down time.Duration) {
	r.svcMu.Lock()
	stop := r.svcStop
	r.svcStop = nil
	r.svcMu.Unlock()
	if stop != nil {
		stop()
	}
	time.Sleep(down)
	var ln net.Listener
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		if ln, err = server.Listen(r.grpcAddr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("decision service could not listen again on %s: %v", r.grpcAddr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.startService(ln)
}

func (r *rig) configText(phase string) string {
	return fmt.Sprintf(`phase = %q
fallback_enabled = true
fallback_timeout = 1
perl_api_base_url = %q
perl_api_timeout = 10
log_migration_decisions = false

[features]
enable_sdn_migration = true
`, phase, r.perlURL)
}

// writeConfig replaces the file the way editors and pmxcfs do: a new file
// renamed over the old one.
func (r *rig) writeConfig(phase string) {
	r.writeRaw(r.configText(phase))
}

func (r *rig) writeRaw(text string) {
	tmp := r.confPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Rename(tmp, r.confPath); err != nil {
		r.t.Fatal(err)
	}
}

// setPhase rewrites the file and waits for the watcher to serve it.
func (r *rig) setPhase(phase string) {
	want, err := routing.ParsePhase(phase)
	if err != nil {
		r.t.Fatal(err)
	}
	r.writeConfig(phase)
	r.waitFor(10*time.Second, "phase "+phase, func() bool { return r.store.Current().Policy.Phase == want })
}

// breakConfig writes a bad edit and waits until the watcher has rejected
// it; the last good phase must keep serving.
func (r *rig) breakConfig() {
	before := r.store.Current()
	errs := r.store.ReloadCounts()[config.ResultError]
	r.writeRaw(strings.Replace(r.configText("rust-full"), "phase =", "phase = \"rust-ful\"\n#", 1))
	r.waitFor(10*time.Second, "the bad edit to be rejected", func() bool { return r.store.ReloadCounts()[config.ResultError] > errs })
	if r.store.Current() != before {
		r.t.Errorf("a bad edit replaced the serving config")
	}
}

func (r *rig) waitFor(d time.Duration, what string, cond func() bool) {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type instance struct {
	name string
	i    int
	s    *pvedemo.Server
}

// collect merges the live backends' write records and checks the
// requests that have settled.
func (r *rig) collect() {
	r.rustMu.Lock()
	all := []instance{{"perl", 0, r.perl}, {"rust", r.rustRestart, r.rust}}
	r.rustMu.Unlock()
	r.collectFrom(all, false)
}

// collectFrom merges the write records of the given instances; with
// final, every request is checked, settled or not.
func (r *rig) collectFrom(all []instance, final bool) {
	r.recMu.Lock()
	defer r.recMu.Unlock()
	for _, in := range all {
		for _, rec := range in.s.Requests() {
			if rec.Method == http.MethodGet || rec.RequestID == "" || !strings.HasPrefix(rec.Path, "/api2/") || rec.Time.Before(r.watermark) {
				continue
			}
			k := recordKey{in.name, in.i, rec.Time, rec.RequestID, rec.Method, rec.Path}
			if r.seenRecs[k] {
				continue
			}
			r.seenRecs[k] = true
			r.byID[rec.RequestID] = append(r.byID[rec.RequestID], attempt{in.name, rec})
		}
	}
	cutoff := time.Now().Add(-settle)
	if final {
		cutoff = time.Now().Add(time.Hour)
	}
	for id, as := range r.byID {
		settled := true
		for _, a := range as {
			if !a.rec.Time.Before(cutoff) {
				settled = false
				break
			}
		}
		if settled {
			r.checkAttempts(id, as)
			delete(r.byID, id)
		}
	}
	for k := range r.seenRecs {
		if k.at.Before(cutoff) {
			delete(r.seenRecs, k)
		}
	}
	if !final && cutoff.After(r.watermark) {
		r.watermark = cutoff
	}
}

// checkAttempts: a write may reach a second backend only after the first
// answered 501 ("not implemented here": it did nothing). Any other first
// answer, a dropped connection (status 0) included, means the first
// backend may have acted, and a second attempt could apply it twice.
func (r *rig) checkAttempts(id string, as []attempt) {
	r.nChecked++
	if len(as) < 2 {
		return
	}
	slices.SortFunc(as, func(a, b attempt) int { return a.rec.Time.Compare(b.rec.Time) })
	for _, a := range as[:len(as)-1] {
		if a.rec.Status == http.StatusNotImplemented {
			continue
		}
		r.nReplays++
		if len(r.replays) < 10 {
			var trail []string
			for _, b := range as {
				trail = append(trail, fmt.Sprintf("%s %d", b.backend, b.rec.Status))
			}
			r.replays = append(r.replays, fmt.Sprintf("write %s %s (request %s) was sent again after %s answered %d: %s",
				a.rec.Method, a.rec.Path, id, a.backend, a.rec.Status, strings.Join(trail, " -> ")))
		}
		return
	}
}

// applied sums the applied-write counters of perl and every rust instance.
func (r *rig) applied() map[string]int64 {
	r.rustMu.Lock()
	defer r.rustMu.Unlock()
	out := map[string]int64{}
	for _, s := range []*pvedemo.Server{r.perl, r.rust} {
		for k, v := range s.Applied() {
			out[k] += v
		}
	}
	for k, v := range r.retiredApplied {
		out[k] += v
	}
	return out
}

// soakBootstrap is envoy.yaml with one change: rust's outlier ejection
// lasts a fraction of a step instead of 30 s growing to 300 s. With the
// real values, the first fault that ejects rust keeps it out for the rest
// of a short run (and most of a long one), and the later faults would
// never reach it. Everything else (routes, retries, ext_proc settings and
// its 500 ms message timeout, health checks) is envoy.yaml's.
func soakBootstrap(t *testing.T, step time.Duration) *bootstrapv3.Bootstrap {
	b, err := envoy.LoadBootstrap(envoy.DemoConfig())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range b.GetStaticResources().GetClusters() {
		if od := c.GetOutlierDetection(); c.GetName() == "rust" && od != nil {
			od.BaseEjectionTime = durationpb.New(step / 3)
			od.MaxEjectionTime = durationpb.New(step * 2 / 3)
			found = true
		}
	}
	if !found {
		t.Fatal("envoy.yaml has no rust cluster with outlier detection")
	}
	return b
}

// ---- clients ----

type client struct {
	r       *rig
	http    *http.Client
	ticket  bool
	authz   string // API token header
	cookie  string // ticket
	csrf    string
	counter *atomic.Int64
}

var uniq atomic.Int64

func (r *rig) newClient(ticket bool) (*client, error) {
	c := &client{r: r, ticket: ticket, counter: &uniq,
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}}}
	if !ticket {
		c.authz = "PVEAPIToken=" + r.token
		return c, nil
	}
	// Log in through the data plane, as the GUI does (not-network: perl).
	form := url.Values{"username": {"root@pam"}, "password": {pvedemo.DefaultPassword}}
	resp, err := c.http.PostForm(r.proxyURL+"/api2/json/access/ticket", form)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Data struct {
			Ticket string `json:"ticket"`
			CSRF   string `json:"CSRFPreventionToken"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.Data.Ticket == "" {
		return nil, fmt.Errorf("login: %d %v", resp.StatusCode, err)
	}
	c.cookie, c.csrf = out.Data.Ticket, out.Data.CSRF
	return c, nil
}

// rateTokens hands out rate tokens per second until ctx ends.
func rateTokens(ctx context.Context, rate int) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second / time.Duration(rate))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				close(ch)
				return
			case <-t.C:
			}
			select {
			case ch <- struct{}{}:
			case <-ctx.Done():
				close(ch)
				return
			default: // every worker busy: the token is dropped, the rate is a ceiling
			}
		}
	}()
	return ch
}

type outcome struct {
	status   int
	servedBy string
	body     []byte
	err      error
}

func (c *client) do(ctx context.Context, method, path string, form url.Values) outcome {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), method, c.r.proxyURL+path, body)
	if err != nil {
		return outcome{err: err}
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if method != http.MethodGet {
		// What many API clients send: it makes net/http count a write as
		// safe to replay, which no proxy may do.
		req.Header.Set("Idempotency-Key", strconv.FormatUint(idempotencyKeys.Add(1), 10))
	}
	if c.ticket {
		req.AddCookie(&http.Cookie{Name: "PVEAuthCookie", Value: url.QueryEscape(c.cookie)})
		if method != http.MethodGet {
			req.Header.Set("CSRFPreventionToken", c.csrf)
		}
	} else {
		req.Header.Set("Authorization", c.authz)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return outcome{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return outcome{status: resp.StatusCode, servedBy: resp.Header.Get("X-Pve-Served-By"), body: b, err: err}
}

// idempotencyKeys numbers the clients' Idempotency-Key headers.
var idempotencyKeys atomic.Uint64

// op is one step of client traffic.
type op struct {
	name   string
	weight int
	run    func(c *client, ctx context.Context, tokens <-chan struct{}, l *ledger, rng *mrand.Rand) bool
}

var ops = []op{
	{"GET network list", 16, read("/api2/json/nodes/" + node + "/network")},
	{"GET iface (extjs)", 8, read("/api2/extjs/nodes/" + node + "/network/eno1")},
	{"GET iface vmbr0", 6, read("/api2/json/nodes/" + node + "/network/vmbr0")},
	{"GET sdn zones", 8, read("/api2/json/cluster/sdn/zones")},
	{"GET version", 4, read("/api2/json/version")},
	{"PUT eth", 10, func(c *client, ctx context.Context, tokens <-chan struct{}, l *ledger, rng *mrand.Rand) bool {
		n := c.counter.Add(1)
		return c.write(ctx, tokens, l, "PUT /nodes/{node}/network/{iface}", "PUT", "/api2/json/nodes/"+node+"/network/eno1",
			url.Values{"type": {"eth"}, "comments": {fmt.Sprintf("soak %d", n)}})
	}},
	{"bridge create+delete", 6, func(c *client, ctx context.Context, tokens <-chan struct{}, l *ledger, rng *mrand.Rand) bool {
		name := fmt.Sprintf("vmbr%d", 1000+c.counter.Add(1))
		if !c.write(ctx, tokens, l, "POST /nodes/{node}/network", "POST", "/api2/json/nodes/"+node+"/network",
			url.Values{"iface": {name}, "type": {"bridge"}, "autostart": {"1"}}) {
			return false
		}
		return c.write(ctx, tokens, l, "DELETE /nodes/{node}/network/{iface}", "DELETE", "/api2/json/nodes/"+node+"/network/"+name, nil)
	}},
	{"zone create+update+delete", 6, func(c *client, ctx context.Context, tokens <-chan struct{}, l *ledger, rng *mrand.Rand) bool {
		id := fmt.Sprintf("z%x", c.counter.Add(1))
		if !c.write(ctx, tokens, l, "POST /cluster/sdn/zones", "POST", "/api2/json/cluster/sdn/zones", url.Values{"zone": {id}, "type": {"simple"}}) {
			return false
		}
		if !c.write(ctx, tokens, l, "PUT /cluster/sdn/zones/{zone}", "PUT", "/api2/json/cluster/sdn/zones/"+id, url.Values{"mtu": {"1400"}}) {
			return false
		}
		return c.write(ctx, tokens, l, "DELETE /cluster/sdn/zones/{zone}", "DELETE", "/api2/json/cluster/sdn/zones/"+id, nil)
	}},
	{"network apply", 1, func(c *client, ctx context.Context, tokens <-chan struct{}, l *ledger, rng *mrand.Rand) bool {
		return c.write(ctx, tokens, l, "PUT /nodes/{node}/network", "PUT", "/api2/json/nodes/"+node+"/network", nil)
	}},
	{"network revert", 1, func(c *client, ctx context.Context, tokens <-chan struct{}, l *ledger, rng *mrand.Rand) bool {
		return c.write(ctx, tokens, l, "DELETE /nodes/{node}/network", "DELETE", "/api2/json/nodes/"+node+"/network", nil)
	}},
	{"sdn apply", 1, func(c *client, ctx context.Context, tokens <-chan struct{}, l *ledger, rng *mrand.Rand) bool {
		return c.write(ctx, tokens, l, "PUT /cluster/sdn", "PUT", "/api2/json/cluster/sdn", nil)
	}},
}

// alwaysChanges are the write keys whose every successful application
// changes state (unique names and values), so the applied counters must
// be at least the client's 2xx count; apply and revert may change nothing.
var alwaysChanges = map[string]bool{
	"PUT /nodes/{node}/network/{iface}":    true,
	"POST /nodes/{node}/network":           true,
	"DELETE /nodes/{node}/network/{iface}": true,
	"POST /cluster/sdn/zones":              true,
	"PUT /cluster/sdn/zones/{zone}":        true,
	"DELETE /cluster/sdn/zones/{zone}":     true,
}

func read(path string) func(*client, context.Context, <-chan struct{}, *ledger, *mrand.Rand) bool {
	return func(c *client, ctx context.Context, tokens <-chan struct{}, l *ledger, _ *mrand.Rand) bool {
		if _, ok := <-tokens; !ok {
			return false
		}
		o := c.do(ctx, http.MethodGet, path, nil)
		l.read(path, o)
		return true
	}
}

func (c *client) write(ctx context.Context, tokens <-chan struct{}, l *ledger, key, method, path string, form url.Values) bool {
	if _, ok := <-tokens; !ok {
		return false
	}
	l.write(key, c.do(ctx, method, path, form))
	return true
}

func (c *client) run(ctx context.Context, tokens <-chan struct{}, l *ledger, rng *mrand.Rand) {
	total := 0
	for _, o := range ops {
		total += o.weight
	}
	for ctx.Err() == nil {
		n := rng.IntN(total)
		for _, o := range ops {
			if n < o.weight {
				if !o.run(c, ctx, tokens, l, rng) {
					return
				}
				break
			}
			n -= o.weight
		}
	}
}

// ---- bookkeeping ----

type ledger struct {
	mu        sync.Mutex
	gets      int
	getErrs   []string
	getBy     map[string]int // served by
	extjsErrs int            // extjs success:0 answers (none expected: they fall back to perl)
	writes    map[string]*writeStats
}

type writeStats struct {
	sent, ok, client4xx, server5xx, transport int
	statuses                                  map[int]int
}

func newLedger() *ledger {
	return &ledger{getBy: map[string]int{}, writes: map[string]*writeStats{}}
}

func (l *ledger) read(path string, o outcome) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gets++
	l.getBy[o.servedBy]++
	fail := ""
	switch {
	case o.err != nil:
		fail = o.err.Error()
	case o.status != http.StatusOK:
		fail = fmt.Sprintf("HTTP %d from %q: %.200s", o.status, o.servedBy, o.body)
	case strings.HasPrefix(path, "/api2/extjs/"):
		var env struct {
			Success int    `json:"success"`
			Status  int    `json:"status"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(o.body, &env); err != nil {
			fail = fmt.Sprintf("extjs body: %v", err)
		} else if env.Success != 1 {
			// The extjs format answers errors with HTTP 200; a rust
			// failure (status >= 500) is retried on perl all the same
			// (upstream ext_proc stage, x-pve-fallback), so the GUI
			// never gets one. Counted and failed.
			l.extjsErrs++
			fail = fmt.Sprintf("extjs success=%d status=%d from %q: %s", env.Success, env.Status, o.servedBy, env.Message)
		}
	}
	if fail != "" {
		l.getErrs = append(l.getErrs, fmt.Sprintf("GET %s: %s", path, fail))
	}
}

func (l *ledger) write(key string, o outcome) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.writes[key]
	if w == nil {
		w = &writeStats{statuses: map[int]int{}}
		l.writes[key] = w
	}
	w.sent++
	switch {
	case o.err != nil:
		w.transport++
	case o.status < 300:
		w.ok++
	case o.status < 500:
		w.client4xx++
	default:
		w.server5xx++
	}
	w.statuses[o.status]++
}

// ---- checks ----

func (r *rig) checkGETs(l *ledger) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.getErrs) > 0 {
		show := l.getErrs[:min(len(l.getErrs), 10)]
		r.t.Errorf("%d of %d GETs failed client-visibly:\n  %s", len(l.getErrs), l.gets, strings.Join(show, "\n  "))
	}
	if l.gets == 0 {
		r.t.Errorf("no GET was sent")
	}
}

// checkWrites: per key, the backends applied at most what clients sent
// and at least what clients saw succeed; per request (x-request-id, the
// same on every attempt), a write reached a second backend only after
// rust's 501.
func (r *rig) checkWrites(l *ledger) {
	t := r.t
	applied := r.applied()
	l.mu.Lock()
	defer l.mu.Unlock()
	for key, n := range applied {
		w := l.writes[key]
		if w == nil {
			t.Errorf("%s: %d applied, none sent", key, n)
			continue
		}
		if n > int64(w.sent) {
			t.Errorf("%s: applied %d times for %d requests sent: a write was applied twice", key, n, w.sent)
		}
	}
	for key, w := range l.writes {
		if alwaysChanges[key] && applied[key] < int64(w.ok) {
			t.Errorf("%s: clients saw %d successes, backends applied %d", key, w.ok, applied[key])
		}
	}

	r.rustMu.Lock()
	live := []instance{{"perl", 0, r.perl}, {"rust", r.rustRestart, r.rust}}
	r.rustMu.Unlock()
	r.collectFrom(live, true)
	r.recMu.Lock()
	defer r.recMu.Unlock()
	for _, msg := range r.replays {
		t.Error(msg)
	}
	if r.nReplays > len(r.replays) {
		t.Errorf("... %d writes replayed in all", r.nReplays)
	}
	if r.nChecked == 0 {
		t.Errorf("no write reached a backend")
	}
	t.Logf("%d write requests checked attempt by attempt (x-request-id), %d replayed", r.nChecked, r.nReplays)
}

// ---- resources ----

type sample struct {
	label      string
	heapInuse  uint64
	goroutines int
	fds        int
}

func measure(label string) sample {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fds := -1
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		fds = len(ents)
	}
	return sample{label: label, heapInuse: ms.HeapInuse, goroutines: runtime.NumGoroutine(), fds: fds}
}

// Tolerances against the first sample under traffic (after warm-up):
// generous enough for a loaded machine and -race, tight enough that a
// per-request leak over thousands of requests shows.
const (
	heapSlack      = 16 << 20
	goroutineSlack = 40
	fdSlack        = 16
)

// quiesce waits until goroutines and fds fall back to the warm-up level
// (connections closing, streams ending take a moment) or 15 s pass, and
// returns the final sample.
func (r *rig) quiesce(samples []sample) sample {
	base := samples[min(1, len(samples)-1)]
	deadline := time.Now().Add(15 * time.Second)
	for {
		s := measure("after traffic (quiesced)")
		if (s.goroutines <= base.goroutines+goroutineSlack && s.fds <= base.fds+fdSlack) || time.Now().After(deadline) {
			return s
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func checkResources(t *testing.T, samples []sample) {
	if len(samples) < 3 {
		t.Errorf("only %d resource samples", len(samples))
		return
	}
	base, last := samples[1], samples[len(samples)-1]
	if last.heapInuse > base.heapInuse*3/2+heapSlack {
		t.Errorf("heap in use grew from %s to %s", mib(base.heapInuse), mib(last.heapInuse))
	}
	if last.goroutines > base.goroutines+goroutineSlack {
		t.Errorf("goroutines grew from %d to %d", base.goroutines, last.goroutines)
	}
	if base.fds >= 0 && last.fds > base.fds+fdSlack {
		t.Errorf("open fds grew from %d to %d", base.fds, last.fds)
	}
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func (r *rig) report(l *ledger, samples []sample) {
	t := r.t
	var b strings.Builder
	fmt.Fprintf(&b, "resource series (heap in use after GC, goroutines, open fds):\n")
	for _, s := range samples {
		fmt.Fprintf(&b, "  %-60s heap %9s  goroutines %4d  fds %4d\n", s.label, mib(s.heapInuse), s.goroutines, s.fds)
	}
	l.mu.Lock()
	fmt.Fprintf(&b, "GETs: %d, failed %d, served by %v, extjs errors %d\n", l.gets, len(l.getErrs), l.getBy, l.extjsErrs)
	keys := make([]string, 0, len(l.writes))
	for k := range l.writes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	applied := r.applied()
	for _, k := range keys {
		w := l.writes[k]
		fmt.Fprintf(&b, "  %-40s sent %4d  2xx %4d  4xx %3d  5xx %3d  transport %2d  applied %4d  statuses %v\n",
			k, w.sent, w.ok, w.client4xx, w.server5xx, w.transport, applied[k], w.statuses)
	}
	l.mu.Unlock()
	m := r.proxy.Metrics()
	js, _ := json.Marshal(m)
	fmt.Fprintf(&b, "data plane metrics: %s\n", js)
	r.rustMu.Lock()
	fmt.Fprintf(&b, "rust restarts after crashes: %d; config reloads: %v\n", r.rustRestart, r.store.ReloadCounts())
	r.rustMu.Unlock()
	t.Log(b.String())
}

// TestReplayCheck checks the checker: only a 501 allows a second attempt.
func TestReplayCheck(t *testing.T) {
	at := time.Now()
	rec := func(status int, d time.Duration) pvedemo.RequestRecord {
		return pvedemo.RequestRecord{Time: at.Add(d), Method: "PUT", Path: "/api2/json/nodes/pve1/network/eno1", RequestID: "id", Status: status}
	}
	for _, c := range []struct {
		name   string
		as     []attempt
		replay bool
	}{
		{"one attempt", []attempt{{"rust", rec(500, 0)}}, false},
		{"501 then perl", []attempt{{"perl", rec(200, time.Millisecond)}, {"rust", rec(501, 0)}}, false},
		{"500 then perl", []attempt{{"rust", rec(500, 0)}, {"perl", rec(200, time.Millisecond)}}, true},
		{"dropped then perl", []attempt{{"rust", rec(0, 0)}, {"perl", rec(200, time.Millisecond)}}, true},
		{"200 then perl 400", []attempt{{"rust", rec(200, 0)}, {"perl", rec(400, time.Millisecond)}}, true},
	} {
		r := &rig{}
		r.checkAttempts("id", c.as)
		if got := r.nReplays > 0; got != c.replay {
			t.Errorf("%s: replay %v, want %v (%v)", c.name, got, c.replay, r.replays)
		}
	}
}
