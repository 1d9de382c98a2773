package ctl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pve-migration/router/internal/config"
)

// TestRolloutCommandsWithoutRouter: plan and advance need the router's
// evidence; advance refuses without it unless --force, and rollback never
// needs any. Usage mistakes in gate reset are exit 2 with a suggestion.
func TestRolloutCommandsWithoutRouter(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "network-migration.conf")
	if err := os.WriteFile(conf, []byte("phase = \"perl-only\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gone := "unix:" + filepath.Join(dir, "no-router.sock")
	phase := func() string {
		s, err := config.Load(conf, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s.Policy.Phase.String()
	}
	for _, tc := range []struct {
		name      string
		args      []string
		code      int
		stderr    string
		wantPhase string
	}{
		{"plan needs the router", []string{"plan", "--json"}, 1, "the router is not reachable", "perl-only"},
		{"advance refuses without evidence", []string{"advance"}, 1, "without its evidence advance refuses", "perl-only"},
		{"advance --force --dry-run writes nothing", []string{"advance", "--force", "--dry-run"}, 0, "without evidence (--force)", "perl-only"},
		{"advance --force moves one phase", []string{"advance", "--force"}, 0, "without evidence (--force)", "rust-read-only"},
		{"rollback needs no evidence", []string{"set-phase", "perl-only"}, 0, "", "perl-only"},
		{"advance --force again", []string{"advance", "--force"}, 0, "without evidence (--force)", "rust-read-only"},
		{"gate reset needs the router", []string{"gate", "reset"}, 1, "gate reset at", "rust-read-only"},
		{"gate reset unknown category", []string{"gate", "reset", "node-network-raed"}, 2, `did you mean "node-network-read"?`, "rust-read-only"},
		{"gate reset not-network", []string{"gate", "reset", "not-network"}, 2, "unknown category", "rust-read-only"},
		{"gate unknown action", []string{"gate", "rest"}, 2, `did you mean "reset"?`, "rust-read-only"},
		{"gate without action", []string{"gate"}, 2, "missing argument", "rust-read-only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(tc.args, "--config", conf)
			if tc.args[0] != "set-phase" {
				args = append(args, "--router", gone, "--timeout", "1s")
			}
			r := run(t, nil, "", args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit %d and %q", r.code, r.stderr, tc.code, tc.stderr)
			}
			if got := phase(); got != tc.wantPhase {
				t.Fatalf("file phase %s, want %s", got, tc.wantPhase)
			}
		})
	}
}
