// Package gate is the router's automatic rollback: per category, over a
// sliding window of the outcomes telemetry sees, it measures the rust
// error rate, rust's p99 latency against perl's and (from the shadow
// comparison) the mismatch rate, and trips a category that breaks a limit
// back to perl on this node. It also turns the same windows into the
// evidence `migration-ctl plan` and `advance` judge a phase by.
//
// The gate decides nothing per request: a trip is a bit in
// localstate.State, which the decision service hands to routing.Decide as
// data (reason gate-tripped). Outcomes reach the gate as an
// outcome.Observer that only queues them; Run aggregates them off the
// request path.
package gate

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/internal/outcome"
	"github.com/pve-migration/router/routing"
)

// CompareEvidence is the shadow comparison's view of a window: how many
// reads of the category were compared and how many mismatched. The
// compare engine implements it; nil means no comparison runs, so reads
// have no evidence and mismatches never trip.
// The gate asks for the last d before now: its window, or less right
// after a reset (*compare.Report implements it).
type CompareEvidence interface {
	Window(category string, now time.Time, d time.Duration) (compared, mismatched int)
}

// State is where trips take effect: localstate.State.
type State interface {
	Trip(routing.Category) bool
	Reset(...routing.Category) bool
	Local() routing.Local
}

// Options wires a Gate. Config and State are required.
type Options struct {
	// Config returns the snapshot in force; its Gate settings and policy
	// are read at every check, so a reload takes effect at once.
	Config func() *config.Snapshot
	State  State
	// Compare supplies mismatch figures; nil: none.
	Compare CompareEvidence
	// Logger gets the trip and reset lines; nil: slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Queue is how many outcomes may wait for Run; beyond it they are
	// dropped (and counted) rather than slowing a request. 0: 8192.
	Queue int
}

// Outcome is what the gate keeps of one finished request.
type Outcome struct {
	At       time.Time
	Category routing.Category
	Backend  routing.Backend // as decided
	Reason   routing.Reason
	// ServedBy is "rust", "perl" or "" (no backend answered).
	ServedBy string
	// Status is the HTTP status the client got.
	Status   int
	Fallback bool
	Duration time.Duration
}

// RustFailed reports whether a rust attempt failed as the contract counts
// it: a 5xx from rust, no answer at all (reset, refused, timeout without
// fallback), or a fallback to perl (which the data plane makes only on
// those failures and on an extjs success:0 with status ≥ 500).
func (o *Outcome) RustFailed() bool {
	if o.Backend != routing.Rust {
		return false
	}
	return o.Fallback || o.ServedBy == "" || (o.ServedBy == "rust" && o.Status >= 500)
}

// AuthRejected reports whether the request was turned away by the
// backend's authentication (401, 403) without a rust failure before it.
// Such an answer says nothing about rust's network code, and anyone can
// send one (no or forged credentials, a forged canary id): counted, a
// flood of them would dilute a real error rate below the limit, lower
// rust's p99, and make up canary "evidence" for advance.
func (o *Outcome) AuthRejected() bool {
	return (o.Status == 401 || o.Status == 403) && !o.RustFailed()
}

const numCategories = int(routing.SDNWrite) + 1

// Gate is safe for concurrent use.
type Gate struct {
	cfg     func() *config.Snapshot
	state   State
	compare CompareEvidence
	log     *slog.Logger
	now     func() time.Time
	queue   chan Outcome
	dropped atomic.Uint64
	trips   [numCategories]atomic.Uint64

	mu      sync.Mutex
	size    time.Duration // window size the windows were built for
	windows [numCategories]*window
	// since is when a category's trip was last reset: the compare
	// figures the gate judges start there, so the mismatches that
	// tripped it cannot trip it again the moment it is back.
	since [numCategories]time.Time
	last  *config.Snapshot // the snapshot Reconfigure saw last
}

var _ outcome.Observer = (*Gate)(nil)

// New returns a Gate; start Run to feed it from the Observer side.
func New(opts Options) *Gate {
	g := &Gate{cfg: opts.Config, state: opts.State, compare: opts.Compare, log: opts.Logger, now: opts.Now}
	if g.log == nil {
		g.log = slog.Default()
	}
	if g.now == nil {
		g.now = time.Now
	}
	n := opts.Queue
	if n <= 0 {
		n = 8192
	}
	g.queue = make(chan Outcome, n)
	g.last = g.cfg()
	g.resize(g.settings().Window)
	return g
}

func (g *Gate) settings() config.Gate {
	if s := g.cfg(); s != nil {
		return s.Gate
	}
	return config.DefaultGate()
}

// resize rebuilds every window for a new size; g.mu held or not yet shared.
func (g *Gate) resize(size time.Duration) {
	g.size = size
	for i := range g.windows {
		g.windows[i] = newWindow(size)
	}
}

// Decided is part of outcome.Observer; the gate needs only outcomes.
func (g *Gate) Decided(ctx context.Context, _ *outcome.Decision) context.Context { return ctx }

// Abandoned is part of outcome.Observer. A request whose client went away
// says nothing about rust.
func (g *Gate) Abandoned(context.Context, *outcome.Decision, string) {}

// Finished queues the outcome for Run without blocking: a full queue
// drops it, because a slow gate must never slow a request.
func (g *Gate) Finished(_ context.Context, d *outcome.Decision, r outcome.Result) {
	if d.Decision.Category == routing.NotNetwork {
		return
	}
	at := d.Start.Add(r.Duration)
	if d.Start.IsZero() {
		at = g.now()
	}
	o := Outcome{At: at, Category: d.Decision.Category, Backend: d.Decision.Backend, Reason: d.Decision.Reason,
		ServedBy: r.ServedBy, Status: r.Status, Fallback: r.Fallback, Duration: r.Duration}
	select {
	case g.queue <- o:
	default:
		g.dropped.Add(1)
	}
}

// Dropped is how many outcomes a full queue dropped.
func (g *Gate) Dropped() uint64 { return g.dropped.Load() }

// Run aggregates queued outcomes and, once a second, checks every
// category in full (latency, mismatches) and notices config changes. It
// returns nil when ctx ends.
func (g *Gate) Run(ctx context.Context) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case o := <-g.queue:
			g.Record(o)
		case <-tick.C:
			g.Reconfigure(g.cfg())
			g.Check()
		}
	}
}

// Record adds one outcome to its category's window and, for a rust
// attempt, checks the error rate at once.
func (g *Gate) Record(o Outcome) {
	if o.Category == routing.NotNetwork || int(o.Category) >= numCategories || o.AuthRejected() {
		return
	}
	set := g.settings()
	g.mu.Lock()
	defer g.mu.Unlock()
	if set.Window != g.size {
		g.resize(set.Window)
	}
	w := g.windows[o.Category]
	w.add(&o)
	if o.Backend != routing.Rust || !set.Enabled || g.state.Local().Tripped.Has(o.Category) {
		return
	}
	attempts, errs := w.errorFigures(g.now())
	g.checkErrors(o.Category, set, attempts, errs)
}

// Check runs every limit over every category now.
func (g *Gate) Check() {
	set := g.settings()
	if !set.Enabled {
		return
	}
	now := g.now()
	tripped := g.state.Local().Tripped
	g.mu.Lock()
	defer g.mu.Unlock()
	if set.Window != g.size {
		g.resize(set.Window)
	}
	for _, c := range routing.Categories() {
		if c == routing.NotNetwork || tripped.Has(c) {
			continue
		}
		f := g.windows[c].sum(now)
		if g.checkErrors(c, set, f.rustAttempts, f.rustErrors) {
			continue
		}
		if f.rustLat.count() >= uint64(set.MinRequests) && f.perlLat.count() >= uint64(set.MinRequests) {
			rp, pp := f.rustLat.p99(), f.perlLat.p99()
			if ratio := float64(rp) / float64(pp); ratio > set.MaxLatencyRatio {
				g.trip(c, "max_latency_ratio", set.MaxLatencyRatio, ratio, set,
					slog.Duration("rust_p99", rp), slog.Duration("perl_p99", pp),
					slog.Uint64("rust_samples", f.rustLat.count()), slog.Uint64("perl_samples", f.perlLat.count()))
				continue
			}
		}
		if g.compare != nil && (f.rustAttempts > 0 || g.servesRust(c)) {
			d := set.Window
			if s := g.since[c]; !s.IsZero() && now.Sub(s) < d {
				d = now.Sub(s)
			}
			compared, mismatched := g.compare.Window(c.String(), now, d)
			if compared >= set.MinRequests {
				if rate := float64(mismatched) / float64(compared); rate > set.MaxMismatchRate {
					g.trip(c, "max_mismatch_rate", set.MaxMismatchRate, rate, set,
						slog.Int("compared", compared), slog.Int("mismatched", mismatched))
				}
			}
		}
	}
}

// checkErrors trips c when its error rate breaks the limit over at least
// min_requests attempts; it reports whether it tripped.
func (g *Gate) checkErrors(c routing.Category, set config.Gate, attempts, errs uint64) bool {
	if attempts < uint64(set.MinRequests) || attempts == 0 {
		return false
	}
	rate := float64(errs) / float64(attempts)
	if rate <= set.MaxRustErrorRate {
		return false
	}
	return g.trip(c, "max_rust_error_rate", set.MaxRustErrorRate, rate, set,
		slog.Uint64("rust_attempts", attempts), slog.Uint64("rust_errors", errs))
}

// servesRust reports whether the matrix sends c to rust on this node now.
func (g *Gate) servesRust(c routing.Category) bool {
	s := g.cfg()
	return s != nil && matrixBackend(&s.Policy, g.state.Local().Node, effectivePhase(s.Policy, g.state.Local().Node), c) == routing.Rust
}

func (g *Gate) trip(c routing.Category, limit string, max, value float64, set config.Gate, figures ...slog.Attr) bool {
	if !g.state.Trip(c) {
		return false
	}
	g.trips[c].Add(1)
	attrs := append([]slog.Attr{
		slog.String("category", c.String()),
		slog.String("limit", limit),
		slog.Float64("max", max),
		slog.Float64("value", value),
		slog.Duration("window", set.Window),
		slog.Int("min_requests", set.MinRequests),
	}, figures...)
	g.log.LogAttrs(context.Background(), slog.LevelWarn,
		"gate tripped: "+c.String()+" goes to perl on this node until migration-ctl gate reset", attrs...)
	return true
}

// Trips returns how often each network category has tripped since start,
// every one present (at zero), for pve_migration_gate_trips_total.
func (g *Gate) Trips() map[routing.Category]uint64 {
	out := make(map[routing.Category]uint64, numCategories-1)
	for _, c := range routing.Categories() {
		if c != routing.NotNetwork {
			out[c] = g.trips[c].Load()
		}
	}
	return out
}

// Tripped lists the categories tripped on this node now.
func (g *Gate) Tripped() []routing.Category { return g.state.Local().Tripped.List() }

// Reset clears the trips of cs (every trip when cs is empty) and their
// windows, so the failures that tripped a category cannot trip it again
// the moment it is back. It returns the categories that were tripped.
//
// The compare mismatches before an operator's reset are forgotten too: the
// operator says rust is fixed. A reset by a config change keeps them: a
// category moved to rust (advance --force) over mismatching reads trips
// at once, as it should.
func (g *Gate) Reset(reason string, cs ...routing.Category) []routing.Category {
	return g.reset(reason, true, cs...)
}

func (g *Gate) reset(reason string, forgetCompare bool, cs ...routing.Category) []routing.Category {
	before := g.state.Local().Tripped
	if len(cs) == 0 {
		cs = before.List()
	}
	var reset []routing.Category
	now := g.now()
	g.mu.Lock()
	for _, c := range cs {
		if c == routing.NotNetwork || int(c) >= numCategories {
			continue
		}
		g.windows[c] = newWindow(g.size)
		if forgetCompare {
			g.since[c] = now
		}
		if before.Has(c) {
			reset = append(reset, c)
		}
	}
	g.mu.Unlock()
	if len(cs) > 0 {
		g.state.Reset(cs...)
	}
	for _, c := range reset {
		g.log.LogAttrs(context.Background(), slog.LevelInfo, "gate reset: "+c.String()+" may go to rust again",
			slog.String("category", c.String()), slog.String("by", reason))
	}
	return reset
}

// Reconfigure notices a new snapshot: a category whose backend in the
// phase matrix changes (a phase edit, a feature flag) loses its trip,
// since the operator has decided about it anew. Other trips survive the
// reload. Run calls it every second; the router may also call it from the
// store's reload hook.
func (g *Gate) Reconfigure(next *config.Snapshot) {
	if next == nil {
		return
	}
	g.mu.Lock()
	prev := g.last
	g.last = next
	g.mu.Unlock()
	if prev == nil || prev == next {
		return
	}
	if prev.Gate.Enabled && !next.Gate.Enabled {
		// [gate] enabled = false means the gate holds nothing back: a
		// trip kept from before would send a category to perl with no
		// gate to answer for it (and nothing in the file to say why).
		g.reset("gate disabled", false)
		return
	}
	node := g.state.Local().Node
	var changed []routing.Category
	for _, c := range routing.Categories() {
		if c == routing.NotNetwork {
			continue
		}
		if matrixBackend(&prev.Policy, node, effectivePhase(prev.Policy, node), c) != matrixBackend(&next.Policy, node, effectivePhase(next.Policy, node), c) {
			changed = append(changed, c)
		}
	}
	if len(changed) > 0 {
		g.reset("config change", false, changed...)
	}
}

// matrixBackend is where the phase matrix and the feature flags send
// category c at phase ph, leaving out endpoint rules, canaries and
// node-local state.
func matrixBackend(p *routing.Policy, node string, ph routing.Phase, c routing.Category) routing.Backend {
	q := routing.Policy{Phase: ph, Features: p.Features, Local: routing.Local{Node: node}}
	return routing.DecideClassified(&q, "GET", "", routing.Classification{Category: c}).Backend
}

// effectivePhase is the phase in force on node for its own paths.
func effectivePhase(p routing.Policy, node string) routing.Phase {
	p.Local = routing.Local{Node: node}
	return p.EffectivePhase()
}
