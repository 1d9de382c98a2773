package ctl

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"

	"github.com/pve-migration/router/internal/config"
	pb "github.com/pve-migration/router/proto/pvemigration/v1"
	"github.com/pve-migration/router/routing"
	"github.com/pve-migration/router/server"
)

type fixedNode struct{ ks string }

func (f fixedNode) NodeStatus() server.NodeStatus {
	return server.NodeStatus{Node: "pve1", KillSwitchPath: f.ks}
}

// startNodeRouter serves the real control API of a router on node pve1
// that watches the kill switch ks.
func startNodeRouter(t *testing.T, ks string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	snap := &config.Snapshot{Policy: routing.DefaultPolicy()}
	gs := grpc.NewServer()
	pb.RegisterControlServiceServer(gs, server.NewControlService(server.ControlOptions{
		Config: config.NewStore(snap), Stats: fakeStats{}, Version: "test", Node: fixedNode{ks: ks},
	}))
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

// TestKillSwitchFollowsTheRouter: `set-phase perl-only --local` and
// `kill-switch on|off` with a --kill-switch other than the one the
// router on this node watches created (or removed) that file and said
// "every request goes to perl" while the router kept routing to rust. With
// a router reachable, an explicit other path is refused naming both
// (unless --force), and the default path gives way to the router's.
func TestKillSwitchFollowsTheRouter(t *testing.T) {
	dir := t.TempDir()
	watched := filepath.Join(dir, "perl-only")
	typo := filepath.Join(dir, "typo", "perl-only")
	addr := startNodeRouter(t, watched)
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }

	cases := []struct {
		name         string
		args         []string
		code         int
		watchedAfter bool // the router's switch exists afterwards
		typoAfter    bool
		out          []string
	}{
		{"explicit other path refused", []string{"set-phase", "perl-only", "--local", "--kill-switch", typo}, 1, false, false, []string{watched, typo, "--force"}},
		{"kill-switch on, other path refused", []string{"kill-switch", "on", "--kill-switch", typo}, 1, false, false, []string{watched, typo}},
		{"explicit other path with --force", []string{"set-phase", "perl-only", "--local", "--kill-switch", typo, "--force"}, 0, false, true, nil},
		{"the router's path", []string{"set-phase", "perl-only", "--local", "--kill-switch", watched}, 0, true, true, nil},
		{"kill-switch off, other path refused", []string{"kill-switch", "off", "--kill-switch", typo}, 1, true, true, []string{watched, typo}},
		{"kill-switch off, default path uses the router's", []string{"kill-switch", "off"}, 0, false, true, []string{"watches the kill switch " + watched, "kill switch off"}},
		{"set-phase --local, default path uses the router's", []string{"set-phase", "perl-only", "--local"}, 0, true, true, []string{"watches the kill switch " + watched, "kill switch on (" + watched}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, nil, "", append(c.args, "--router", addr)...)
			if r.code != c.code {
				t.Fatalf("exit %d, want %d\n%s%s", r.code, c.code, r.stdout, r.stderr)
			}
			for _, w := range c.out {
				if !strings.Contains(r.stdout+r.stderr, w) {
					t.Errorf("output lacks %q:\n%s%s", w, r.stdout, r.stderr)
				}
			}
			if got := exists(watched); got != c.watchedAfter {
				t.Errorf("router's kill switch exists = %v, want %v", got, c.watchedAfter)
			}
			if got := exists(typo); got != c.typoAfter {
				t.Errorf("mistyped kill switch exists = %v, want %v", got, c.typoAfter)
			}
		})
	}
}
