package gate

import (
	"fmt"
	"time"

	"github.com/pve-migration/router/routing"
)

// Evidence kinds: reads earn their move through the shadow comparison,
// writes (which cannot be shadowed) through canary users' requests.
const (
	KindCompare = "compare"
	KindCanary  = "canary"
)

// Plan is what the next phase would move on this node, from the traffic
// of the window, with the evidence for each category.
type Plan struct {
	// Phase is the phase in force on this node; Next the one after it
	// (HasNext false at rust-full).
	Phase, Next routing.Phase
	HasNext     bool
	Window      time.Duration
	MinRequests int
	Categories  []CategoryPlan
}

// CategoryPlan is one network category's line of a Plan.
type CategoryPlan struct {
	Category routing.Category
	// Requests is every request of the category in the window.
	Requests uint64
	// WouldMove is how many of them the next phase would send to rust
	// (those the matrix keeps on perl today, when Moves).
	WouldMove uint64
	// Moves is true when the next phase sends the category to rust and
	// the current one does not: only then does its evidence matter.
	Moves bool
	// Tripped is true when the gate holds the category on perl here.
	Tripped  bool
	Evidence Evidence
}

// Evidence is the figures behind a category's verdict.
type Evidence struct {
	Kind string
	// OK is true when the evidence holds; Missing says what it lacks.
	OK      bool
	Missing []string
	// Compare figures (reads).
	Compared, Mismatched int
	MismatchRate         float64
	// Rust attempt figures (writes: canary and endpoint promotions; reads
	// already on rust too).
	RustAttempts, RustErrors, Canary uint64
	ErrorRate                        float64
	RustP99, PerlP99                 time.Duration
	// LatencyRatio is RustP99/PerlP99, 0 when either side has fewer than
	// min_requests samples.
	LatencyRatio float64
}

// IsRead reports whether a category's evidence comes from comparison.
func IsRead(c routing.Category) bool { return c == routing.NodeNetworkRead || c == routing.SDNRead }

// Plan computes the plan now.
func (g *Gate) Plan() Plan {
	now := g.now()
	set := g.settings()
	snap := g.cfg()
	local := g.state.Local()
	p := Plan{Window: set.Window, MinRequests: set.MinRequests}
	if snap == nil {
		return p
	}
	p.Phase = effectivePhase(snap.Policy, local.Node)
	p.Next, p.HasNext = routing.NextPhase(p.Phase)
	g.mu.Lock()
	figures := make(map[routing.Category]counts, numCategories)
	for _, c := range routing.Categories() {
		if c != routing.NotNetwork {
			figures[c] = g.windows[c].sum(now)
		}
	}
	g.mu.Unlock()
	for _, c := range routing.Categories() {
		if c == routing.NotNetwork {
			continue
		}
		f := figures[c]
		cp := CategoryPlan{Category: c, Requests: f.requests, Tripped: local.Tripped.Has(c)}
		if p.HasNext {
			cp.Moves = matrixBackend(&snap.Policy, local.Node, p.Phase, c) == routing.Perl &&
				matrixBackend(&snap.Policy, local.Node, p.Next, c) == routing.Rust
		}
		if cp.Moves {
			cp.WouldMove = f.perlByPhase
		}
		e := Evidence{Kind: KindCanary, RustAttempts: f.rustAttempts, RustErrors: f.rustErrors, Canary: f.canary, ErrorRate: f.errorRate(),
			RustP99: f.rustLat.p99(), PerlP99: f.perlLat.p99()}
		if f.rustLat.count() >= uint64(set.MinRequests) && f.perlLat.count() >= uint64(set.MinRequests) && e.PerlP99 > 0 {
			e.LatencyRatio = float64(e.RustP99) / float64(e.PerlP99)
		}
		if IsRead(c) {
			e.Kind = KindCompare
			if g.compare != nil {
				e.Compared, e.Mismatched = g.compare.Window(c.String(), now, set.Window)
				if e.Compared > 0 {
					e.MismatchRate = float64(e.Mismatched) / float64(e.Compared)
				}
			}
		}
		e.Missing = judge(c, &e, set.MinRequests, set.MaxRustErrorRate, set.MaxLatencyRatio, set.MaxMismatchRate, g.compare != nil, cp.Tripped)
		e.OK = len(e.Missing) == 0
		cp.Evidence = e
		p.Categories = append(p.Categories, cp)
	}
	return p
}

// judge lists what a category's evidence lacks; empty means it holds. A
// window below min_requests never counts as evidence.
func judge(c routing.Category, e *Evidence, minReq int, maxErr, maxRatio, maxMismatch float64, haveCompare, tripped bool) []string {
	var missing []string
	if tripped {
		missing = append(missing, "the gate tripped it on this node (migration-ctl gate reset after fixing the cause)")
	}
	if e.Kind == KindCompare {
		switch {
		case !haveCompare:
			missing = append(missing, "no shadow comparison runs on this router, so reads have no evidence ([compare] enabled = true)")
		case e.Compared < minReq:
			missing = append(missing, fmt.Sprintf("only %d compared reads in the window, need min_requests = %d", e.Compared, minReq))
		case e.MismatchRate > maxMismatch:
			missing = append(missing, fmt.Sprintf("mismatch rate %.4f (%d of %d compared) is above max_mismatch_rate = %g (see migration-ctl compare)",
				e.MismatchRate, e.Mismatched, e.Compared, maxMismatch))
		}
		return missing
	}
	switch {
	case e.RustAttempts < uint64(minReq):
		missing = append(missing, fmt.Sprintf("only %d requests served by rust in the window, need min_requests = %d (add canary users: [canary] users or percent)",
			e.RustAttempts, minReq))
	case e.ErrorRate > maxErr:
		missing = append(missing, fmt.Sprintf("rust error rate %.4f (%d of %d) is above max_rust_error_rate = %g", e.ErrorRate, e.RustErrors, e.RustAttempts, maxErr))
	case e.LatencyRatio > maxRatio:
		missing = append(missing, fmt.Sprintf("rust p99 %s is %.2f× perl's %s, above max_latency_ratio = %g", e.RustP99, e.LatencyRatio, e.PerlP99, maxRatio))
	}
	return missing
}
