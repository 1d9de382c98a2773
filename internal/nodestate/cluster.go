package nodestate

import (
	"fmt"
	"slices"
	"time"
)

// ConfigView is what the cluster-wide config file says now, as
// migration-ctl parsed it (without environment overrides).
type ConfigView struct {
	// Path is the file; Digest its config.Snapshot.Digest, "" when the
	// file does not load.
	Path   string
	Digest string
	// Phase is the top-level phase; Nodes the [nodes.NAME] phases.
	Phase string
	Nodes map[string]string
	// Err is why the file does not load, if it does not.
	Err error
}

// NodeView is one node in `status --cluster`.
type NodeView struct {
	Node string `json:"node"`
	// Phase is what the node serves now (from its state file); "" when
	// unknown.
	Phase       string `json:"phase"`
	PhaseSource string `json:"phase_source,omitempty"`
	// ConfiguredPhase is what the current file gives this node: its
	// [nodes.NAME] phase, else the top-level phase.
	ConfiguredPhase string `json:"configured_phase"`
	// NodeTable is true when the file has a [nodes.NAME] table for it.
	NodeTable  bool `json:"node_table"`
	KillSwitch bool `json:"kill_switch"`
	// ConfigCurrent is true when the node runs the file as it is now.
	ConfigCurrent bool `json:"config_current"`
	// Stale is true when the node has stopped reporting: its router was
	// stopped, or its last write is older than three heartbeats.
	Stale       bool       `json:"stale"`
	Stopped     bool       `json:"stopped"`
	WrittenAt   *time.Time `json:"written_at,omitempty"`
	AgeSeconds  float64    `json:"age_seconds"`
	GateTripped []string   `json:"gate_tripped"`
	Counters    *Counters  `json:"counters,omitempty"`
	StateFile   string     `json:"state_file"`
	// OK is true when the node serves the current file, reports, and has
	// no kill switch or state file problem.
	OK bool `json:"ok"`
	// Problems say in words what is not OK.
	Problems []string `json:"problems"`
}

// ClusterView is `status --cluster --json`.
type ClusterView struct {
	Config       string     `json:"config"`
	ConfigDigest string     `json:"config_digest"`
	ConfigError  string     `json:"config_error,omitempty"`
	Phase        string     `json:"phase"`
	Nodes        []NodeView `json:"nodes"`
	// OK is true when every node is OK.
	OK bool `json:"ok"`
}

// Join combines the state files with the config file as it is now. It is
// pure: the caller reads the files and passes the clock. staleAfter <= 0
// means three of each node's own heartbeat intervals.
func Join(entries []Entry, cfg ConfigView, now time.Time, staleAfter time.Duration) ClusterView {
	v := ClusterView{Config: cfg.Path, ConfigDigest: cfg.Digest, Phase: cfg.Phase, OK: true, Nodes: []NodeView{}}
	if cfg.Err != nil {
		v.ConfigError = cfg.Err.Error()
	}
	seen := map[string]bool{}
	for _, e := range entries {
		seen[e.Node] = true
		v.Nodes = append(v.Nodes, nodeView(e, cfg, now, staleAfter))
	}
	for name := range cfg.Nodes {
		if !seen[name] {
			n := NodeView{Node: name, NodeTable: true, ConfiguredPhase: cfg.Nodes[name], Stale: true,
				GateTripped: []string{}, Problems: []string{"no state file: no router has reported for this node (not started, or --node differs)"}}
			v.Nodes = append(v.Nodes, n)
		}
	}
	slices.SortFunc(v.Nodes, func(a, b NodeView) int {
		if a.Node < b.Node {
			return -1
		}
		if a.Node > b.Node {
			return 1
		}
		return 0
	})
	for _, n := range v.Nodes {
		v.OK = v.OK && n.OK
	}
	return v
}

func nodeView(e Entry, cfg ConfigView, now time.Time, staleAfter time.Duration) NodeView {
	n := NodeView{Node: e.Node, StateFile: e.Path, GateTripped: []string{}, Problems: []string{}}
	n.ConfiguredPhase = cfg.Phase
	if p, ok := cfg.Nodes[e.Node]; ok {
		n.ConfiguredPhase, n.NodeTable = p, true
	}
	if e.Err != nil {
		n.Stale = true
		n.Problems = append(n.Problems, fmt.Sprintf("state file %s: %v", e.Path, e.Err))
		return n
	}
	s := e.State
	n.Phase, n.PhaseSource, n.KillSwitch, n.Stopped = s.Phase, s.PhaseSource, s.KillSwitch, s.Stopped
	w := s.WrittenAt
	n.WrittenAt = &w
	age := now.Sub(s.WrittenAt)
	n.AgeSeconds = age.Round(100 * time.Millisecond).Seconds()
	limit := staleAfter
	if limit <= 0 {
		iv := time.Duration(s.IntervalSeconds * float64(time.Second))
		if iv <= 0 {
			iv = DefaultInterval
		}
		limit = 3 * iv
	}
	if s.Gate.Tripped != nil {
		n.GateTripped = s.Gate.Tripped
	}
	c := s.Counters
	n.Counters = &c
	n.ConfigCurrent = cfg.Digest != "" && s.ConfigDigest == cfg.Digest
	switch {
	case s.Stopped:
		n.Stale = true
		n.Problems = append(n.Problems, fmt.Sprintf("router stopped at %s", s.WrittenAt.Format(time.RFC3339)))
	case age > limit:
		n.Stale = true
		n.Problems = append(n.Problems, fmt.Sprintf("no report for %s (router down, node down, or pmxcfs not replicating)", age.Round(time.Second)))
	}
	if !n.ConfigCurrent && cfg.Digest != "" {
		n.Problems = append(n.Problems, "has not loaded the current config file (reload pending, or rejected: see last reload on that node)")
	}
	if s.LastReload == "error" && s.LastReloadError != "" {
		n.Problems = append(n.Problems, "last reload failed: "+s.LastReloadError)
	}
	if s.KillSwitch {
		n.Problems = append(n.Problems, "kill switch on: everything goes to perl on this node")
	}
	if len(n.GateTripped) > 0 {
		n.Problems = append(n.Problems, fmt.Sprintf("gate tripped: %v", n.GateTripped))
	}
	n.OK = len(n.Problems) == 0
	return n
}
