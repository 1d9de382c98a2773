package ctl

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/internal/nodestate"
	"github.com/pve-migration/router/routing"
)

const clusterConf = `# network migration, cluster-wide
phase = "rust-read-only" # since 2026-03-02

[features]
enable_sdn_migration = false

# pve1 went first
[nodes.pve1]
phase = "rust-basic-write" # ticket 4711
`

func writeConf(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "network-migration.conf")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func loadFile(t *testing.T, path string) *config.Snapshot {
	t.Helper()
	snap, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func TestSetPhaseNode(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		code     int
		top      routing.Phase
		nodes    map[string]routing.Phase
		out, err string
	}{
		{"existing table", []string{"set-phase", "rust-advanced", "--node", "pve1"}, 0, routing.RustReadOnly,
			map[string]routing.Phase{"pve1": routing.RustAdvanced}, "phase of node pve1: rust-basic-write → rust-advanced", ""},
		{"new table", []string{"set-phase", "rust-basic-write", "--node", "pve2"}, 0, routing.RustReadOnly,
			map[string]routing.Phase{"pve1": routing.RustBasicWrite, "pve2": routing.RustBasicWrite}, "rust-read-only (top level) → rust-basic-write", ""},
		{"node back to perl-only", []string{"set-phase", "perl-only", "--node", "pve1"}, 0, routing.RustReadOnly,
			map[string]routing.Phase{"pve1": routing.PerlOnly}, "→ perl-only", ""},
		{"two phases ahead", []string{"set-phase", "rust-sdn", "--node", "pve1"}, 1, routing.RustReadOnly,
			map[string]routing.Phase{"pve1": routing.RustBasicWrite}, "", "2 phases ahead of node pve1's rust-basic-write"},
		{"forced", []string{"set-phase", "rust-sdn", "--node", "pve1", "--force"}, 0, routing.RustReadOnly,
			map[string]routing.Phase{"pve1": routing.RustSDN}, "", ""},
		{"invalid node", []string{"set-phase", "rust-read-only", "--node", "pve_2"}, 2, routing.RustReadOnly,
			map[string]routing.Phase{"pve1": routing.RustBasicWrite}, "", `invalid node name "pve_2"`},
		{"dry run", []string{"set-phase", "rust-read-only", "--node", "pve3", "--dry-run"}, 0, routing.RustReadOnly,
			map[string]routing.Phase{"pve1": routing.RustBasicWrite}, "+[nodes.pve3]", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeConf(t, clusterConf)
			r := run(t, nil, "", append(c.args, "--config", path)...)
			if r.code != c.code || !strings.Contains(r.stdout, c.out) || !strings.Contains(r.stderr, c.err) {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, c.code, r.stdout, r.stderr)
			}
			snap := loadFile(t, path)
			if snap.Policy.Phase != c.top || len(snap.FileNodes) != len(c.nodes) {
				t.Errorf("top %s, nodes %v; want %s, %v", snap.Policy.Phase, snap.FileNodes, c.top, c.nodes)
			}
			for n, ph := range c.nodes {
				if snap.FileNodes[n] != ph {
					t.Errorf("node %s: %s, want %s", n, snap.FileNodes[n], ph)
				}
			}
			data, _ := os.ReadFile(path)
			for _, keep := range []string{"# since 2026-03-02", "# pve1 went first", "# network migration, cluster-wide"} {
				if !strings.Contains(string(data), keep) {
					t.Errorf("comment %q lost:\n%s", keep, data)
				}
			}
		})
	}
}

func TestSetPhaseTopLevelNotesNodeTables(t *testing.T) {
	path := writeConf(t, clusterConf)
	r := run(t, nil, "", "set-phase", "rust-basic-write", "--config", path)
	if r.code != 0 || !strings.Contains(r.stdout, "note: nodes with their own [nodes.NAME] phase keep it: pve1 rust-basic-write") {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if snap := loadFile(t, path); snap.Policy.Phase != routing.RustBasicWrite || snap.FileNodes["pve1"] != routing.RustBasicWrite {
		t.Errorf("top %s, nodes %v", snap.Policy.Phase, snap.FileNodes)
	}
}

// TestRollbackResetsEveryNode: set-phase perl-only without --node sets the
// top level and every node table to perl-only in one write.
func TestRollbackResetsEveryNode(t *testing.T) {
	path := writeConf(t, clusterConf+"\n[nodes.pve3]\nphase = \"perl-only\"\n\n[nodes.pve2]\nphase = 'rust-read-only'\n")
	r := run(t, nil, "", "set-phase", "perl-only", "--config", path)
	if r.code != 0 || !strings.Contains(r.stdout, "node tables: pve1 rust-basic-write, pve2 rust-read-only → perl-only") ||
		!strings.Contains(r.stdout, "one atomic write") {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	snap := loadFile(t, path)
	if snap.Policy.Phase != routing.PerlOnly {
		t.Errorf("top-level phase %s", snap.Policy.Phase)
	}
	for _, n := range []string{"pve1", "pve2", "pve3"} {
		if ph, ok := snap.FileNodes[n]; !ok || ph != routing.PerlOnly {
			t.Errorf("node %s: %s (present %t), want perl-only", n, ph, ok)
		}
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), "# ticket 4711") || !strings.Contains(string(data), "phase = 'perl-only'") {
		t.Errorf("comments or quoting lost:\n%s", data)
	}
	// Again: nothing left to change.
	if r := run(t, nil, "", "set-phase", "perl-only", "--config", path); r.code != 0 || !strings.Contains(r.stdout, "already perl-only") {
		t.Errorf("second rollback: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestLocalKillSwitch(t *testing.T) {
	dir := t.TempDir()
	ks := filepath.Join(dir, "lib", "perl-only")
	path := writeConf(t, clusterConf)
	before, _ := os.ReadFile(path)
	// No router to ask (a router on the default address of this machine
	// would otherwise be asked which kill switch it watches).
	noRouter := closedAddr(t)
	r := run(t, nil, "", "set-phase", "perl-only", "--local", "--kill-switch", ks, "--config", path, "--router", noRouter)
	if r.code != 0 || !strings.Contains(r.stdout, "kill switch on") {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(ks); err != nil {
		t.Fatalf("kill switch not created: %v", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("--local changed the config file")
	}
	r = run(t, nil, "", "status", "--json", "--kill-switch", ks, "--config", path, "--router", closedAddr(t))
	var st map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st["kill_switch"] != true {
		t.Errorf("status --json kill_switch = %v (%v)\n%s", st["kill_switch"], err, r.stdout)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"set-phase", "rust-read-only", "--local"}, 2, "--local only rolls back"},
		{[]string{"set-phase", "perl-only", "--local", "--node", "pve2"}, 2, "--local acts on the node it runs on"},
		{[]string{"kill-switch", "maybe"}, 2, `expected on or off, got "maybe"`},
	} {
		if r := run(t, nil, "", append(c.args, "--kill-switch", ks)...); r.code != c.code || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d, %q", c.args, r.code, r.stderr, c.code, c.want)
		}
	}
	if r := run(t, nil, "", "kill-switch", "off", "--kill-switch", ks, "--router", noRouter); r.code != 0 || !strings.Contains(r.stdout, "kill switch off") {
		t.Fatalf("kill-switch off: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(ks); !os.IsNotExist(err) {
		t.Errorf("kill switch still there: %v", err)
	}
	if r := run(t, nil, "", "kill-switch", "off", "--kill-switch", ks, "--router", noRouter); r.code != 0 || !strings.Contains(r.stdout, "was not on") {
		t.Errorf("second off: exit %d\n%s", r.code, r.stdout)
	}
}

func TestExplainNode(t *testing.T) {
	path := writeConf(t, clusterConf)
	cases := []struct {
		node, method, path  string
		backend, reason, ph string
	}{
		{"pve1", "PUT", "/api2/json/nodes/pve1/network", "rust", "phase", "rust-basic-write"},
		{"pve2", "PUT", "/api2/json/nodes/pve2/network", "perl", "phase", "rust-read-only"},
		{"pve1", "GET", "/api2/json/nodes/pve2/network", "perl", "remote-node", "rust-basic-write"},
		{"pve2", "GET", "/api2/json/nodes/localhost/network", "rust", "phase", "rust-read-only"},
		{"", "PUT", "/api2/json/nodes/pve1/network", "perl", "phase", "rust-read-only"},
	}
	for _, c := range cases {
		t.Run(c.node+" "+c.method+" "+c.path, func(t *testing.T) {
			args := []string{"explain", c.method, c.path, "--json", "--config", path}
			if c.node != "" {
				args = append(args, "--node", c.node)
			}
			r := run(t, nil, "", args...)
			var out map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
				t.Fatalf("%v\n%s%s", err, r.stdout, r.stderr)
			}
			if out["backend"] != c.backend || out["reason"] != c.reason || out["phase"] != c.ph {
				t.Errorf("got %v/%v/%v, want %s/%s/%s", out["backend"], out["reason"], out["phase"], c.backend, c.reason, c.ph)
			}
		})
	}
	if r := run(t, nil, "", "explain", "GET", "/api2/json/nodes/pve2/network", "--node", "pve1", "--config", path); !strings.Contains(r.stdout, "another node") {
		t.Errorf("text explain does not say why:\n%s", r.stdout)
	}
}

// TestStatusClusterUnit covers status --cluster's file handling: a corrupt
// state file is reported on its node, never fatal, and exit 1 flags it.
func TestStatusClusterUnit(t *testing.T) {
	path := writeConf(t, clusterConf)
	dir := filepath.Dir(path)
	snap := loadFile(t, path)
	st := nodestate.State{Version: nodestate.Version, Node: "pve1", Phase: "rust-basic-write", PhaseSource: "node",
		ConfigDigest: snap.Digest, WrittenAt: time.Now().UTC(), IntervalSeconds: 30, Gate: nodestate.Gate{Tripped: []string{}}}
	data, _ := st.Encode()
	if err := nodestate.WriteFile(nodestate.Path(dir, "pve1"), data); err != nil {
		t.Fatal(err)
	}
	r := run(t, nil, "", "status", "--cluster", "--json", "--config", path)
	var v nodestate.ClusterView
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || r.code != 0 || !v.OK || len(v.Nodes) != 1 || !v.Nodes[0].ConfigCurrent {
		t.Fatalf("exit %d, %v: %+v\n%s", r.code, err, v, r.stderr)
	}
	if err := os.MkdirAll(filepath.Join(dir, "nodes", "pve2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(nodestate.Path(dir, "pve2"), []byte(`{"version": 99, "node": "pve2"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	r = run(t, nil, "", "status", "--cluster", "--config", path)
	if r.code != 1 || !strings.Contains(r.stdout, "pve2: state file") || !strings.Contains(r.stdout, "newer than this migration-ctl") {
		t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, nil, "", "status", "--cluster", "--config", filepath.Join(t.TempDir(), "x.conf")); r.code != 1 || !strings.Contains(r.stdout, "no node has reported") {
		t.Errorf("empty cluster: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestReadOnlyHintsSuggestLocal: when /etc/pve cannot be written (pmxcfs
// without quorum answers EROFS; EPERM/EACCES for other reasons), the error
// points at the rollback that needs no write there.
func TestReadOnlyHintsSuggestLocal(t *testing.T) {
	for name, err := range map[string]error{
		"EROFS":  &os.PathError{Op: "open", Path: "/etc/pve/x", Err: syscall.EROFS},
		"EPERM":  &os.PathError{Op: "open", Path: "/etc/pve/x", Err: syscall.EPERM},
		"EACCES": &os.PathError{Op: "open", Path: "/etc/pve/x", Err: syscall.EACCES},
	} {
		t.Run(name, func(t *testing.T) {
			hints := strings.Join(writeHints(err), "\n")
			if !strings.Contains(hints, "set-phase perl-only --local") || !strings.Contains(hints, "quorum") {
				t.Errorf("hints for %v do not suggest --local:\n%s", err, hints)
			}
		})
	}
}
