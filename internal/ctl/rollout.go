package ctl

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/pve-migration/router/internal/config"
	pb "github.com/pve-migration/router/proto/pvemigration/v1"
	"github.com/pve-migration/router/routing"
	"github.com/pve-migration/router/server"
)

func routerFlags(fs *flag.FlagSet) (*string, *time.Duration) {
	router := fs.String("router", defaultRouter(), "the router's gRPC `ADDR` (host:port or unix:/path)")
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for the router")
	return router, timeout
}

func planCommand() *command {
	return &command{
		name:    "plan",
		summary: "what the next phase would move, from live traffic, with the evidence for it",
		details: `Asks the running router (--router) what the next phase would move on its node:
per request category, the requests seen in the gate's window, how many of them
the next phase would send to rust, and the evidence for each category that
moves. Reads earn their move through the shadow comparison (compared reads and
their mismatch rate); writes through requests rust served for canary users
([canary]), within the gate's error and latency limits. A window with fewer
than min_requests is no evidence.`,
		examples: []string{prog + " plan", prog + " plan --json"},
		maxArgs:  0,
		define: func(fs *flag.FlagSet) runFunc {
			jsonOut := fs.Bool("json", false, "print one JSON object")
			router, timeout := routerFlags(fs)
			return func(a *app, _ configFlag, _ []string) int {
				p, err := fetchPlan(a.ctx, *router, *timeout)
				if err != nil {
					return a.failf([]string{"is migration-router running? (systemctl status migration-router)"},
						"the router is not reachable at %s (%s): the plan needs its live traffic", *router, grpcMessage(err))
				}
				v := planViewFrom(p)
				if *jsonOut {
					a.printJSON(v)
					return ExitOK
				}
				a.printPlan(v)
				return ExitOK
			}
		},
	}
}

func advanceCommand() *command {
	return &command{
		name:    "advance",
		summary: "set-phase to the next phase, only when the evidence for it holds",
		details: `Moves the config file to the next phase (with set-phase's safe edit) only when
every category the next phase moves to rust has evidence on the running
router (see plan): reads, at least min_requests compared reads with a mismatch
rate within max_mismatch_rate; writes, at least min_requests requests served
by rust (canary users) within max_rust_error_rate and max_latency_ratio.
Otherwise it exits 1 and names each category and what it lacks.

The evidence is the router's node's: when that node has its own
[nodes.NAME] phase (one node first), advance moves that table and leaves the
other nodes alone. The file must be the one the router watches.

With the router unreachable there is no evidence, so advance refuses. --force
moves anyway (after saying what is missing). --dry-run only says. Rollback
needs no evidence: ` + prog + ` set-phase perl-only.`,
		examples: []string{prog + " advance --dry-run", prog + " advance", prog + " advance --force"},
		maxArgs:  0,
		define: func(fs *flag.FlagSet) runFunc {
			dryRun := fs.Bool("dry-run", false, "judge the evidence and show the change; write nothing")
			force := fs.Bool("force", false, "advance without evidence")
			router, timeout := routerFlags(fs)
			return func(a *app, cfg configFlag, _ []string) int {
				return a.advance(cfg, *router, *timeout, *dryRun, *force)
			}
		},
	}
}

func gateCommand() *command {
	return &command{
		name:    "gate",
		args:    "reset [CATEGORY]",
		summary: "let rust have back the categories the gate tripped to perl",
		details: `The gate ([gate]) sends a category back to perl on a node when rust breaks a
limit there, and keeps it on perl until reset: no flapping. "gate reset"
clears the trip of CATEGORY, or every trip, on the router at --router; fix
the cause first (see status and the router's log line naming the limit).
A phase change of a category resets its trip too.

Categories: ` + strings.Join(networkCategoryNames(), ", ") + `.`,
		examples: []string{prog + " gate reset node-network-read", prog + " gate reset"},
		minArgs:  1,
		maxArgs:  2,
		define: func(fs *flag.FlagSet) runFunc {
			router, timeout := routerFlags(fs)
			return func(a *app, _ configFlag, args []string) int {
				if args[0] != "reset" {
					msg := fmt.Sprintf("unknown gate action %q (valid: reset)", args[0])
					if s := routing.Suggest(args[0], []string{"reset"}); s != "" {
						msg += fmt.Sprintf("; did you mean %q?", s)
					}
					return a.usageError("gate", msg)
				}
				var cats []string
				if len(args) == 2 {
					c, err := server.ParseNetworkCategory(args[1])
					if err != nil {
						return a.usageError("gate", err.Error())
					}
					cats = append(cats, c.String())
				}
				return a.gateReset(*router, *timeout, cats)
			}
		},
	}
}

func networkCategoryNames() []string {
	var out []string
	for _, c := range routing.Categories() {
		if c != routing.NotNetwork {
			out = append(out, c.String())
		}
	}
	return out
}

func dialRouter(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

func fetchPlan(ctx context.Context, addr string, timeout time.Duration) (*pb.PlanResponse, error) {
	conn, err := dialRouter(addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return pb.NewRolloutServiceClient(conn).Plan(ctx, &pb.PlanRequest{})
}

func (a *app) gateReset(addr string, timeout time.Duration, cats []string) int {
	conn, err := dialRouter(addr)
	if err != nil {
		return a.failf(nil, "router address %s: %v", addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(a.ctx, timeout)
	defer cancel()
	resp, err := pb.NewRolloutServiceClient(conn).GateReset(ctx, &pb.GateResetRequest{Categories: cats})
	if err != nil {
		return a.failf([]string{"is migration-router running? (systemctl status migration-router)"},
			"gate reset at %s failed: %s", addr, grpcMessage(err))
	}
	if len(resp.GetResetCategories()) == 0 {
		fmt.Fprintln(a.stdout, "nothing was tripped; nothing to reset")
	} else {
		fmt.Fprintf(a.stdout, "reset: %s may go to rust again on this node\n", strings.Join(resp.GetResetCategories(), ", "))
	}
	if t := resp.GetTripped(); len(t) > 0 {
		fmt.Fprintf(a.stdout, "still tripped: %s\n", strings.Join(t, ", "))
	}
	return ExitOK
}

// planView is `plan --json`: {"phase", "next", "categories":[{"category",
// "requests", "would_move", "evidence"}]} as the contract fixes it, plus
// the window it was taken over.
type planView struct {
	Phase         string             `json:"phase"`
	Next          string             `json:"next"`
	WindowSeconds float64            `json:"window_seconds"`
	MinRequests   int                `json:"min_requests"`
	GateEnabled   bool               `json:"gate_enabled"`
	Categories    []categoryPlanView `json:"categories"`
}

type categoryPlanView struct {
	Category  string       `json:"category"`
	Requests  uint64       `json:"requests"`
	WouldMove uint64       `json:"would_move"`
	Moves     bool         `json:"moves"`
	Tripped   bool         `json:"tripped"`
	Evidence  evidenceView `json:"evidence"`
}

type evidenceView struct {
	Kind           string   `json:"kind"`
	OK             bool     `json:"ok"`
	Missing        []string `json:"missing"`
	Compared       int64    `json:"compared"`
	Mismatched     int64    `json:"mismatched"`
	MismatchRate   float64  `json:"mismatch_rate"`
	RustAttempts   uint64   `json:"rust_attempts"`
	RustErrors     uint64   `json:"rust_errors"`
	Canary         uint64   `json:"canary"`
	ErrorRate      float64  `json:"error_rate"`
	RustP99Seconds float64  `json:"rust_p99_seconds"`
	PerlP99Seconds float64  `json:"perl_p99_seconds"`
	LatencyRatio   float64  `json:"latency_ratio"`
}

func planViewFrom(p *pb.PlanResponse) planView {
	v := planView{Phase: p.GetPhase(), Next: p.GetNext(), WindowSeconds: p.GetWindow().AsDuration().Seconds(),
		MinRequests: int(p.GetMinRequests()), GateEnabled: p.GetGateEnabled(), Categories: []categoryPlanView{}}
	for _, c := range p.GetCategories() {
		e := c.GetEvidence()
		missing := e.GetMissing()
		if missing == nil {
			missing = []string{}
		}
		v.Categories = append(v.Categories, categoryPlanView{
			Category: c.GetCategory(), Requests: c.GetRequests(), WouldMove: c.GetWouldMove(), Moves: c.GetMoves(), Tripped: c.GetTripped(),
			Evidence: evidenceView{
				Kind: e.GetKind(), OK: e.GetOk(), Missing: missing, Compared: e.GetCompared(), Mismatched: e.GetMismatched(),
				MismatchRate: e.GetMismatchRate(), RustAttempts: e.GetRustAttempts(), RustErrors: e.GetRustErrors(), Canary: e.GetCanary(),
				ErrorRate: e.GetErrorRate(), RustP99Seconds: e.GetRustP99().AsDuration().Seconds(), PerlP99Seconds: e.GetPerlP99().AsDuration().Seconds(),
				LatencyRatio: e.GetLatencyRatio(),
			},
		})
	}
	return v
}

func (a *app) printPlan(v planView) {
	s := a.style
	next := v.Next
	if next == "" {
		next = "none (rust-full is the last phase)"
	}
	fmt.Fprintf(a.stdout, "phase %s, next %s (window %s, min_requests %d)\n", s.bold(v.Phase), next,
		seconds(time.Duration(v.WindowSeconds*float64(time.Second))), v.MinRequests)
	t := &table{}
	t.add("category", "requests", "would move", "evidence")
	for _, c := range v.Categories {
		ev := "-"
		e := c.Evidence
		if e.Kind == "compare" {
			ev = fmt.Sprintf("compare: %d compared, %d mismatched", e.Compared, e.Mismatched)
		} else {
			ev = fmt.Sprintf("canary: %d served by rust, %d failed", e.RustAttempts, e.RustErrors)
		}
		switch {
		case c.Moves && e.OK:
			ev = s.good("holds") + "  " + ev
		case c.Moves:
			ev = s.bad("missing") + "  " + ev
		}
		if c.Tripped {
			ev += "  " + s.warn("(gate tripped: on perl here)")
		}
		would := "-"
		if c.Moves {
			would = fmt.Sprint(c.WouldMove)
		}
		t.add(c.Category, fmt.Sprint(c.Requests), would, ev)
	}
	t.write(a.stdout, "")
	for _, c := range v.Categories {
		if c.Moves {
			for _, m := range c.Evidence.Missing {
				fmt.Fprintf(a.stdout, "%s: %s\n", c.Category, m)
			}
		}
	}
}

func (a *app) advance(cfg configFlag, addr string, timeout time.Duration, dryRun, force bool) int {
	p, err := fetchPlan(a.ctx, addr, timeout)
	if err != nil {
		if !force {
			return a.failf([]string{
				"is migration-router running? (systemctl status migration-router)",
				"--force advances without evidence",
			}, "the router is not reachable at %s (%s): without its evidence advance refuses; nothing was changed", addr, grpcMessage(err))
		}
		path, explicit := cfg.resolve(a.getenv)
		snap, lerr := config.LoadResolved(path, explicit, nil)
		if lerr != nil {
			a.reportLoadError(path, lerr)
			return ExitFailure
		}
		next, ok := routing.NextPhase(snap.Policy.Phase)
		if !ok {
			return a.failf(nil, "the phase is %s, the last one: nothing to advance", snap.Policy.Phase)
		}
		a.warnf("the router is not reachable at %s (%s): advancing to %s without evidence (--force)", addr, grpcMessage(err), next)
		return a.setPhase(cfg, next.String(), dryRun, false)
	}
	if p.GetNext() == "" {
		return a.failf(nil, "the phase is %s, the last one: nothing to advance", p.GetPhase())
	}
	var missing, held []string
	for _, c := range p.GetCategories() {
		if !c.GetMoves() {
			continue
		}
		if c.GetEvidence().GetOk() {
			held = append(held, c.GetCategory())
			continue
		}
		for _, m := range c.GetEvidence().GetMissing() {
			missing = append(missing, c.GetCategory()+": "+m)
		}
	}
	if len(missing) > 0 {
		if !force {
			fmt.Fprintf(a.stderr, "error: %s → %s lacks evidence; nothing was changed:\n", p.GetPhase(), p.GetNext())
			for _, m := range missing {
				fmt.Fprintf(a.stderr, "  %s\n", m)
			}
			fmt.Fprintf(a.stderr, "hint: see %s plan; --force advances anyway\n", prog)
			return ExitFailure
		}
		a.warnf("advancing to %s without evidence (--force):", p.GetNext())
		for _, m := range missing {
			fmt.Fprintf(a.stderr, "  %s\n", m)
		}
	} else if len(held) > 0 {
		fmt.Fprintf(a.stdout, "evidence holds for %s\n", strings.Join(held, ", "))
	}
	return a.advanceTo(cfg, addr, timeout, p.GetPhase(), p.GetNext(), dryRun)
}

// gateStatusView is `status --json`'s "gate": {"tripped": [...]}; from the
// file alone nothing is known to be tripped.
type gateStatusView struct {
	Tripped []string `json:"tripped"`
}
