package routerapp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/pve-migration/router/internal/config"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pve-migration/router/examples/pvedemo"
	"github.com/pve-migration/router/internal/ctl"
	"github.com/pve-migration/router/internal/nodestate"
)

// clusterNode is one router of the three-node test.
type clusterNode struct {
	name, proxy, grpc, killSwitch string
	stop                          func()
	stderr                        *syncBuffer
}

func startNode(t *testing.T, dir, conf, name, perl, rust string) *clusterNode {
	t.Helper()
	n := &clusterNode{name: name, proxy: freeAddr(t), grpc: "unix:" + filepath.Join(dir, name+".sock"),
		killSwitch: filepath.Join(dir, "var-lib-"+name, "perl-only"), stderr: &syncBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() {
		code <- Run(ctx, []string{"--config", conf, "--node", name, "--kill-switch", n.killSwitch,
			"--grpc-listen", n.grpc, "--admin-listen", "", "--proxy-listen", n.proxy,
			"--perl-upstream", perl, "--rust-upstream", rust,
			"--reload-interval", "200ms", "--state-interval", "300ms"}, &bytes.Buffer{}, n.stderr)
	}()
	stopped := false
	n.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case c := <-code:
			if c != ExitOK {
				t.Errorf("router %s exited %d; log:\n%s", name, c, n.stderr.String())
			}
		case <-time.After(20 * time.Second):
			t.Errorf("router %s did not stop", name)
		}
	}
	t.Cleanup(n.stop)
	waitFor(t, name+" data plane", func() bool {
		c, err := net.Dial("tcp", n.proxy)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return n
}

// servedBy sends a request through the node's data plane and returns who
// answered (x-pve-served-by).
func (n *clusterNode) servedBy(t *testing.T, method, path string) string {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+n.proxy+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("x-pve-backend", "rust") // a client never chooses
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s via %s: %v", method, path, n.name, err)
	}
	resp.Body.Close()
	return resp.Header.Get("x-pve-served-by")
}

// runCtl runs migration-ctl in-process with an empty environment.
func runCtl(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := ctl.Run(context.Background(), args, strings.NewReader(""), &out, &errb, func(string) string { return "" })
	return code, out.String(), errb.String()
}

func clusterStatus(t *testing.T, conf string) (int, nodestate.ClusterView) {
	t.Helper()
	code, out, errOut := runCtl("status", "--cluster", "--json", "--config", conf, "--stale-after", "5s")
	var v nodestate.ClusterView
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("status --cluster --json: %v\n%s%s", err, out, errOut)
	}
	return code, v
}

func nodeOf(v nodestate.ClusterView, name string) nodestate.NodeView {
	for _, n := range v.Nodes {
		if n.Node == name {
			return n
		}
	}
	return nodestate.NodeView{}
}

// makeReadOnly turns dir read-only as pmxcfs does without quorum. Root
// ignores permission bits, so it uses a read-only bind mount (EROFS, what
// pmxcfs returns), else the immutable attribute (EPERM); it skips when
// neither is possible.
func makeReadOnly(t *testing.T, dir string) string {
	t.Helper()
	if err := syscall.Mount(dir, dir, "", syscall.MS_BIND, ""); err == nil {
		if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, ""); err == nil {
			t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
			return "read-only bind mount"
		}
		_ = syscall.Unmount(dir, syscall.MNT_DETACH)
	}
	if err := exec.Command("chattr", "+i", dir).Run(); err == nil {
		t.Cleanup(func() { _ = exec.Command("chattr", "-i", dir).Run() })
		return "chattr +i"
	}
	t.Skip("cannot make a directory read-only here (needs root for a bind mount or chattr)")
	return ""
}

// TestThreeNodeCluster is the acceptance test: three routers
// (pve1..3) on one shared directory standing for /etc/pve, with one pair
// of demo backends.
func TestThreeNodeCluster(t *testing.T) {
	dir := t.TempDir()
	etc := filepath.Join(dir, "etc-pve")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "demo-state")
	perl := demoBackend(t, pvedemo.FlavorPerl, state)
	rust := demoBackend(t, pvedemo.FlavorRust, state)
	conf := filepath.Join(etc, "network-migration.conf")
	// The demo backends answer for node pve1 only (like one PVE node),
	// so pve2's and pve3's own requests fail on both backends. With
	// fallback off, x-pve-served-by shows the routing decision even for
	// those: a failed rust answer is not retried on perl.
	body := fmt.Sprintf("# cluster-wide\nphase = \"rust-read-only\"\nfallback_enabled = false\nperl_api_base_url = %q\n\n# pve1 goes first\n[nodes.pve1]\nphase = \"rust-basic-write\"\n", perl)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	nodes := map[string]*clusterNode{}
	for _, name := range []string{"pve1", "pve2", "pve3"} {
		nodes[name] = startNode(t, dir, conf, name, perl, rust)
	}
	own := func(name string) string { return "/api2/json/nodes/" + name + "/network" }
	expect := func(t *testing.T, what string, want map[string]string, method string) {
		t.Helper()
		waitFor(t, what, func() bool {
			for name, w := range want {
				if nodes[name].servedBy(t, method, own(name)) != w {
					return false
				}
			}
			return true
		})
	}

	t.Run("each node routes by its own phase", func(t *testing.T) {
		expect(t, "reads on rust everywhere", map[string]string{"pve1": "rust", "pve2": "rust", "pve3": "rust"}, "GET")
		for name, want := range map[string]string{"pve1": "rust", "pve2": "perl", "pve3": "perl"} {
			if got := nodes[name].servedBy(t, "PUT", own(name)); got != want {
				t.Errorf("PUT apply on %s served by %q, want %s (pve1's table is rust-basic-write)", name, got, want)
			}
		}
		if got := nodes["pve2"].servedBy(t, "GET", "/api2/json/nodes/localhost/network"); got != "rust" {
			t.Errorf("localhost on pve2 served by %q, want rust", got)
		}
	})

	t.Run("a request about another node goes to perl", func(t *testing.T) {
		for _, pair := range [][2]string{{"pve1", "pve2"}, {"pve2", "pve3"}, {"pve3", "pve1"}} {
			if got := nodes[pair[0]].servedBy(t, "GET", own(pair[1])); got != "perl" {
				t.Errorf("GET %s via %s served by %q, want perl (remote-node)", own(pair[1]), pair[0], got)
			}
		}
	})

	t.Run("set-phase --node moves only that node", func(t *testing.T) {
		before, _ := os.ReadFile(conf)
		code, out, errOut := runCtl("set-phase", "rust-basic-write", "--node", "pve3", "--config", conf)
		if code != 0 {
			t.Fatalf("set-phase --node: exit %d\n%s%s", code, out, errOut)
		}
		after, _ := os.ReadFile(conf)
		if !strings.HasPrefix(string(after), string(before)) || !strings.Contains(string(after), "[nodes.pve3]") {
			t.Errorf("the edit touched more than a new [nodes.pve3] table:\n%s", after)
		}
		expect(t, "pve3 writes on rust", map[string]string{"pve3": "rust"}, "PUT")
		if got := nodes["pve2"].servedBy(t, "PUT", own("pve2")); got != "perl" {
			t.Errorf("pve2 moved too: PUT served by %q", got)
		}
	})

	t.Run("status --cluster lists every node", func(t *testing.T) {
		var v nodestate.ClusterView
		waitFor(t, "three current nodes", func() bool {
			_, v = clusterStatus(t, conf)
			return len(v.Nodes) == 3 && v.OK
		})
		for name, want := range map[string]string{"pve1": "rust-basic-write", "pve2": "rust-read-only", "pve3": "rust-basic-write"} {
			n := nodeOf(v, name)
			if n.Phase != want || n.ConfiguredPhase != want || !n.ConfigCurrent || n.Stale || n.KillSwitch {
				t.Errorf("%s: %+v; want phase %s, current, not stale", name, n, want)
			}
		}
	})

	t.Run("rollback reaches every node", func(t *testing.T) {
		start := time.Now()
		code, out, errOut := runCtl("set-phase", "perl-only", "--config", conf)
		if code != 0 || !strings.Contains(out, "every node rolls back") {
			t.Fatalf("set-phase perl-only: exit %d\n%s%s", code, out, errOut)
		}
		expect(t, "everything on perl", map[string]string{"pve1": "perl", "pve2": "perl", "pve3": "perl"}, "GET")
		// Logged, not asserted: a loaded machine must not fail the test.
		t.Logf("every node on perl %s after the write (reload interval 200ms)", time.Since(start).Round(time.Millisecond))
		expect(t, "writes on perl", map[string]string{"pve1": "perl", "pve3": "perl"}, "PUT")
		waitFor(t, "every state file on perl-only and the current file", func() bool {
			code, v := clusterStatus(t, conf)
			if code != 0 || len(v.Nodes) != 3 {
				return false
			}
			for _, n := range v.Nodes {
				if n.Phase != "perl-only" || !n.ConfigCurrent {
					return false
				}
			}
			return true
		})
	})

	t.Run("a stopped router is stale", func(t *testing.T) {
		nodes["pve3"].stop()
		code, v := clusterStatus(t, conf)
		if n := nodeOf(v, "pve3"); code != 1 || !n.Stale || n.OK || v.OK {
			t.Errorf("exit %d, pve3 %+v: want exit 1 and pve3 stale", code, n)
		}
		if n := nodeOf(v, "pve1"); n.Stale || !n.OK {
			t.Errorf("pve1 %+v: want fresh and OK", n)
		}
	})

	t.Run("read-only /etc/pve: rollback with --local", func(t *testing.T) {
		// The rollback pinned every node table to perl-only: move the top
		// level and pve1's table forward again.
		for _, args := range [][]string{{"set-phase", "rust-read-only"}, {"set-phase", "rust-read-only", "--node", "pve1"}} {
			if code, out, errOut := runCtl(append(args, "--config", conf)...); code != 0 {
				t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
			}
		}
		expect(t, "reads back on rust", map[string]string{"pve1": "rust", "pve2": "rust"}, "GET")
		how := makeReadOnly(t, etc)
		t.Logf("read-only by %s", how)

		code, out, errOut := runCtl("set-phase", "perl-only", "--config", conf)
		if code != 1 || !strings.Contains(errOut, "cannot write") || !strings.Contains(errOut, "set-phase perl-only --local") {
			t.Fatalf("set-phase on a read-only directory: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		start := time.Now()
		code, out, errOut = runCtl("set-phase", "perl-only", "--local", "--kill-switch", nodes["pve1"].killSwitch, "--router", nodes["pve1"].grpc)
		if code != 0 {
			t.Fatalf("--local: exit %d\n%s%s", code, out, errOut)
		}
		waitFor(t, "pve1 on perl by its kill switch", func() bool { return nodes["pve1"].servedBy(t, "GET", own("pve1")) == "perl" })
		t.Logf("pve1 on perl %s after the kill switch was created (polled every 250ms)", time.Since(start).Round(time.Millisecond))
		if got := nodes["pve2"].servedBy(t, "GET", own("pve2")); got != "rust" {
			t.Errorf("pve2 served by %q: the kill switch is node-local", got)
		}
		// pve1 says so in status: kill switch on, and its state file
		// cannot be written (only with a bind mount does the whole tree
		// turn read-only).
		waitFor(t, "pve1 status shows the kill switch", func() bool {
			code, out, _ := runCtl("status", "--json", "--router", nodes["pve1"].grpc)
			var st struct {
				KillSwitch bool `json:"kill_switch"`
				Node       struct {
					EffectivePhase string `json:"effective_phase"`
					StateFileError string `json:"state_file_error"`
				} `json:"node"`
			}
			if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
				return false
			}
			return st.KillSwitch && st.Node.EffectivePhase == "perl-only" &&
				(how != "read-only bind mount" || strings.Contains(st.Node.StateFileError, "read-only file system"))
		})
		if code, out, errOut := runCtl("kill-switch", "off", "--kill-switch", nodes["pve1"].killSwitch, "--router", nodes["pve1"].grpc); code != 0 {
			t.Fatalf("kill-switch off: exit %d\n%s%s", code, out, errOut)
		}
		waitFor(t, "pve1 back on rust", func() bool { return nodes["pve1"].servedBy(t, "GET", own("pve1")) == "rust" })
	})
}

func TestNodeTableCaseMismatch(t *testing.T) {
	for _, tc := range []struct {
		name, conf, node, want string
	}{
		{"other case", "phase = \"rust-full\"\n[nodes.PVE1]\nphase = \"perl-only\"\n", "pve1", "PVE1"},
		{"exact", "[nodes.pve1]\nphase = \"perl-only\"\n", "pve1", ""},
		{"exact beside other case", "[nodes.pve1]\nphase = \"perl-only\"\n[nodes.PVE1]\nphase = \"perl-only\"\n", "pve1", ""},
		{"another node", "[nodes.pve2]\nphase = \"perl-only\"\n", "pve1", ""},
		{"no tables", "phase = \"perl-only\"\n", "pve1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap, err := config.Parse("t.conf", []byte(tc.conf), nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := nodeTableCaseMismatch(snap, tc.node); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
