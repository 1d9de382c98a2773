package ctl

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/internal/killswitch"
	"github.com/pve-migration/router/internal/nodestate"
	"github.com/pve-migration/router/internal/tomledit"
	"github.com/pve-migration/router/routing"
)

// phaseOptions are set-phase's flags.
type phaseOptions struct {
	dryRun, force, local bool
	node, killSwitch     string
	// killSwitchSet: --kill-switch was given (else it is the default).
	killSwitchSet bool
}

// setPhaseRouted sends set-phase to the right edit: the node-local kill
// switch (--local), one node's table (--node), the cluster-wide rollback
// that also resets every node table, or the top-level phase alone.
func (a *app) setPhaseRouted(cfg configFlag, arg string, o phaseOptions) int {
	target, err := routing.ParsePhase(arg)
	if err != nil {
		return a.usageError("set-phase", err.Error())
	}
	switch {
	case o.local:
		return a.setPhaseLocal(target, o)
	case o.node != "":
		if !config.ValidNodeName(o.node) {
			return a.usageError("set-phase", "--node: "+config.NodeNameError(o.node))
		}
		return a.setNodePhase(cfg, target, o)
	case target == routing.PerlOnly:
		return a.rollbackAll(cfg, arg, o)
	}
	code := a.setPhase(cfg, arg, o.dryRun, o.force)
	if code == ExitOK {
		a.noteNodeTables(cfg)
	}
	return code
}

// noteNodeTables reminds that node tables beat the top-level phase, so an
// operator who advances the cluster sees which nodes did not move.
func (a *app) noteNodeTables(cfg configFlag) {
	path, _ := cfg.resolve(a.getenv)
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	snap, err := config.Parse(path, data, nil)
	if err != nil || len(snap.FileNodes) == 0 {
		return
	}
	var own []string
	for n, ph := range snap.FileNodes {
		own = append(own, n+" "+ph.String())
	}
	slices.Sort(own)
	fmt.Fprintf(a.stdout, "note: nodes with their own [nodes.NAME] phase keep it: %s (change one with --node NAME)\n", strings.Join(own, ", "))
}

// setPhaseLocal creates the kill switch: the rollback of this node that
// needs no write to /etc/pve, so it works without quorum.
func (a *app) setPhaseLocal(target routing.Phase, o phaseOptions) int {
	if target != routing.PerlOnly {
		return a.usageError("set-phase", fmt.Sprintf("--local only rolls back (set-phase perl-only --local), not to %s: the kill switch sends everything to perl", target))
	}
	if o.node != "" {
		return a.usageError("set-phase", "--local acts on the node it runs on; run it there instead of passing --node")
	}
	ks, code := a.killSwitchPath(o.killSwitch, o.killSwitchSet, a.target)
	if code != ExitOK {
		return code
	}
	o.killSwitch = ks
	if o.dryRun {
		fmt.Fprintf(a.stdout, "dry run: would create the kill switch %s; nothing changed\n", o.killSwitch)
		return ExitOK
	}
	who := "unknown user"
	if u, err := user.Current(); err == nil {
		who = u.Username
	}
	note := fmt.Sprintf("created by %s set-phase perl-only --local, %s, %s\nwhile this file exists, every request on this node goes to perl\nremove it with: %s kill-switch off\n",
		prog, time.Now().UTC().Format(time.RFC3339), who, prog)
	already, err := killswitch.Create(o.killSwitch, note)
	if err != nil {
		return a.failf([]string{"run as root (the switch lives in /var/lib, outside /etc/pve)"}, "%v", err)
	}
	if already {
		fmt.Fprintf(a.stdout, "kill switch already on (%s): every request on this node goes to perl\n", o.killSwitch)
	} else {
		fmt.Fprintf(a.stdout, "kill switch on (%s): the router on this node sends every request to perl within a second (reason kill-switch)\n", o.killSwitch)
	}
	fmt.Fprintln(a.stdout, "only this node is affected; the config file was not changed. It survives a reboot.")
	fmt.Fprintf(a.stdout, "undo with: %s kill-switch off   (check: %s status)\n", prog, prog)
	return ExitOK
}

// nodeTable is the TOML table of a node's settings.
func nodeTable(node string) []string { return []string{"nodes", node} }

// setNodePhase edits only [nodes.NAME] phase, creating the table when it
// is missing; comments and every other byte stay.
func (a *app) setNodePhase(cfg configFlag, target routing.Phase, o phaseOptions) int {
	f, code := a.readForEdit(cfg)
	if f == nil {
		return code
	}
	hint := []string{"fix the file by hand, then check it with: " + prog + " validate --config " + f.path}
	top, topPresent, err := tomledit.Lookup(f.data, "phase")
	if err != nil {
		return a.failf(hint, "cannot edit %s: %v; nothing was changed", f.path, err)
	}
	nv, present, err := tomledit.LookupIn(f.data, nodeTable(o.node), "phase")
	if err != nil {
		return a.failf(hint, "cannot edit %s: %v; nothing was changed", f.path, err)
	}
	cur, curKnown := routing.PerlOnly, true
	curText := "perl-only (top level: built-in default)"
	switch {
	case present:
		if cur, err = routing.ParsePhase(nv.String()); err != nil {
			curKnown, curText = false, nv.Raw+" (invalid)"
		} else {
			curText = cur.String()
		}
	case topPresent:
		if cur, err = routing.ParsePhase(top.String()); err != nil {
			curKnown, curText = false, top.Raw+" (invalid top level)"
		} else {
			curText = cur.String() + " (top level)"
		}
	}
	defer a.envOverrideWarning(config.EnvPhase, "every phase")
	a.warnUnknownNode(f.path, o.node)
	if present && curKnown && cur == target {
		fmt.Fprintf(a.stdout, "phase of node %s is already %s in %s; nothing to change\n", o.node, target, f.path)
		return ExitOK
	}
	if !o.force && target != routing.PerlOnly {
		if !curKnown {
			return a.failf([]string{"pass --force to set " + target.String() + " anyway"},
				"node %s's current phase %s is not valid, so how far %s moves cannot be checked; nothing was changed", o.node, curText, target)
		}
		if target > cur+1 {
			return a.failf([]string{
				fmt.Sprintf("advance one phase at a time (next: %s set-phase %s --node %s)", prog, cur+1, o.node),
				"or pass --force to jump straight to " + target.String(),
			}, "%s is %d phases ahead of node %s's %s; nothing was changed", target, int(target-cur), o.node, cur)
		}
	}
	edited, err := tomledit.SetIn(f.data, nodeTable(o.node), "phase", target.String())
	if err != nil {
		return a.failf(hint, "cannot edit %s: %v; nothing was changed", f.path, err)
	}
	snap, ok := a.validateEdit(f, edited)
	if !ok {
		return ExitFailure
	}
	return a.commit(f, edited, o.dryRun, func() {
		fmt.Fprintf(a.stdout, "phase of node %s: %s → %s (only [nodes.%s] changes; other nodes keep theirs)\n", o.node, curText, a.style.bold(target.String()), o.node)
		if curKnown {
			a.printMoves(snap, &cur, target)
		} else {
			a.printMoves(snap, nil, target)
		}
	})
}

// warnUnknownNode warns when the cluster directory next to the config
// lists nodes and name is not one of them: probably a typo.
func (a *app) warnUnknownNode(cfgPath, name string) {
	dir := filepath.Join(filepath.Dir(cfgPath), "nodes")
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) == 0 {
		return
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() {
			if e.Name() == name {
				return
			}
			names = append(names, e.Name())
		}
	}
	msg := fmt.Sprintf("%s has no node %q (nodes: %s)", dir, name, strings.Join(names, ", "))
	if s := routing.Suggest(name, names); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	a.warnf("%s", msg)
}

// validateEdit parses an edited file with the router's loader (without
// this shell's environment) and prints every problem when it would not
// load.
func (a *app) validateEdit(f *configFile, edited []byte) (*config.Snapshot, bool) {
	snap, err := config.Parse(f.path, edited, nil)
	if err == nil {
		return snap, true
	}
	var ve *config.ValidationError
	if errors.As(err, &ve) {
		fmt.Fprintf(a.stderr, "error: %s would not load after this edit (%s); nothing was changed:\n", f.path, plural(len(ve.Problems), "problem"))
		for _, p := range ve.Problems {
			fmt.Fprintf(a.stderr, "  %s\n", p)
		}
	} else {
		fmt.Fprintf(a.stderr, "error: %s would not load after this edit: %v; nothing was changed\n", f.path, err)
	}
	fmt.Fprintf(a.stderr, "hint: fix those lines first (%s validate --config %s); the routers keep their last good configuration meanwhile\n", prog, f.path)
	fmt.Fprintf(a.stderr, "hint: to roll back this node without the file: %s set-phase perl-only --local\n", prog)
	return nil, false
}

// rollbackAll is `set-phase perl-only` without --node: the top-level
// phase and every [nodes.NAME] phase become perl-only in one atomic write,
// so the rollback stays one command and no node is left behind.
func (a *app) rollbackAll(cfg configFlag, arg string, o phaseOptions) int {
	f, code := a.readForEdit(cfg)
	if f == nil {
		return code
	}
	var pending []string // node tables not yet perl-only
	var before []string
	if snap, err := config.Parse(f.path, f.data, nil); err == nil {
		for name, ph := range snap.FileNodes {
			if ph != routing.PerlOnly {
				pending = append(pending, name)
				before = append(before, name+" "+ph.String())
			}
		}
	}
	if len(pending) == 0 {
		return a.setPhase(cfg, arg, o.dryRun, o.force) // no node table to reset
	}
	slices.Sort(pending)
	slices.Sort(before)
	edited := f.data
	for _, name := range pending {
		var err error
		if edited, err = tomledit.SetIn(edited, nodeTable(name), "phase", routing.PerlOnly.String()); err != nil {
			return a.failf([]string{"edit the file by hand, then check it with: " + prog + " validate --config " + f.path},
				"cannot edit %s: %v; nothing was changed", f.path, err)
		}
	}
	topText := "perl-only"
	if v, present, err := tomledit.Lookup(f.data, "phase"); err == nil && present {
		topText = v.String()
	}
	defer a.envOverrideWarning(config.EnvPhase, "every phase")
	nf := *f
	nf.data = edited
	edited, _, ok := a.edit(&nf, "phase", routing.PerlOnly.String())
	if !ok {
		return ExitFailure
	}
	return a.commit(f, edited, o.dryRun, func() {
		fmt.Fprintf(a.stdout, "phase: %s → %s\n", topText, a.style.bold("perl-only"))
		fmt.Fprintf(a.stdout, "node tables: %s → %s\n", strings.Join(before, ", "), a.style.bold("perl-only"))
		fmt.Fprintf(a.stdout, "every node rolls back with this one atomic write of %s: all requests go to perl on every node\n", f.path)
		fmt.Fprintf(a.stdout, "check that every node picked it up: %s status --cluster\n", prog)
	})
}

func killSwitchCommand() *command {
	return &command{
		name:    "kill-switch",
		args:    "on|off",
		summary: "turn this node's kill switch on or off (rollback without quorum)",
		details: `The kill switch is a file on this node's own disk, outside /etc/pve: while it
exists, the router on this node sends every request to perl (reason
kill-switch), within a second, without a restart. It is the rollback that
works when /etc/pve is read-only because the node lost quorum, and it
survives a reboot. Its content is never read.

"on" is the same as: ` + prog + ` set-phase perl-only --local.
"off" removes it; the router follows the config file again.`,
		examples: []string{
			prog + " kill-switch off",
			prog + " kill-switch on --kill-switch /var/lib/pve-migration-router/perl-only",
		},
		minArgs: 1,
		maxArgs: 1,
		define: func(fs *flag.FlagSet) runFunc {
			path := fs.String("kill-switch", killswitch.DefaultPath, "the kill switch file `PATH` (the router's --kill-switch)")
			force := fs.Bool("force", false, "use --kill-switch even where the running router watches another file")
			target := defineEditTarget(fs, force)
			return func(a *app, _ configFlag, args []string) int {
				a.target = target()
				explicit := flagSet(fs, "kill-switch")
				switch strings.ToLower(args[0]) {
				case "on":
					return a.setPhaseLocal(routing.PerlOnly, phaseOptions{killSwitch: *path, killSwitchSet: explicit})
				case "off":
					p, code := a.killSwitchPath(*path, explicit, a.target)
					if code != ExitOK {
						return code
					}
					*path = p
					wasOn, err := killswitch.Remove(*path)
					if err != nil {
						return a.failf([]string{"run as root"}, "%v", err)
					}
					if !wasOn {
						fmt.Fprintf(a.stdout, "kill switch was not on (%s does not exist); nothing to do\n", *path)
						return ExitOK
					}
					fmt.Fprintf(a.stdout, "kill switch off (%s removed): the router on this node follows the config file again within a second\n", *path)
					fmt.Fprintf(a.stdout, "check with: %s status\n", prog)
					return ExitOK
				}
				return a.usageError("kill-switch", fmt.Sprintf("expected on or off, got %q", args[0]))
			}
		},
	}
}

// clusterStatus is `status --cluster`: every node's state file joined
// with the config file as it is now.
func (a *app) clusterStatus(cfg configFlag, jsonOut bool, staleAfter time.Duration) int {
	path, explicit := cfg.resolve(a.getenv)
	dir := filepath.Dir(path)
	entries, err := nodestate.ReadAll(dir)
	if err != nil {
		return a.failf(nil, "%v", err)
	}
	cv := nodestate.ConfigView{Path: path}
	data, rerr := os.ReadFile(path)
	switch {
	case rerr == nil, errors.Is(rerr, fs.ErrNotExist) && !explicit:
		// The file's own digest, without this shell's environment: the
		// routers compute theirs the same way.
		name := path
		if rerr != nil {
			name = ""
		}
		snap, perr := config.Parse(name, data, nil)
		if perr != nil {
			cv.Err = perr
			break
		}
		cv.Digest, cv.Phase, cv.Nodes = snap.Digest, snap.Policy.Phase.String(), map[string]string{}
		for n, ph := range snap.FileNodes {
			cv.Nodes[n] = ph.String()
		}
	default:
		cv.Err = rerr
	}
	v := nodestate.Join(entries, cv, time.Now(), staleAfter)
	if len(v.Nodes) == 0 {
		v.OK = false
	}
	if jsonOut {
		a.printJSON(v)
	} else {
		a.printCluster(v, dir)
	}
	if !v.OK {
		return ExitFailure
	}
	return ExitOK
}

func (a *app) printCluster(v nodestate.ClusterView, dir string) {
	s := a.style
	fmt.Fprintf(a.stdout, "config  %s: phase %s", v.Config, v.Phase)
	if v.ConfigError != "" {
		fmt.Fprintf(a.stdout, " %s: %s", s.bad("does not load"), firstLine(v.ConfigError))
	}
	fmt.Fprintln(a.stdout)
	if len(v.Nodes) == 0 {
		fmt.Fprintf(a.stdout, "no node has reported: no state file under %s (are the routers running with --config in this directory?)\n", filepath.Join(dir, "nodes"))
		return
	}
	t := &table{}
	t.add("node", "serves", "configured", "config", "reported", "kill switch")
	for _, n := range v.Nodes {
		cur := s.good("current")
		if !n.ConfigCurrent {
			cur = s.warn("not current")
		}
		rep := "never"
		if n.WrittenAt != nil {
			rep = fmt.Sprintf("%s ago", time.Duration(n.AgeSeconds*float64(time.Second)).Round(time.Second))
		}
		if n.Stale {
			rep = s.bad("stale") + " (" + rep + ")"
		}
		ks := "off"
		if n.KillSwitch {
			ks = s.warn("ON")
		}
		serves := n.Phase
		if serves == "" {
			serves = "?"
		} else if n.PhaseSource != "" {
			serves += " (" + n.PhaseSource + ")"
		}
		t.add(n.Node, serves, n.ConfiguredPhase, cur, rep, ks)
	}
	t.write(a.stdout, "")
	for _, n := range v.Nodes {
		for _, p := range n.Problems {
			fmt.Fprintf(a.stdout, "%s: %s\n", n.Node, p)
		}
	}
	if v.OK {
		fmt.Fprintf(a.stdout, "%s every node serves the current file\n", s.good("OK:"))
	}
}

// nodeStatView is the router's own node in `status --json`.
type nodeStatView struct {
	Node                 string     `json:"node"`
	EffectivePhase       string     `json:"effective_phase"`
	EffectivePhaseSource string     `json:"effective_phase_source"`
	KillSwitchPath       string     `json:"kill_switch_path"`
	StateFile            string     `json:"state_file,omitempty"`
	StateFileWrittenAt   *time.Time `json:"state_file_written_at,omitempty"`
	StateFileError       string     `json:"state_file_error,omitempty"`
}

func nodeStatFrom(n interface {
	GetNode() string
	GetEffectivePhase() string
	GetEffectivePhaseSource() string
	GetKillSwitchPath() string
	GetStateFile() string
	GetStateFileError() string
}) *nodeStatView {
	if n == nil || n.GetNode() == "" {
		return nil
	}
	return &nodeStatView{Node: n.GetNode(), EffectivePhase: n.GetEffectivePhase(), EffectivePhaseSource: n.GetEffectivePhaseSource(),
		KillSwitchPath: n.GetKillSwitchPath(), StateFile: n.GetStateFile(), StateFileError: n.GetStateFileError()}
}

func (a *app) statusWithKillSwitch(cfg configFlag, addr string, timeout time.Duration, jsonOut bool, ks string) int {
	a.killSwitch = ks
	return a.status(cfg, addr, timeout, jsonOut)
}

// localKillSwitch fills in the kill switch from this node's file when the
// router cannot say.
func (a *app) localKillSwitch(v *statusView) {
	if a.killSwitch == "" {
		return
	}
	on, err := killswitch.On(a.killSwitch)
	v.KillSwitch = on
	if err != nil {
		v.Notes = append(v.Notes, err.Error())
	}
	if on {
		v.Notes = append(v.Notes, fmt.Sprintf("the kill switch %s exists: a router on this node sends every request to perl (%s kill-switch off)", a.killSwitch, prog))
	}
}

// nodeLines adds the node, kill switch and state file to status's table.
func (a *app) nodeLines(v *statusView, line func(k, format string, args ...any)) {
	s := a.style
	// Labels stay short: the table's first column is as wide as its
	// longest label.
	if n := v.Node; n != nil {
		line("node", "%s: serves %s (from %s)", n.Node, s.bold(n.EffectivePhase), n.EffectivePhaseSource)
	}
	if v.KillSwitch {
		path := a.killSwitch
		if v.Node != nil {
			path = v.Node.KillSwitchPath
		}
		line("kill", "%s: the kill switch sends every request on this node to perl (%s; undo: %s kill-switch off)", s.warn("ON"), path, prog)
	} else {
		line("kill", "kill switch off")
	}
	if n := v.Node; n != nil && n.StateFile != "" {
		if n.StateFileError != "" {
			line("state", "%s: %s", s.bad("not written"), n.StateFileError)
		} else {
			line("state", "%s", n.StateFile)
		}
	}
}
