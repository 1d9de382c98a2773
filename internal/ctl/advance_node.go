package ctl

import (
	"fmt"
	"time"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/routing"
)

// advanceNode is the node whose [nodes.NAME] table advance must move, ""
// for the top level. The plan judges the phase in force on the router's
// node: with its own table (one node first, the PVE way) that table is
// what the evidence is about. Moving the top level instead would move
// every other node, by up to several phases, on one node's evidence (and
// set-phase refused it as "2 phases ahead", even with --force).
func (a *app) advanceNode(cfg configFlag, addr string, timeout time.Duration, planPhase string) string {
	st, err := fetchStatus(a.ctx, addr, timeout)
	if err != nil {
		return ""
	}
	node := st.GetNode().GetNode()
	if node == "" {
		return ""
	}
	path, explicit := cfg.resolve(a.getenv)
	snap, err := config.LoadResolved(path, explicit, nil)
	if err != nil {
		return "" // the edit reports the file's problem
	}
	ph, ok := snap.FileNodes[node]
	if !ok || ph.String() != planPhase {
		return ""
	}
	return node
}

// advanceTo moves the file to next for a plan at phase: the router's node
// table when it has one, else the top level. The edit is guarded like
// set-phase's: it must be the file the router watches.
func (a *app) advanceTo(cfg configFlag, addr string, timeout time.Duration, phase, next string, dryRun bool) int {
	a.target = editTarget{router: addr, timeout: timeout}
	if node := a.advanceNode(cfg, addr, timeout, phase); node != "" {
		target, err := routing.ParsePhase(next)
		if err != nil {
			return a.failf(nil, "the router's next phase %q: %v; nothing was changed", next, err)
		}
		fmt.Fprintf(a.stdout, "node %s runs its own phase ([nodes.%s]): advancing that table; other nodes keep theirs\n", node, node)
		return a.setNodePhase(cfg, target, phaseOptions{node: node, dryRun: dryRun})
	}
	return a.setPhase(cfg, next, dryRun, false)
}
