package nodestate

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func writeState(t *testing.T, dir string, s State) {
	t.Helper()
	if s.Version == 0 {
		s.Version = Version
	}
	data, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(Path(dir, s.Node), data); err != nil {
		t.Fatal(err)
	}
}

func TestDecode(t *testing.T) {
	cases := []struct {
		name, data, wantErr string
		wantState           bool
	}{
		{"good", `{"version":1,"node":"pve1","phase":"rust-read-only"}`, "", true},
		{"corrupt", `{"version":1,"node":`, "corrupt state file", false},
		{"no version", `{"node":"pve1"}`, "no version", false},
		{"no node", `{"version":1}`, "no node name", false},
		{"future version", `{"version":7,"node":"pve1","phase":"x"}`, "version 7 is newer", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := Decode([]byte(c.data))
			if (c.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.wantErr)) {
				t.Fatalf("Decode err = %v, want %q", err, c.wantErr)
			}
			if (s != nil) != c.wantState {
				t.Errorf("state = %v, want present %t", s, c.wantState)
			}
		})
	}
}

// TestJoin: a broken or future state file is reported on its node and
// never hides the others; staleness and config currency are flagged.
func TestJoin(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	writeState(t, dir, State{Node: "pve1", Phase: "rust-sdn", PhaseSource: SourceNode, ConfigDigest: "d2", WrittenAt: now.Add(-5 * time.Second), IntervalSeconds: 30})
	writeState(t, dir, State{Node: "pve2", Phase: "rust-read-only", ConfigDigest: "d1", WrittenAt: now.Add(-5 * time.Second), IntervalSeconds: 30})
	writeState(t, dir, State{Node: "pve3", Phase: "perl-only", ConfigDigest: "d2", WrittenAt: now.Add(-200 * time.Second), IntervalSeconds: 30})
	writeState(t, dir, State{Node: "pve4", Phase: "perl-only", PhaseSource: SourceKillSwitch, KillSwitch: true, ConfigDigest: "d2", WrittenAt: now, IntervalSeconds: 30})
	writeState(t, dir, State{Node: "pve5", Phase: "perl-only", ConfigDigest: "d2", WrittenAt: now, Stopped: true})
	if err := os.MkdirAll(filepath.Join(dir, "nodes", "pve6"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(Path(dir, "pve6"), []byte("{garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	writeState(t, dir, State{Version: 9, Node: "pve7", WrittenAt: now})
	if err := os.MkdirAll(filepath.Join(dir, "nodes", "pve8"), 0o755); err != nil { // a node without router
		t.Fatal(err)
	}
	entries, err := ReadAll(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ConfigView{Path: "x.conf", Digest: "d2", Phase: "rust-read-only", Nodes: map[string]string{"pve1": "rust-sdn", "pve9": "perl-only"}}
	v := Join(entries, cfg, now, 0)
	type want struct {
		current, stale, ok bool
		configured, prob   string
	}
	wants := map[string]want{
		"pve1": {true, false, true, "rust-sdn", ""},
		"pve2": {false, false, false, "rust-read-only", "has not loaded the current config"},
		"pve3": {true, true, false, "rust-read-only", "no report for 3m20s"},
		"pve4": {true, false, false, "rust-read-only", "kill switch on"},
		"pve5": {true, true, false, "rust-read-only", "router stopped"},
		"pve6": {false, true, false, "rust-read-only", "corrupt state file"},
		"pve7": {false, true, false, "rust-read-only", "newer than this migration-ctl"},
		"pve9": {false, true, false, "perl-only", "no state file"},
	}
	if len(v.Nodes) != len(wants) {
		t.Fatalf("%d nodes, want %d: %+v", len(v.Nodes), len(wants), v.Nodes)
	}
	for _, n := range v.Nodes {
		t.Run(n.Node, func(t *testing.T) {
			w, ok := wants[n.Node]
			if !ok {
				t.Fatalf("unexpected node %s", n.Node)
			}
			if n.ConfigCurrent != w.current || n.Stale != w.stale || n.OK != w.ok || n.ConfiguredPhase != w.configured {
				t.Errorf("%+v: want current %t, stale %t, ok %t, configured %s", n, w.current, w.stale, w.ok, w.configured)
			}
			if w.prob != "" && !strings.Contains(strings.Join(n.Problems, "; "), w.prob) {
				t.Errorf("problems %q do not mention %q", n.Problems, w.prob)
			}
		})
	}
	if v.OK {
		t.Error("cluster OK with broken nodes")
	}
}

// TestWriterKeepsGoingWhenWritesFail: a read-only pmxcfs makes writes
// fail; the writer reports it in Status, keeps trying, and recovers.
func TestWriterKeepsGoingWhenWritesFail(t *testing.T) {
	path := Path(t.TempDir(), "pve1")
	var fail atomic.Bool
	fail.Store(true)
	var builds atomic.Int64
	w := NewWriter(WriterOptions{
		Path:     path,
		Interval: time.Hour,
		Build:    func() State { builds.Add(1); return State{Node: "pve1", Phase: "perl-only"} },
		Write: func(p string, data []byte) error {
			if fail.Load() {
				return &os.PathError{Op: "open", Path: p, Err: syscall.EROFS}
			}
			return WriteFile(p, data)
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	waitUntil(t, func() bool { return w.Status().Err != nil })
	if !errors.Is(w.Status().Err, syscall.EROFS) || w.Status().FailedSince.IsZero() {
		t.Fatalf("status %+v: want EROFS with FailedSince", w.Status())
	}
	fail.Store(false)
	w.Kick()
	waitUntil(t, func() bool { return w.Status().Err == nil && !w.Status().LastWrite.IsZero() })
	cancel()
	<-done
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Decode(data)
	if err != nil || !s.Stopped || s.Version != Version || s.Gate.Tripped == nil {
		t.Errorf("final state %+v, %v: want stopped, version %d, gate list", s, err, Version)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("%d files in the node directory, want 1 (no temporary files)", len(entries))
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
