// Package nodestate is how the routers of a PVE cluster tell each other,
// and the operator, what they serve: each router writes one small JSON
// file, DIR/nodes/NAME/network-migration.state, into the directory of the
// config file (/etc/pve, the cluster file system pmxcfs replicates), and
// `migration-ctl status --cluster` joins them. pmxcfs is the store and
// corosync the protocol: there is nothing of our own to run or to break.
//
// The file holds no secret: phases, digests, times, category names and
// counters only.
package nodestate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// FileName is the state file's name inside DIR/nodes/NAME.
const FileName = "network-migration.state"

// Version is the state file format this build writes. A reader reports a
// file with a higher version instead of guessing what it means.
const Version = 1

// Phase sources beyond config.Source's default, file and env.
const (
	// SourceNode: the node's [nodes.NAME] table.
	SourceNode = "node"
	// SourceKillSwitch: the node-local kill switch overrides everything.
	SourceKillSwitch = "kill-switch"
)

// Path is where node's state file lives under dir (the config file's
// directory).
func Path(dir, node string) string {
	return filepath.Join(dir, "nodes", node, FileName)
}

// State is the JSON of one state file.
type State struct {
	Version int    `json:"version"`
	Node    string `json:"node"`
	// Phase is what this node serves now: perl-only while the kill
	// switch is on, else its effective phase.
	Phase string `json:"phase"`
	// PhaseSource is where Phase comes from: "kill-switch", "env",
	// "node" (its [nodes.NAME] table), "file" or "default".
	PhaseSource string `json:"phase_source"`
	// ConfiguredPhase is the phase the loaded config gives this node,
	// kill switch aside.
	ConfiguredPhase string `json:"configured_phase"`
	KillSwitch      bool   `json:"kill_switch"`
	ConfigPath      string `json:"config_path"`
	// ConfigDigest identifies what the loaded config configures (see
	// config.Snapshot.Digest), to compare with the file as it is now.
	ConfigDigest   string    `json:"config_digest"`
	ConfigLoadedAt time.Time `json:"config_loaded_at"`
	// LastReload is the result of the last reload attempt ("ok",
	// "unchanged", "error") and, for "error", its message.
	LastReload      string   `json:"last_reload,omitempty"`
	LastReloadError string   `json:"last_reload_error,omitempty"`
	Gate            Gate     `json:"gate"`
	Counters        Counters `json:"counters"`
	RouterVersion   string   `json:"router_version,omitempty"`
	// StartedAt is when the router started; WrittenAt when it wrote this
	// file. Stopped is set by the last write of a clean shutdown.
	StartedAt time.Time `json:"started_at"`
	WrittenAt time.Time `json:"written_at"`
	Stopped   bool      `json:"stopped,omitempty"`
	// Interval is the longest time between two writes, in seconds; a
	// reader calls the file stale well past it.
	IntervalSeconds float64 `json:"interval_seconds"`
}

// Gate is the gate's part of the state: the categories tripped on this
// node.
type Gate struct {
	Tripped []string `json:"tripped"`
}

// Counters are the router's request counters since it started.
type Counters struct {
	Requests    uint64 `json:"requests"`
	ServedRust  uint64 `json:"served_rust"`
	ServedPerl  uint64 `json:"served_perl"`
	Fallbacks   uint64 `json:"fallbacks"`
	RustErrors  uint64 `json:"rust_errors"`
	PerlErrors  uint64 `json:"perl_errors"`
	RustDecided uint64 `json:"rust_decided"`
}

// Encode returns the file's bytes.
func (s *State) Encode() ([]byte, error) {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode node state: %w", err)
	}
	return append(b, '\n'), nil
}

// Decode parses a state file. A file of a future version is an error that
// says so, because its fields may not mean what this build thinks.
func Decode(data []byte) (*State, error) {
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("corrupt state file: %w", err)
	}
	switch {
	case s.Version > Version:
		return &s, fmt.Errorf("state file version %d is newer than this migration-ctl understands (%d): upgrade migration-ctl", s.Version, Version)
	case s.Version < 1:
		return nil, errors.New("corrupt state file: no version")
	case s.Node == "":
		return nil, errors.New("corrupt state file: no node name")
	}
	return &s, nil
}

// WriteFile replaces path with data atomically, the way pmxcfs wants it: a
// temporary file in the same directory, then a rename, so a reader on any
// node sees the old or the new file, never half of one. The directory is
// created when missing (on PVE, /etc/pve/nodes/NAME already exists).
func WriteFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, FileName+".tmp.*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	ok = true
	return nil
}

// Entry is one state file as read back: its State, or why it could not be
// used (State may still be set for a future version).
type Entry struct {
	Node  string
	Path  string
	State *State
	Err   error
}

// ReadAll reads every DIR/nodes/*/network-migration.state, sorted by node.
// Problems with single files are reported per entry, never as a failure:
// one broken node must not hide the others.
func ReadAll(dir string) ([]Entry, error) {
	nodes, err := os.ReadDir(filepath.Join(dir, "nodes"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read node states: %w", err)
	}
	var out []Entry
	for _, n := range nodes {
		if !n.IsDir() {
			continue
		}
		p := Path(dir, n.Name())
		data, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue // a PVE node directory of a node without a router
		}
		e := Entry{Node: n.Name(), Path: p}
		if err != nil {
			e.Err = err
		} else {
			e.State, e.Err = Decode(data)
			if e.State != nil && e.State.Node != n.Name() && e.Err == nil {
				e.Err = fmt.Errorf("state file names node %q but lies under nodes/%s (copied from another node?)", e.State.Node, n.Name())
			}
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Node, b.Node) })
	return out, nil
}
