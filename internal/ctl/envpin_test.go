package ctl

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pve-migration/router/internal/config"
)

// TestSetPhaseRouterPinnedByEnv: a router that runs with
// PVE_NETWORK_MIGRATION_PHASE in its environment ignores the file's phase.
// set-phase must not report a rollback (or any phase change) as done
// there: it writes the file, says the router will not follow, names the
// kill switch for perl-only, and exits 1. A router that takes its phase
// from the file, or whose pinned phase is the one asked for, is fine.
func TestSetPhaseRouterPinnedByEnv(t *testing.T) {
	cases := []struct {
		name      string
		routerEnv string // the router's PVE_NETWORK_MIGRATION_PHASE
		target    string
		wantCode  int
		wantErr   []string
	}{
		{"rollback under an env pin", "rust-basic-write", "perl-only", 1, []string{
			"the router at unix:", "serves phase rust-basic-write from its environment (PVE_NETWORK_MIGRATION_PHASE)",
			"set-phase perl-only --local", "systemctl revert pve-migration-router"}},
		{"advance under an env pin", "perl-only", "rust-basic-write", 1, []string{"serves phase perl-only from its environment"}},
		{"pinned to the target", "perl-only", "perl-only", 0, nil},
		{"no pin", "", "perl-only", 0, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := fixtureDir(t)
			path := filepath.Join(dir, "commented.conf")
			env := func(k string) string {
				if k == config.EnvPhase {
					return c.routerEnv
				}
				return ""
			}
			snap, err := config.Load(path, env)
			if err != nil {
				t.Fatal(err)
			}
			sock := filepath.Join(t.TempDir(), "r.sock")
			addr := startRouter(t, "unix", sock, config.NewStore(snap), nil)
			r := run(t, nil, "", "set-phase", c.target, "--config", path, "--router", addr)
			if r.code != c.wantCode {
				t.Errorf("exit %d, want %d\n%s%s", r.code, c.wantCode, r.stdout, r.stderr)
			}
			for _, w := range c.wantErr {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
			if c.wantCode == 0 && strings.Contains(r.stderr, "error:") {
				t.Errorf("an error where the router follows the file:\n%s", r.stderr)
			}
			// The file is written either way: the file is what the other
			// nodes, and this one once the override is gone, serve.
			if got := readFile(t, path); !regexp.MustCompile(`(?m)^phase\s*=\s*"` + c.target + `"`).MatchString(got) {
				t.Errorf("the file does not say phase %s:\n%s", c.target, got)
			}
		})
	}
}

// TestFallbackRouterPinnedByEnv: as TestSetPhaseRouterPinnedByEnv, for
// `fallback` and PVE_NETWORK_MIGRATION_FALLBACK.
func TestFallbackRouterPinnedByEnv(t *testing.T) {
	cases := []struct {
		name      string
		routerEnv string
		target    string
		wantCode  int
	}{
		{"off under an env pin", "true", "false", 1},
		{"pinned to the target", "false", "false", 0},
		{"no pin", "", "false", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := fixtureDir(t)
			path := filepath.Join(dir, "commented.conf")
			env := func(k string) string {
				if k == config.EnvFallback {
					return c.routerEnv
				}
				return ""
			}
			snap, err := config.Load(path, env)
			if err != nil {
				t.Fatal(err)
			}
			addr := startRouter(t, "unix", filepath.Join(t.TempDir(), "r.sock"), config.NewStore(snap), nil)
			r := run(t, nil, "", "fallback", c.target, "--config", path, "--router", addr)
			if r.code != c.wantCode {
				t.Errorf("exit %d, want %d\n%s%s", r.code, c.wantCode, r.stdout, r.stderr)
			}
			if c.wantCode == 1 && !strings.Contains(r.stderr, "from its environment (PVE_NETWORK_MIGRATION_FALLBACK)") {
				t.Errorf("stderr does not name the override:\n%s", r.stderr)
			}
		})
	}
}
