package ctl

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/routing"
)

// TestEditPreservesBytes checks that set-phase and fallback change the
// value and nothing else: comments, key order, quoting, spacing, trailing
// comments and line endings are byte-for-byte the same.
func TestEditPreservesBytes(t *testing.T) {
	commented := readFile(t, "testdata/commented.conf")
	seed := readFile(t, "testdata/seed.conf")
	tests := []struct {
		name     string
		src      string
		args     []string
		old, new string // the one substring that must change
	}{
		{"set-phase commented", commented, []string{"set-phase", "rust-basic-write"},
			`phase="rust-read-only"   # since`, `phase="rust-basic-write"   # since`},
		{"rollback commented", commented, []string{"set-phase", "perl-only"},
			`phase="rust-read-only"`, `phase="perl-only"`},
		{"fallback commented", commented, []string{"fallback", "false"},
			"fallback_enabled\t=\ttrue    # keep", "fallback_enabled\t=\tfalse    # keep"},
		{"set-phase seed", seed, []string{"set-phase", "rust-basic-write"},
			`phase = "rust-read-only"`, `phase = "rust-basic-write"`},
		{"crlf", strings.ReplaceAll(seed, "\n", "\r\n"), []string{"set-phase", "perl-only"},
			"phase = \"rust-read-only\"\r\n", "phase = \"perl-only\"\r\n"},
		{"single quotes", "phase = 'rust-read-only' # q\n", []string{"set-phase", "rust-basic-write"},
			"phase = 'rust-read-only' # q", "phase = 'rust-basic-write' # q"},
		{"camel case phase", "phase = \"RustReadOnly\"\n", []string{"set-phase", "rust-basic-write"},
			`"RustReadOnly"`, `"rust-basic-write"`},
		{"no phase key: inserted after the last top-level key", "# c\nfallback_enabled = true\n\n# f\n[features]\nenable_sdn_migration = true\n",
			[]string{"set-phase", "rust-read-only"}, "fallback_enabled = true\n", "fallback_enabled = true\nphase = \"rust-read-only\"\n"},
		{"no top-level keys: inserted before the first table", "# c\n\n# f\n[features]\nenable_sdn_migration = true\n",
			[]string{"fallback", "false"}, "\n# f\n[features]", "\nfallback_enabled = false\n\n# f\n[features]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if strings.Count(tt.src, tt.old) != 1 {
				t.Fatalf("test bug: %q occurs %d times", tt.old, strings.Count(tt.src, tt.old))
			}
			path := filepath.Join(t.TempDir(), "network-migration.conf")
			if err := os.WriteFile(path, []byte(tt.src), 0o640); err != nil {
				t.Fatal(err)
			}
			r := run(t, nil, "", append(tt.args, "--config", path)...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			want := strings.Replace(tt.src, tt.old, tt.new, 1)
			if got := readFile(t, path); got != want {
				t.Errorf("file after edit:\n%s", lineDiff(want, got))
			}
			if _, err := config.Parse(path, []byte(readFile(t, path)), nil); err != nil {
				t.Errorf("edited file does not load: %v", err)
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o640 {
				t.Errorf("mode %v after edit, want 0640 kept", st.Mode().Perm())
			}
			assertOnlyFiles(t, filepath.Dir(path), "network-migration.conf")
		})
	}
}

// assertOnlyFiles fails if dir holds anything but names (a leftover
// temporary file of an interrupted replace, say).
func assertOnlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("directory holds %v, want %v", got, names)
	}
}

// TestDryRunChangesNothing: --dry-run prints the diff and leaves the file,
// its modification time and its directory alone, also when the file would
// be created.
func TestDryRunChangesNothing(t *testing.T) {
	for _, args := range [][]string{
		{"set-phase", "rust-basic-write", "--dry-run"},
		{"set-phase", "perl-only", "--dry-run"},
		{"set-phase", "rust-full", "--force", "--dry-run"},
		{"fallback", "false", "--dry-run"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			dir := fixtureDir(t)
			path := filepath.Join(dir, "commented.conf")
			old := time.Now().Add(-time.Hour).Truncate(time.Second)
			if err := os.Chtimes(path, old, old); err != nil {
				t.Fatal(err)
			}
			before := readFile(t, path)
			r := run(t, nil, "", append(args, "--config", path)...)
			if r.code != 0 || !strings.Contains(r.stdout, "--- "+path) || !strings.Contains(r.stdout, "dry run:") {
				t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			st, _ := os.Stat(path)
			if readFile(t, path) != before || !st.ModTime().Equal(old) {
				t.Error("--dry-run changed the file")
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 5 {
				t.Errorf("--dry-run left files behind: %d entries", len(entries))
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		dir := t.TempDir()
		r := run(t, nil, "", "set-phase", "rust-read-only", "--dry-run", "--config", filepath.Join(dir, "x.conf"))
		if r.code != 0 || !strings.Contains(r.stdout, "--- /dev/null") {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		assertOnlyFiles(t, dir)
	})
}

// TestForceRule: advancing more than one phase needs --force; moving back,
// and rolling back to perl-only above all, never does.
func TestForceRule(t *testing.T) {
	tests := []struct {
		from, to string
		force    bool
		code     int
	}{
		{"perl-only", "rust-read-only", false, 0},
		{"perl-only", "rust-basic-write", false, 1},
		{"perl-only", "rust-basic-write", true, 0},
		{"rust-read-only", "rust-full", false, 1},
		{"rust-read-only", "rust-full", true, 0},
		{"rust-sdn", "rust-full", false, 0},
		{"rust-full", "perl-only", false, 0},
		{"rust-full", "rust-read-only", false, 0},
		{"rust-advanced", "rust-basic-write", false, 0},
		{"rust-raed-only", "rust-read-only", false, 1}, // current phase unknown
		{"rust-raed-only", "rust-read-only", true, 0},
		{"rust-raed-only", "perl-only", false, 0},
		{"", "rust-read-only", false, 0}, // absent key: default perl-only
		{"", "rust-basic-write", false, 1},
	}
	for _, tt := range tests {
		name := tt.from + "→" + tt.to
		if tt.force {
			name += " --force"
		}
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.conf")
			src := "fallback_enabled = true\n"
			if tt.from != "" {
				src = `phase = "` + tt.from + "\"\n" + src
			}
			if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			args := []string{"set-phase", tt.to, "--config", path}
			if tt.force {
				args = append(args, "--force")
			}
			r := run(t, nil, "", args...)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d\n%s%s", r.code, tt.code, r.stdout, r.stderr)
			}
			snap, err := config.Parse(path, []byte(readFile(t, path)), nil)
			switch {
			case tt.code == 0 && (err != nil || snap.Policy.Phase.String() != tt.to):
				t.Errorf("after success the file has phase %v (err %v), want %s", snap, err, tt.to)
			case tt.code != 0 && readFile(t, path) != src:
				t.Error("a refused set-phase changed the file")
			}
			if tt.code == 1 && !strings.Contains(r.stderr, "--force") {
				t.Errorf("refusal does not mention --force: %s", r.stderr)
			}
		})
	}
}

// TestCreateMissing: set-phase and fallback on a missing file create it
// from the generate-config template, and the result validates.
func TestCreateMissing(t *testing.T) {
	for _, tt := range []struct {
		args  []string
		check func(*config.Snapshot) bool
	}{
		{[]string{"set-phase", "rust-read-only"}, func(s *config.Snapshot) bool { return s.Policy.Phase == routing.RustReadOnly }},
		{[]string{"set-phase", "perl-only"}, func(s *config.Snapshot) bool { return s.Policy.Phase == routing.PerlOnly }},
		{[]string{"fallback", "false"}, func(s *config.Snapshot) bool { return !s.Policy.FallbackEnabled }},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "network-migration.conf")
			// Without --force a missing file is not created: a mistyped
			// --config must not look like a successful rollback.
			if r := run(t, nil, "", append(tt.args, "--config", path)...); r.code != 1 || !strings.Contains(r.stderr, "--force") {
				t.Fatalf("without --force: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			assertOnlyFiles(t, dir)
			r := run(t, nil, "", append(tt.args, "--config", path, "--force")...)
			if r.code != 0 || !strings.Contains(r.stdout, "created "+path) {
				t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			snap, err := config.Load(path, nil)
			if err != nil || !tt.check(snap) {
				t.Fatalf("created file: %v", err)
			}
			if v := run(t, nil, "", "validate", "--config", path); v.code != 0 {
				t.Errorf("validate on the created file: %s", v.stderr)
			}
			if !strings.Contains(readFile(t, path), "# Migration phase, in order") {
				t.Error("created file lost the template's comments")
			}
			assertOnlyFiles(t, dir, "network-migration.conf")
		})
	}
}

// TestEnvOverrideWarning: the edit is made, and the operator is told that
// a variable set here hides it.
func TestEnvOverrideWarning(t *testing.T) {
	dir := fixtureDir(t)
	path := filepath.Join(dir, "seed.conf")
	r := run(t, map[string]string{config.EnvPhase: "perl-only"}, "", "set-phase", "rust-basic-write", "--config", path)
	if r.code != 0 || !strings.Contains(r.stderr, "warning: PVE_NETWORK_MIGRATION_PHASE=perl-only is set") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if snap, err := config.Parse(path, []byte(readFile(t, path)), nil); err != nil || snap.Policy.Phase != routing.RustBasicWrite {
		t.Errorf("file not updated: %v", err)
	}
	r = run(t, map[string]string{config.EnvFallback: "1"}, "", "fallback", "false", "--config", path)
	if r.code != 0 || !strings.Contains(r.stderr, "PVE_NETWORK_MIGRATION_FALLBACK=1 is set") {
		t.Fatalf("fallback: exit %d, stderr %q", r.code, r.stderr)
	}
	r = run(t, nil, "", "set-phase", "rust-advanced", "--config", path)
	if strings.Contains(r.stderr, "warning") {
		t.Errorf("warning without an override: %s", r.stderr)
	}
}

// TestAtomicReplaceConcurrentReader runs 200 set-phase calls while another
// goroutine reads and parses the file in a loop, as the router's watcher
// does: it must never see a missing, empty, half-written or invalid file,
// and no temporary file may be left behind.
func TestAtomicReplaceConcurrentReader(t *testing.T) {
	dir := fixtureDir(t)
	path := filepath.Join(dir, "commented.conf")
	var stop atomic.Bool
	var reads atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			b, err := os.ReadFile(path)
			if err == nil {
				_, err = config.Parse(path, b, nil)
			}
			if err != nil {
				select {
				case errc <- err:
				default:
				}
				return
			}
			reads.Add(1)
		}
	}()
	phases := []string{"perl-only", "rust-read-only"}
	for i := 0; i < 200; i++ {
		r := run(t, nil, "", "set-phase", phases[i%2], "--config", path)
		if r.code != 0 {
			t.Fatalf("set-phase #%d: exit %d\n%s", i, r.code, r.stderr)
		}
	}
	stop.Store(true)
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatalf("a concurrent reader saw a broken file: %v", err)
	default:
	}
	if reads.Load() == 0 {
		t.Fatal("the reader never ran")
	}
	// The last edit set the original phase again: byte-for-byte the original.
	if got, want := readFile(t, path), readFile(t, "testdata/commented.conf"); got != want {
		t.Errorf("after 200 edits the file differs from the original:\n%s", lineDiff(want, got))
	}
	assertOnlyFiles(t, dir, "commented.conf", "invalid.conf", "sdn.conf", "seed.conf", "warn.conf")
	t.Logf("%d concurrent reads, none saw a partial file", reads.Load())
}

// TestReplaceFileSymlink: a config that is a symlink (a common way to keep
// it under version control) stays a symlink; its target is replaced.
func TestReplaceFileSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real.conf")
	link := filepath.Join(dir, "network-migration.conf")
	if err := os.WriteFile(target, []byte("phase = \"perl-only\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real.conf", link); err != nil {
		t.Skip("no symlinks:", err)
	}
	if r := run(t, nil, "", "set-phase", "rust-read-only", "--config", link); r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the symlink was replaced by a file")
	}
	if got := readFile(t, target); got != "phase = \"rust-read-only\"\n" {
		t.Errorf("target = %q", got)
	}
	assertOnlyFiles(t, dir, "network-migration.conf", "real.conf")
}

// TestReplaceFileAbortsOnConcurrentChange: when the file changed between
// read and rename, nothing is written and no temporary file stays.
func TestReplaceFileAbortsOnConcurrentChange(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.conf")
	if err := os.WriteFile(path, []byte("phase = \"perl-only\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := &configFile{path: path, exists: true, old: []byte("phase = \"perl-only\"\n")}
	if err := os.WriteFile(path, []byte("phase = \"rust-read-only\" # someone else\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := replaceFile(path, []byte("phase = \"rust-basic-write\"\n"), unchangedSince(f))
	if err == nil || !strings.Contains(err.Error(), "changed while it was being edited") {
		t.Fatalf("err = %v", err)
	}
	if got := readFile(t, path); !strings.Contains(got, "someone else") {
		t.Errorf("the other change was overwritten: %q", got)
	}
	assertOnlyFiles(t, dir, "c.conf")
}

// TestWriteFailure: an unwritable directory (a read-only /etc/pve after
// quorum loss looks the same) fails with the environment-variable rollback
// as the hint, and the file is untouched.
func TestWriteFailure(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root can write to a read-only directory")
	}
	dir := fixtureDir(t)
	path := filepath.Join(dir, "seed.conf")
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(dir, 0o755) })
	r := run(t, nil, "", "set-phase", "perl-only", "--config", path)
	if r.code != 1 || !strings.Contains(r.stderr, "PVE_NETWORK_MIGRATION_PHASE=perl-only") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestWriteHints covers the hint for each way a write in /etc/pve fails.
func TestWriteHints(t *testing.T) {
	for _, err := range []error{os.ErrPermission, os.ErrNotExist} {
		if len(writeHints(err)) == 0 {
			t.Errorf("no hint for %v", err)
		}
	}
	if h := writeHints(errors.New("other")); h != nil {
		t.Errorf("hint for an unknown error: %v", h)
	}
}

func TestUnifiedDiff(t *testing.T) {
	tests := []struct {
		name, a, b, want string
		exists           bool
	}{
		{"one line", "a\nb\nc\n", "a\nB\nc\n", "--- f\n+++ f\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n", true},
		{"context is three lines", "1\n2\n3\n4\n5\n6\n7\n8\n9\n", "1\n2\n3\n4\nX\n6\n7\n8\n9\n",
			"--- f\n+++ f\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+X\n 6\n 7\n 8\n", true},
		{"insert", "a\nc\n", "a\nb\nc\n", "--- f\n+++ f\n@@ -1,2 +1,3 @@\n a\n+b\n c\n", true},
		{"no final newline", "a", "b", "--- f\n+++ f\n@@ -1,1 +1,1 @@\n-a\n\\ No newline at end of file\n+b\n\\ No newline at end of file\n", true},
		{"new file", "", "a\n", "--- /dev/null\n+++ f\n@@ -0,0 +1,1 @@\n+a\n", false},
		{"same", "a\n", "a\n", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := unifiedDiff("f", []byte(tt.a), []byte(tt.b), tt.exists); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}
