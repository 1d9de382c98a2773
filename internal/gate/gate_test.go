package gate

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pve-migration/router/internal/compare"
	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/internal/localstate"
	"github.com/pve-migration/router/internal/logsink"
	"github.com/pve-migration/router/internal/outcome"
	"github.com/pve-migration/router/routing"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func newClock() *clock               { return &clock{t: time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)} }

type fakeCompare struct{ compared, mismatched map[string]int }

func (f *fakeCompare) Window(c string, _ time.Time, _ time.Duration) (int, int) {
	return f.compared[c], f.mismatched[c]
}

type fixture struct {
	g     *Gate
	state *localstate.State
	clk   *clock
	snap  *config.Snapshot
	mu    sync.Mutex
	log   *logsink.Buffer
}

func snap(phase routing.Phase, mutate ...func(*config.Snapshot)) *config.Snapshot {
	s := &config.Snapshot{Policy: routing.DefaultPolicy(), Gate: config.DefaultGate()}
	s.Policy.Phase = phase
	s.Gate.Enabled = true
	for _, m := range mutate {
		m(s)
	}
	return s
}

func newFixture(t *testing.T, s *config.Snapshot, cmp CompareEvidence) *fixture {
	t.Helper()
	f := &fixture{state: localstate.New(""), clk: newClock(), snap: s, log: &logsink.Buffer{}}
	f.g = New(Options{Config: f.current, State: f.state, Compare: cmp, Now: f.clk.now,
		Logger: slog.New(slog.NewTextHandler(f.log, nil))})
	return f
}

func (f *fixture) current() *config.Snapshot { f.mu.Lock(); defer f.mu.Unlock(); return f.snap }
func (f *fixture) set(s *config.Snapshot)    { f.mu.Lock(); f.snap = s; f.mu.Unlock() }

// send records n outcomes of category c, every k-th of them failed.
func (f *fixture) send(c routing.Category, b routing.Backend, reason routing.Reason, n, failEvery int, d time.Duration) {
	for i := 0; i < n; i++ {
		o := Outcome{At: f.clk.now(), Category: c, Backend: b, Reason: reason, ServedBy: b.String(), Status: 200, Duration: d}
		if failEvery > 0 && i%failEvery == 0 {
			o.ServedBy, o.Fallback = "perl", true
		}
		f.g.Record(o)
		f.clk.add(10 * time.Millisecond)
	}
}

func (f *fixture) tripped(c routing.Category) bool { return f.state.Local().Tripped.Has(c) }

func TestErrorRateTrips(t *testing.T) {
	for _, tc := range []struct {
		name     string
		enabled  bool
		n, every int
		wantTrip bool
	}{
		{"30% errors trip", true, 40, 3, true},
		{"below min_requests is inconclusive", true, 19, 1, false},
		{"within the limit", true, 100, 50, false},
		{"gate disabled", false, 40, 3, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, snap(routing.RustReadOnly, func(s *config.Snapshot) { s.Gate.Enabled = tc.enabled }), nil)
			f.send(routing.NodeNetworkRead, routing.Rust, routing.ReasonPhase, tc.n, tc.every, 5*time.Millisecond)
			if got := f.tripped(routing.NodeNetworkRead); got != tc.wantTrip {
				t.Fatalf("tripped = %v, want %v", got, tc.wantTrip)
			}
			if tc.wantTrip {
				if f.g.Trips()[routing.NodeNetworkRead] != 1 || f.g.Trips()[routing.SDNRead] != 0 {
					t.Errorf("trips = %v", f.g.Trips())
				}
				log := f.log.String()
				for _, want := range []string{"gate tripped", "category=node-network-read", "limit=max_rust_error_rate", "max=0.05", "rust_attempts=20", "rust_errors=7"} {
					if !strings.Contains(log, want) {
						t.Errorf("log lacks %q:\n%s", want, log)
					}
				}
			}
			if f.tripped(routing.NodeNetworkBasicWrite) {
				t.Error("another category tripped")
			}
		})
	}
}

// No flapping: once tripped, a category stays tripped when the window
// turns clean, until reset; after a reset the old failures are gone.
func TestTripStaysUntilReset(t *testing.T) {
	f := newFixture(t, snap(routing.RustReadOnly), nil)
	f.send(routing.NodeNetworkRead, routing.Rust, routing.ReasonPhase, 30, 2, time.Millisecond)
	if !f.tripped(routing.NodeNetworkRead) {
		t.Fatal("not tripped")
	}
	f.clk.add(10 * time.Minute)
	f.g.Check()
	f.g.Reconfigure(snap(routing.RustReadOnly)) // a reload that changes nothing about reads
	if !f.tripped(routing.NodeNetworkRead) {
		t.Fatal("trip did not survive a clean window and a reload")
	}
	if got := f.g.Reset("test"); len(got) != 1 || got[0] != routing.NodeNetworkRead {
		t.Fatalf("reset %v", got)
	}
	if f.tripped(routing.NodeNetworkRead) {
		t.Fatal("still tripped after reset")
	}
	// One more failure must not re-trip on the failures from before.
	f.send(routing.NodeNetworkRead, routing.Rust, routing.ReasonPhase, 1, 1, time.Millisecond)
	if f.tripped(routing.NodeNetworkRead) {
		t.Fatal("re-tripped on the window from before the reset")
	}
}

func TestPhaseChangeResets(t *testing.T) {
	for _, tc := range []struct {
		name  string
		next  *config.Snapshot
		reset bool
	}{
		{"unrelated reload keeps", snap(routing.RustReadOnly, func(s *config.Snapshot) { s.Policy.FallbackEnabled = false }), false},
		{"phase that keeps reads on rust keeps", snap(routing.RustBasicWrite), false},
		{"rollback resets", snap(routing.PerlOnly), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, snap(routing.RustReadOnly), nil)
			f.send(routing.NodeNetworkRead, routing.Rust, routing.ReasonPhase, 30, 2, time.Millisecond)
			f.set(tc.next)
			f.g.Reconfigure(tc.next)
			if got := !f.tripped(routing.NodeNetworkRead); got != tc.reset {
				t.Fatalf("reset = %v, want %v", got, tc.reset)
			}
		})
	}
}

func TestLatencyAndMismatchTrip(t *testing.T) {
	t.Run("latency", func(t *testing.T) {
		f := newFixture(t, snap(routing.RustBasicWrite), nil)
		f.send(routing.NodeNetworkAdvancedWrite, routing.Perl, routing.ReasonPhase, 25, 0, 10*time.Millisecond)
		f.send(routing.NodeNetworkAdvancedWrite, routing.Rust, routing.ReasonCanary, 25, 0, 100*time.Millisecond)
		if f.tripped(routing.NodeNetworkAdvancedWrite) {
			t.Fatal("tripped before the full check")
		}
		f.g.Check()
		if !f.tripped(routing.NodeNetworkAdvancedWrite) || !strings.Contains(f.log.String(), "limit=max_latency_ratio") {
			t.Fatalf("latency 10× did not trip:\n%s", f.log.String())
		}
	})
	t.Run("latency within limit", func(t *testing.T) {
		f := newFixture(t, snap(routing.RustBasicWrite), nil)
		f.send(routing.NodeNetworkAdvancedWrite, routing.Perl, routing.ReasonPhase, 25, 0, 10*time.Millisecond)
		f.send(routing.NodeNetworkAdvancedWrite, routing.Rust, routing.ReasonCanary, 25, 0, 20*time.Millisecond)
		f.g.Check()
		if f.tripped(routing.NodeNetworkAdvancedWrite) {
			t.Fatal("2× tripped a 3× limit")
		}
	})
	t.Run("mismatch", func(t *testing.T) {
		cmp := &fakeCompare{compared: map[string]int{"node-network-read": 50, "sdn-read": 50}, mismatched: map[string]int{"node-network-read": 5, "sdn-read": 5}}
		f := newFixture(t, snap(routing.RustReadOnly), cmp)
		f.g.Check()
		if !f.tripped(routing.NodeNetworkRead) || !strings.Contains(f.log.String(), "limit=max_mismatch_rate") {
			t.Fatalf("10%% mismatches did not trip:\n%s", f.log.String())
		}
		if f.tripped(routing.SDNRead) {
			t.Fatal("sdn-read tripped though perl serves it")
		}
	})
}

func TestWindowSlides(t *testing.T) {
	f := newFixture(t, snap(routing.RustReadOnly), nil)
	f.send(routing.NodeNetworkRead, routing.Rust, routing.ReasonPhase, 15, 1, time.Millisecond)
	f.clk.add(301 * time.Second)
	f.send(routing.NodeNetworkRead, routing.Rust, routing.ReasonPhase, 15, 0, time.Millisecond)
	if f.tripped(routing.NodeNetworkRead) {
		t.Fatal("failures older than the window tripped")
	}
	if p := f.g.Plan(); p.Categories[0].Evidence.RustAttempts != 15 {
		t.Fatalf("window holds %d attempts, want 15", p.Categories[0].Evidence.RustAttempts)
	}
}

func TestPlanEvidence(t *testing.T) {
	cmp := &fakeCompare{compared: map[string]int{"node-network-read": 30}, mismatched: map[string]int{"node-network-read": 3}}
	f := newFixture(t, snap(routing.PerlOnly), cmp)
	f.send(routing.NodeNetworkRead, routing.Perl, routing.ReasonPerlOnly, 40, 0, time.Millisecond)
	p := f.g.Plan()
	if p.Phase != routing.PerlOnly || p.Next != routing.RustReadOnly || !p.HasNext {
		t.Fatalf("plan %v → %v", p.Phase, p.Next)
	}
	read := p.Categories[0]
	if read.Category != routing.NodeNetworkRead || !read.Moves || read.Requests != 40 || read.Evidence.OK ||
		!strings.Contains(strings.Join(read.Evidence.Missing, ";"), "mismatch rate 0.1000") {
		t.Fatalf("read plan %+v", read)
	}
	if p.Categories[1].Moves {
		t.Fatal("basic writes move at rust-read-only")
	}
	cmp.mismatched["node-network-read"] = 0
	if read := f.g.Plan().Categories[0]; !read.Evidence.OK {
		t.Fatalf("clean compare evidence refused: %v", read.Evidence.Missing)
	}

	// Writes: at rust-read-only basic writes move next; only canary
	// traffic within the limits is evidence.
	f = newFixture(t, snap(routing.RustReadOnly), nil)
	f.send(routing.NodeNetworkBasicWrite, routing.Perl, routing.ReasonPhase, 10, 0, time.Millisecond)
	basic := f.g.Plan().Categories[1]
	if !basic.Moves || basic.WouldMove != 10 || basic.Evidence.OK || !strings.Contains(basic.Evidence.Missing[0], "only 0 requests served by rust") {
		t.Fatalf("basic plan without canaries %+v", basic)
	}
	f.send(routing.NodeNetworkBasicWrite, routing.Rust, routing.ReasonCanary, 20, 0, time.Millisecond)
	basic = f.g.Plan().Categories[1]
	if !basic.Evidence.OK || basic.Evidence.Canary != 20 {
		t.Fatalf("clean canary evidence refused: %+v", basic)
	}
}

// Finished only queues; Run records.
func TestObserverFeedsRun(t *testing.T) {
	f := newFixture(t, snap(routing.RustReadOnly), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.g.Run(ctx) }()
	defer func() { cancel(); <-done }()
	var obs outcome.Observer = f.g
	d := &outcome.Decision{Start: f.clk.now(), Decision: routing.Decision{Backend: routing.Rust, Category: routing.NodeNetworkRead, Reason: routing.ReasonPhase}}
	for i := 0; i < 25; i++ {
		obs.Finished(obs.Decided(ctx, d), d, outcome.Result{ServedBy: "rust", Status: 502, Duration: time.Millisecond})
	}
	deadline := time.Now().Add(20 * time.Second)
	for !f.tripped(routing.NodeNetworkRead) {
		if time.Now().After(deadline) {
			t.Fatal("queued failures never tripped the gate")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHistP99(t *testing.T) {
	var h hist
	if h.p99() != 0 {
		t.Fatal("empty p99")
	}
	for i := 0; i < 99; i++ {
		h.add(time.Millisecond)
	}
	h.add(time.Second)
	if p := h.p99(); p < time.Millisecond || p > 2*time.Millisecond {
		t.Fatalf("p99 of 99×1ms + 1×1s = %v", p)
	}
	h.add(time.Second)
	if p := h.p99(); p < time.Second || p > 1300*time.Millisecond {
		t.Fatalf("p99 with 2%% at 1s = %v", p)
	}
	h.add(time.Hour)
	if h.p99() <= 0 {
		t.Fatal("open bucket")
	}
}

// An outcome older than the window must not wipe the newer figures that
// share its slot of the ring.
func TestLateOutcomeDropped(t *testing.T) {
	f := newFixture(t, snap(routing.RustReadOnly, func(s *config.Snapshot) { s.Gate.Enabled = false }), nil)
	f.send(routing.NodeNetworkRead, routing.Rust, routing.ReasonPhase, 10, 0, time.Millisecond)
	f.g.Record(Outcome{At: f.clk.now().Add(-300 * time.Second), Category: routing.NodeNetworkRead, Backend: routing.Rust, ServedBy: "rust", Status: 200})
	if got := f.g.Plan().Categories[0].Evidence.RustAttempts; got != 10 {
		t.Fatalf("window holds %d attempts after a late outcome, want 10", got)
	}
}

// TestResetForgetsCompareEvidence: a category tripped on mismatches and
// reset by the operator (rust fixed) must not trip again at once on the
// same mismatches, still inside the window; new mismatches after the
// reset trip it again.
func TestResetForgetsCompareEvidence(t *testing.T) {
	rep := compare.NewReport(time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC))
	f := newFixture(t, snap(routing.RustReadOnly), rep)
	mis := compare.Verdict{Result: compare.Mismatch, Fields: []compare.Field{{Path: "data[].method", Kind: compare.KindValue}}}
	record := func(n int, v compare.Verdict) {
		for i := 0; i < n; i++ {
			rep.Record("node-network-read", "/nodes/{node}/network", "GET", v, f.clk.now())
		}
	}
	record(30, mis)
	f.g.Check()
	if !f.tripped(routing.NodeNetworkRead) {
		t.Fatal("30 of 30 mismatched did not trip")
	}
	f.clk.add(5 * time.Second)
	f.g.Reset("test")
	for _, step := range []time.Duration{0, time.Second, 10 * time.Second, time.Minute} {
		f.clk.add(step)
		record(30, compare.Verdict{Result: compare.Match})
		f.g.Check()
		if f.tripped(routing.NodeNetworkRead) {
			t.Fatalf("%v after the reset: tripped again on the mismatches from before it:\n%s", step, f.log.String())
		}
	}
	f.clk.add(time.Second)
	record(30, mis)
	f.g.Check()
	if !f.tripped(routing.NodeNetworkRead) {
		t.Fatal("mismatches after the reset did not trip")
	}
}

// TestDisablingGateReleasesTrips: `[gate] enabled = false` releases every
// trip; a reload that keeps the gate on keeps them.
func TestDisablingGateReleasesTrips(t *testing.T) {
	for _, tc := range []struct {
		name    string
		enabled bool
	}{{"still enabled", true}, {"disabled", false}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, snap(routing.RustReadOnly), nil)
			f.g.Reconfigure(f.current())
			f.send(routing.NodeNetworkRead, routing.Rust, routing.ReasonPhase, 30, 2, time.Millisecond)
			if !f.tripped(routing.NodeNetworkRead) {
				t.Fatal("not tripped")
			}
			next := snap(routing.RustReadOnly, func(s *config.Snapshot) { s.Gate.Enabled = tc.enabled })
			f.set(next)
			f.g.Reconfigure(next)
			if got := f.tripped(routing.NodeNetworkRead); got != tc.enabled {
				t.Fatalf("tripped = %v after a reload with enabled = %v", got, tc.enabled)
			}
		})
	}
}

// TestAuthRejectionsAreNoEvidence: answers turned away by authentication
// (anyone can send them, with no or forged credentials, or a forged
// canary id) neither dilute rust's error rate below the limit nor make
// up canary evidence for advance.
func TestAuthRejectionsAreNoEvidence(t *testing.T) {
	flood := func(f *fixture, c routing.Category, reason routing.Reason, status, n int) {
		for i := 0; i < n; i++ {
			f.g.Record(Outcome{At: f.clk.now(), Category: c, Backend: routing.Rust, Reason: reason, ServedBy: "rust", Status: status, Duration: time.Millisecond})
			f.clk.add(time.Millisecond)
		}
	}
	t.Run("dilution", func(t *testing.T) {
		f := newFixture(t, snap(routing.RustReadOnly), nil)
		// 30% of real reads fail: 6 of 20 (the first ones trip at once,
		// so the flood comes first).
		flood(f, routing.NodeNetworkRead, routing.ReasonPhase, 401, 500)
		flood(f, routing.NodeNetworkRead, routing.ReasonPhase, 403, 500)
		f.send(routing.NodeNetworkRead, routing.Rust, routing.ReasonPhase, 20, 3, time.Millisecond)
		f.g.Check()
		if !f.tripped(routing.NodeNetworkRead) {
			t.Fatalf("1000 rejected requests hid a 35%% error rate:\n%s", f.log.String())
		}
	})
	t.Run("forged canary evidence", func(t *testing.T) {
		f := newFixture(t, snap(routing.RustReadOnly), nil)
		flood(f, routing.NodeNetworkBasicWrite, routing.ReasonCanary, 401, 100)
		basic := f.g.Plan().Categories[1]
		if basic.Evidence.OK || basic.Evidence.Canary != 0 {
			t.Fatalf("401 answers to a forged canary id count as evidence: %+v", basic.Evidence)
		}
		f.send(routing.NodeNetworkBasicWrite, routing.Rust, routing.ReasonCanary, 20, 0, time.Millisecond)
		if basic := f.g.Plan().Categories[1]; !basic.Evidence.OK || basic.Evidence.Canary != 20 {
			t.Fatalf("real canary writes not evidence: %+v", basic.Evidence)
		}
	})
	t.Run("rust failure before a 401 still counts", func(t *testing.T) {
		o := Outcome{Backend: routing.Rust, ServedBy: "perl", Fallback: true, Status: 401}
		if o.AuthRejected() {
			t.Fatal("a fallback after a rust failure was dropped as an auth rejection")
		}
	})
}

// TestPhaseChangeKeepsCompareEvidence: moving a category to rust over
// mismatching reads (advance --force) trips it at once; only an
// operator's gate reset forgets the mismatches.
func TestPhaseChangeKeepsCompareEvidence(t *testing.T) {
	rep := compare.NewReport(time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC))
	f := newFixture(t, snap(routing.PerlOnly), rep)
	f.g.Reconfigure(f.current())
	for i := 0; i < 30; i++ {
		rep.Record("node-network-read", "/nodes/{node}/network", "GET",
			compare.Verdict{Result: compare.Mismatch, Fields: []compare.Field{{Path: "data[].mtu", Kind: compare.KindType}}}, f.clk.now())
	}
	f.g.Check()
	if f.tripped(routing.NodeNetworkRead) {
		t.Fatal("tripped while perl serves reads")
	}
	f.clk.add(2 * time.Second)
	next := snap(routing.RustReadOnly)
	f.set(next)
	f.g.Reconfigure(next)
	f.clk.add(time.Second)
	f.g.Check()
	if !f.tripped(routing.NodeNetworkRead) {
		t.Fatalf("reads moved to rust over 30 of 30 mismatching comparisons and the gate kept them there:\n%s", f.log.String())
	}
}
