package routerapp

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/internal/killswitch"
	"github.com/pve-migration/router/internal/localstate"
	"github.com/pve-migration/router/internal/nodestate"
	"github.com/pve-migration/router/internal/outcome"
	"github.com/pve-migration/router/routing"
	"github.com/pve-migration/router/server"
)

// stateFileOff is the --state-file value that turns the state file off.
const stateFileOff = "off"

// defaultNode is the short host name, which is how PVE names a node
// (pvecm nodes, /etc/pve/nodes/NAME): "pve1" of "pve1.example.com".
func defaultNode() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	short, _, _ := strings.Cut(h, ".")
	return short
}

// validateNode checks --node, --kill-switch and --state-interval.
func (f *flags) validateNode() error {
	var errs []error
	if !config.ValidNodeName(f.node) {
		msg := config.NodeNameError(f.node)
		if f.node == "" {
			msg = "no node name: the host name is unusable; pass --node NAME as PVE names this node (pvecm nodes)"
		}
		errs = append(errs, fmt.Errorf("--node: %s", msg))
	}
	if f.killSwitch == "" {
		errs = append(errs, errors.New("--kill-switch: give a path (default "+killswitch.DefaultPath+")"))
	} else if abs, err := filepath.Abs(f.killSwitch); err == nil {
		// Reported in status as absolute: migration-ctl, run from another
		// directory, creates the file the router watches.
		f.killSwitch = abs
	}
	if f.stateInterval <= 0 {
		errs = append(errs, fmt.Errorf("--state-interval %s: give a positive interval", f.stateInterval))
	}
	return errors.Join(errs...)
}

// nodeRuntime is the router's part in a PVE cluster: its node name, the
// kill switch and the state file. It implements server.NodeSource.
type nodeRuntime struct {
	node     string
	ksPath   string
	local    *localstate.State
	store    *config.Store
	stats    outcome.StatsSource
	writer   *nodestate.Writer // nil when the state file is off
	started  time.Time
	version  string
	log      *slog.Logger
	ksPeriod time.Duration
}

var _ server.NodeSource = (*nodeRuntime)(nil)

// newNodeRuntime sets up the kill switch (looked at once before anything
// is served) and the state file writer. It chains onto store.OnReload, so
// call it after that is set.
func newNodeRuntime(f *flags, cfgPath string, store *config.Store, local *localstate.State, stats outcome.StatsSource, log *slog.Logger) *nodeRuntime {
	n := &nodeRuntime{node: f.node, ksPath: f.killSwitch, local: local, store: store, stats: stats,
		started: time.Now().UTC(), version: Version, log: log}
	on, err := killswitch.On(n.ksPath)
	if err != nil {
		log.Warn("kill switch cannot be examined; treating it as on", "path", n.ksPath, "error", err)
	}
	local.SetKillSwitch(on)
	if on {
		log.Warn("kill switch on at start: every request on this node goes to perl", "path", n.ksPath)
	}
	n.warnNodeTableCase(store.Current())
	prevReload := store.OnReload
	store.OnReload = func(result string, snap *config.Snapshot, err error) {
		if prevReload != nil {
			prevReload(result, snap, err)
		}
		if result == config.ResultOK {
			n.warnNodeTableCase(snap)
		}
	}

	statePath := f.stateFile
	switch {
	case statePath == stateFileOff:
		return n
	case statePath == "":
		dir := filepath.Dir(cfgPath)
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			// Not a PVE node (no /etc/pve): never create the cluster
			// file system's directory ourselves.
			log.Info("node state file off: the config file's directory does not exist", "dir", dir)
			return n
		}
		statePath = nodestate.Path(dir, n.node)
	}
	n.writer = nodestate.NewWriter(nodestate.WriterOptions{Path: statePath, Build: n.build, Interval: f.stateInterval, Logger: log})
	prev := store.OnReload
	store.OnReload = func(result string, snap *config.Snapshot, err error) {
		if prev != nil {
			prev(result, snap, err)
		}
		n.writer.Kick()
	}
	local.OnChange(func(routing.Local) { n.writer.Kick() })
	return n
}

// warnNodeTableCase logs a `[nodes.NAME]` table that names this node in
// other letter case: node names are case-sensitive (as /etc/pve/nodes/NAME
// is), so such a table does not apply here, and an operator who pinned
// "PVE1" to perl-only would otherwise find pve1 on the top-level phase.
func (n *nodeRuntime) warnNodeTableCase(snap *config.Snapshot) {
	if name := nodeTableCaseMismatch(snap, n.node); name != "" {
		n.log.Warn("a [nodes."+name+"] table names this node in other letter case and does NOT apply here: node names are case-sensitive",
			"node", n.node, "table", name, "phase_in_force", snap.Policy.EffectivePhase().String())
	}
}

// nodeTableCaseMismatch returns the name of a node table that equals node
// but for letter case, when no table names node exactly.
func nodeTableCaseMismatch(snap *config.Snapshot, node string) string {
	if snap == nil || node == "" {
		return ""
	}
	if _, ok := snap.FileNodes[node]; ok {
		return ""
	}
	for name := range snap.FileNodes {
		if strings.EqualFold(name, node) {
			return name
		}
	}
	return ""
}

// run starts the kill-switch watcher and the state file writer.
func (n *nodeRuntime) run(ctx context.Context, start func(string, func() error)) {
	start("kill switch", func() error {
		killswitch.Watch(ctx, n.ksPath, n.ksPeriod, func(on bool) { n.local.SetKillSwitch(on) }, n.log)
		return nil
	})
	if n.writer != nil {
		start("state file", func() error { n.writer.Run(ctx); return nil })
	}
}

// phase is the phase in force on this node and its source, and the phase
// the config gives it (kill switch aside).
func (n *nodeRuntime) phase(snap *config.Snapshot, l routing.Local) (inForce, configured routing.Phase, source string) {
	p := snap.Policy
	p.Local = l
	configured = p.EffectivePhase()
	source = string(snap.PhaseSource)
	if _, ok := p.Nodes[n.node]; ok && snap.PhaseSource != config.SourceEnv {
		source = nodestate.SourceNode
	}
	if l.KillSwitch {
		return routing.PerlOnly, configured, nodestate.SourceKillSwitch
	}
	return configured, configured, source
}

// build is the state file's content now. It holds no secret.
func (n *nodeRuntime) build() nodestate.State {
	snap := n.store.Current()
	l := n.local.Local()
	inForce, configured, source := n.phase(snap, l)
	st := nodestate.State{
		Node: n.node, Phase: inForce.String(), PhaseSource: source, ConfiguredPhase: configured.String(),
		KillSwitch: l.KillSwitch, ConfigPath: snap.Path, ConfigDigest: snap.Digest, ConfigLoadedAt: snap.LoadedAt.UTC(),
		RouterVersion: n.version, StartedAt: n.started,
	}
	if r := n.store.LastReload(); r.Result != "" {
		st.LastReload = r.Result
		if r.Err != nil {
			st.LastReloadError = r.Err.Error()
		}
	}
	for _, c := range l.Tripped.List() {
		st.Gate.Tripped = append(st.Gate.Tripped, c.String())
	}
	if n.stats != nil {
		s := n.stats.Stats()
		st.Counters = nodestate.Counters{
			Requests: s.TotalRequests, ServedRust: s.ByBackend["rust"].Requests, ServedPerl: s.ByBackend["perl"].Requests,
			Fallbacks: s.Fallbacks, RustErrors: s.ByBackend["rust"].Errors, PerlErrors: s.ByBackend["perl"].Errors,
			RustDecided: s.RustDecisions,
		}
	}
	return st
}

// NodeStatus implements server.NodeSource.
func (n *nodeRuntime) NodeStatus() server.NodeStatus {
	snap := n.store.Current()
	l := n.local.Local()
	inForce, _, source := n.phase(snap, l)
	out := server.NodeStatus{Node: n.node, EffectivePhase: inForce.String(), EffectivePhaseSource: source,
		KillSwitch: l.KillSwitch, KillSwitchPath: n.ksPath}
	if n.writer != nil {
		ws := n.writer.Status()
		out.StateFile = ws.Path
		if !ws.LastWrite.IsZero() {
			t := ws.LastWrite
			out.StateFileWrittenAt = &t
		}
		if ws.Err != nil {
			out.StateFileError = fmt.Sprintf("cannot write the state file since %s (routing is not affected): %v",
				ws.FailedSince.Format(time.RFC3339), ws.Err)
		}
	}
	return out
}
