package ctl

import (
	"fmt"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/routing"
)

// routerPhasePinned runs after set-phase wrote the file. When the router
// it asked (checkTarget) takes its phase from PVE_NETWORK_MIGRATION_PHASE
// in its own environment and that phase is not target, the edit changes
// nothing the router serves: the variable beats the file. set-phase used
// to print "moves back to perl" and exit 0 on a rollback that did not
// happen; it now says so and exits 1, naming the kill switch, which beats
// the environment without a restart. The environment of this shell is
// another matter (envOverrideWarning).
func (a *app) routerPhasePinned(target routing.Phase) int {
	r := a.routerSeen
	if r == nil || config.Source(r.GetPhaseSource()) != config.SourceEnv || r.GetPhase() == target.String() {
		return ExitOK
	}
	hints := []string{
		fmt.Sprintf("remove the override (systemctl show pve-migration-router -p Environment; systemctl revert pve-migration-router) and restart the router; check with: %s status", prog),
	}
	if target == routing.PerlOnly {
		hints = append([]string{fmt.Sprintf("to roll back this node now: %s set-phase perl-only --local (the kill switch beats the environment, no restart)", prog)}, hints...)
	}
	return a.failf(hints, "the file now says phase %s, but the router at %s serves phase %s from its environment (%s), which beats the file: this change has no effect there",
		target, a.target.router, r.GetPhase(), config.EnvPhase)
}

// routerFallbackPinned is routerPhasePinned for `fallback`:
// PVE_NETWORK_MIGRATION_FALLBACK in the router's environment beats the
// file's fallback_enabled.
func (a *app) routerFallbackPinned(target bool) int {
	r := a.routerSeen
	if r == nil || config.Source(r.GetFallbackSource()) != config.SourceEnv || r.GetFallbackEnabled() == target {
		return ExitOK
	}
	return a.failf([]string{
		fmt.Sprintf("remove the override (systemctl show pve-migration-router -p Environment; systemctl revert pve-migration-router) and restart the router; check with: %s status", prog),
	}, "the file now says fallback_enabled = %t, but the router at %s serves %t from its environment (%s), which beats the file: this change has no effect there",
		target, a.target.router, r.GetFallbackEnabled(), config.EnvFallback)
}
