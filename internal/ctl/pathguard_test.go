package ctl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pve-migration/router/internal/config"
)

// TestEditRefusesFileTheRouterDoesNotWatch is finding 2 of issue 13:
// `set-phase perl-only --config /etc/pve/typo.conf` created the file and
// exited 0 while the router kept routing to rust. With a router reachable
// (its real control API), an edit of another file is refused naming both
// paths unless --force; a missing file needs --force anyway.
func TestEditRefusesFileTheRouterDoesNotWatch(t *testing.T) {
	dir := t.TempDir()
	watched := filepath.Join(dir, "network-migration.conf")
	other := filepath.Join(dir, "other.conf")
	typo := filepath.Join(dir, "typo.conf")
	link := filepath.Join(dir, "link.conf")
	for _, p := range []string{watched, other} {
		if err := os.WriteFile(p, []byte("phase = \"rust-full\"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(watched, link); err != nil {
		t.Fatal(err)
	}
	snap, err := config.LoadResolved(watched, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := startRouter(t, "tcp", "127.0.0.1:0", config.NewStore(snap), nil)

	cases := []struct {
		name    string
		args    []string
		code    int
		changed string // file that must now say perl-only, "" = none
		stderr  []string
	}{
		{"other file", []string{"set-phase", "perl-only", "--config", other}, 1, "", []string{watched, other, "--force"}},
		{"missing file", []string{"set-phase", "perl-only", "--config", typo}, 1, "", []string{typo, "--force"}},
		{"fallback on another file", []string{"fallback", "false", "--config", other}, 1, "", []string{watched, other}},
		{"the watched file", []string{"set-phase", "perl-only", "--config", watched}, 0, watched, nil},
		{"the watched file through a symlink", []string{"fallback", "false", "--config", link}, 0, "", nil},
		{"other file with --force", []string{"set-phase", "perl-only", "--config", other, "--force"}, 0, other, nil},
		{"dry run writes nothing and is not refused", []string{"set-phase", "rust-read-only", "--dry-run", "--config", typo}, 0, "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, nil, "", append(c.args, "--router", addr)...)
			if r.code != c.code {
				t.Fatalf("exit %d, want %d\n%s%s", r.code, c.code, r.stdout, r.stderr)
			}
			for _, w := range c.stderr {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not name %q:\n%s", w, r.stderr)
				}
			}
			if c.changed != "" && !strings.Contains(readFile(t, c.changed), `"perl-only"`) {
				t.Errorf("%s was not changed", c.changed)
			}
			if _, err := os.Stat(typo); err == nil {
				t.Errorf("%s was created", typo)
			}
		})
	}
	if strings.Contains(readFile(t, other), "fallback_enabled = false") {
		t.Error("the refused fallback edit changed the other file")
	}
}
