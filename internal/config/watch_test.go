package config

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pve-migration/router/internal/logsink"

	"github.com/pve-migration/router/routing"
)

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer = logsink.Buffer

const waitLimit = 10 * time.Second

// startWatch loads path as the router does at startup, starts Watch and
// returns once it is ready. The watcher is stopped (and must return) when
// the test ends. setup runs on the Store before the watcher starts (to
// install OnReload, as the router does).
func startWatch(t testing.TB, path string, opts WatchOptions, setup ...func(*Store)) (*Store, *syncBuffer) {
	t.Helper()
	snap, err := LoadResolved(path, opts.Explicit, opts.Env)
	if err != nil {
		t.Fatal(err)
	}
	st := NewStore(snap)
	for _, f := range setup {
		f(st)
	}
	logs := &syncBuffer{}
	opts.Path = path
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ready := make(chan struct{})
	opts.Ready = func() { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- Watch(ctx, st, opts) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Watch returned %v", err)
			}
		case <-time.After(waitLimit):
			t.Error("Watch did not return after cancel")
		}
	})
	select {
	case <-ready:
	case err := <-errc:
		t.Fatalf("Watch returned early: %v", err)
	case <-time.After(waitLimit):
		t.Fatal("Watch never became ready")
	}
	return st, logs
}

// waitFor polls cond until it holds or the deadline passes; it is never a
// fixed sleep standing in for an assertion.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitLimit, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func waitPhase(t testing.TB, st *Store, want routing.Phase) {
	t.Helper()
	waitFor(t, "phase "+want.String(), func() bool { return st.Current().Policy.Phase == want })
}

func phaseConf(p routing.Phase) string { return fmt.Sprintf("phase = %q\n", p) }

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes content beside path and renames it over path, as
// editors and configuration tools do for an atomic save.
func replaceFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func symlinkOver(t testing.TB, target, link string) {
	t.Helper()
	tmp := link + ".new"
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
}

// TestWatchSeesEveryWayOfChangingTheFile changes the phase twice per way
// of editing, so a watch that must move (symlink swaps) is proven to move.
func TestWatchSeesEveryWayOfChangingTheFile(t *testing.T) {
	notifyOnly := WatchOptions{PollInterval: -1}
	pollOnly := WatchOptions{PollInterval: 50 * time.Millisecond, DisableNotify: true}
	tests := []struct {
		name string
		opts WatchOptions
		// setup creates the file with phase perl-only and returns the path
		// the router is given.
		setup func(t *testing.T, dir string) string
		// change makes the path read content; n counts the changes.
		change func(t *testing.T, dir, path string, n int, content string)
	}{
		{
			name:   "in-place rewrite",
			opts:   notifyOnly,
			setup:  plainFile,
			change: func(t *testing.T, _, path string, _ int, c string) { writeFile(t, path, c) },
		},
		{
			name:   "rename over",
			opts:   notifyOnly,
			setup:  plainFile,
			change: func(t *testing.T, _, path string, _ int, c string) { replaceFile(t, path, c) },
		},
		{
			name:  "editor backup then write",
			opts:  notifyOnly,
			setup: plainFile,
			change: func(t *testing.T, _, path string, _ int, c string) {
				if err := os.Rename(path, path+"~"); err != nil {
					t.Fatal(err)
				}
				writeFile(t, path, c)
			},
		},
		{
			name: "symlink swap (ln -sfn)",
			opts: notifyOnly,
			setup: func(t *testing.T, dir string) string {
				writeFile(t, filepath.Join(dir, "v0.conf"), phaseConf(routing.PerlOnly))
				link := filepath.Join(dir, "network-migration.conf")
				if err := os.Symlink("v0.conf", link); err != nil {
					t.Fatal(err)
				}
				return link
			},
			change: func(t *testing.T, dir, path string, n int, c string) {
				name := fmt.Sprintf("v%d.conf", n)
				writeFile(t, filepath.Join(dir, name), c)
				symlinkOver(t, name, path)
			},
		},
		{
			name: "kubernetes ..data swap",
			opts: notifyOnly,
			setup: func(t *testing.T, dir string) string {
				mustMkdir(t, filepath.Join(dir, "..v0"))
				writeFile(t, filepath.Join(dir, "..v0", "network-migration.conf"), phaseConf(routing.PerlOnly))
				if err := os.Symlink("..v0", filepath.Join(dir, "..data")); err != nil {
					t.Fatal(err)
				}
				link := filepath.Join(dir, "network-migration.conf")
				if err := os.Symlink("..data/network-migration.conf", link); err != nil {
					t.Fatal(err)
				}
				return link
			},
			change: func(t *testing.T, dir, _ string, n int, c string) {
				v := fmt.Sprintf("..v%d", n)
				mustMkdir(t, filepath.Join(dir, v))
				writeFile(t, filepath.Join(dir, v, "network-migration.conf"), c)
				symlinkOver(t, v, filepath.Join(dir, "..data"))
				if err := os.RemoveAll(filepath.Join(dir, fmt.Sprintf("..v%d", n-1))); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "symlink target in another directory edited in place",
			opts: notifyOnly,
			setup: func(t *testing.T, dir string) string {
				other := filepath.Join(dir, "other")
				mustMkdir(t, other)
				writeFile(t, filepath.Join(other, "real.conf"), phaseConf(routing.PerlOnly))
				etc := filepath.Join(dir, "etc")
				mustMkdir(t, etc)
				link := filepath.Join(etc, "network-migration.conf")
				if err := os.Symlink(filepath.Join(other, "real.conf"), link); err != nil {
					t.Fatal(err)
				}
				return link
			},
			change: func(t *testing.T, dir, _ string, _ int, c string) {
				writeFile(t, filepath.Join(dir, "other", "real.conf"), c)
			},
		},
		{
			name:   "poll only, in-place rewrite",
			opts:   pollOnly,
			setup:  plainFile,
			change: func(t *testing.T, _, path string, _ int, c string) { writeFile(t, path, c) },
		},
		{
			name:   "poll only, rename over",
			opts:   pollOnly,
			setup:  plainFile,
			change: func(t *testing.T, _, path string, _ int, c string) { replaceFile(t, path, c) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := tt.setup(t, dir)
			st, logs := startWatch(t, path, tt.opts)
			if st.Current().Policy.Phase != routing.PerlOnly {
				t.Fatalf("initial phase %v", st.Current().Policy.Phase)
			}
			if c := st.ReloadCounts(); c[ResultOK]+c[ResultError]+c[ResultUnchanged] != 0 {
				t.Errorf("starting the watch counted reloads: %v", c)
			}
			for n, want := range []routing.Phase{routing.RustReadOnly, routing.RustFull} {
				tt.change(t, dir, path, n+1, phaseConf(want))
				waitPhase(t, st, want)
				if lr := st.LastReload(); lr.Result != ResultOK || lr.Err != nil {
					t.Errorf("LastReload = %+v", lr)
				}
			}
			if !tt.opts.DisableNotify && strings.Contains(logs.String(), "polling") {
				t.Errorf("fell back to polling:\n%s", logs)
			}
			if c := st.ReloadCounts(); c[ResultError] != 0 {
				t.Errorf("errors during a clean change: %v\n%s", c, logs)
			}
		})
	}
}

func plainFile(t *testing.T, dir string) string {
	path := filepath.Join(dir, "network-migration.conf")
	writeFile(t, path, phaseConf(routing.PerlOnly))
	return path
}

func mustMkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestWatchKeepsLastGood(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts WatchOptions
	}{
		{"notify", WatchOptions{PollInterval: -1}},
		{"poll", WatchOptions{PollInterval: 50 * time.Millisecond, DisableNotify: true}},
	} {
		t.Run(mode.name+"/broken then fixed", func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "network-migration.conf")
			writeFile(t, path, phaseConf(routing.RustReadOnly))
			st, logs := startWatch(t, path, mode.opts)
			good := st.Current()

			replaceFile(t, path, "phase = \"rust-reed-only\"\nfallback_enabled = \"yes\"\n")
			waitFor(t, "error recorded", func() bool { return st.LastReload().Result == ResultError })
			if st.Current() != good {
				t.Error("a broken file replaced the last good snapshot")
			}
			wantErr := path + `: fallback_enabled: expected a boolean (true or false), got string "yes"`
			if err := st.LastReload().Err; err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("LastReload.Err = %v, want it to contain %q", err, wantErr)
			}
			waitFor(t, "error logged", func() bool {
				return strings.Contains(logs.String(), "level=ERROR") && strings.Contains(logs.String(), "path="+path)
			})

			replaceFile(t, path, phaseConf(routing.RustFull))
			waitPhase(t, st, routing.RustFull)
			if c := st.ReloadCounts(); c[ResultError] != 1 || c[ResultOK] != 1 {
				t.Errorf("counts = %v, want 1 error and 1 ok", c)
			}
		})
		t.Run(mode.name+"/deleted then recreated", func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "network-migration.conf")
			writeFile(t, path, phaseConf(routing.RustReadOnly))
			st, _ := startWatch(t, path, mode.opts)
			good := st.Current()

			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "error recorded", func() bool { return st.LastReload().Result == ResultError })
			if st.Current() != good {
				t.Error("deleting the file replaced the last good snapshot")
			}
			if err := st.LastReload().Err; err == nil || !strings.Contains(err.Error(), "config file removed") {
				t.Errorf("LastReload.Err = %v", err)
			}

			writeFile(t, path, phaseConf(routing.RustFull))
			waitPhase(t, st, routing.RustFull)
			if lr := st.LastReload(); lr.Result != ResultOK {
				t.Errorf("LastReload after recreate = %+v", lr)
			}
		})
	}
}

func TestWatchEnvOverridesSurviveReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "network-migration.conf")
	writeFile(t, path, phaseConf(routing.RustReadOnly))
	env := envMap(map[string]string{EnvPhase: "perl-only", EnvPerlAPIURL: "https://pve1:8006"})
	st, _ := startWatch(t, path, WatchOptions{Env: env, PollInterval: -1})
	if st.Current().Policy.Phase != routing.PerlOnly {
		t.Fatalf("initial phase %v, want the env's perl-only", st.Current().Policy.Phase)
	}
	replaceFile(t, path, "phase = \"rust-full\"\nfallback_enabled = false\nperl_api_base_url = \"https://other:8006\"\n")
	waitFor(t, "fallback off", func() bool { return !st.Current().Policy.FallbackEnabled })
	s := st.Current()
	if s.Policy.Phase != routing.PerlOnly || s.PhaseSource != SourceEnv || s.FallbackSource != SourceFile || s.PerlAPIBaseURL != "https://pve1:8006" {
		t.Errorf("after reload: phase %v from %v, fallback from %v, url %q", s.Policy.Phase, s.PhaseSource, s.FallbackSource, s.PerlAPIBaseURL)
	}
}

func TestWatchUnchangedContent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "network-migration.conf")
	writeFile(t, path, phaseConf(routing.RustReadOnly))
	st, _ := startWatch(t, path, WatchOptions{PollInterval: -1})
	first := st.Current()
	replaceFile(t, path, "# reviewed 2025-01-02\n"+phaseConf(routing.RustReadOnly))
	waitFor(t, "unchanged recorded", func() bool { return st.LastReload().Result == ResultUnchanged })
	if st.Current() != first {
		t.Error("a comment-only change swapped the snapshot")
	}
}

// TestWatchMissingDirectory: a directory that does not exist yet cannot be
// watched; the watcher polls, then switches to notifications once the
// directory appears (as /etc/pve does when pmxcfs mounts late).
func TestWatchMissingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pve")
	path := filepath.Join(dir, "network-migration.conf")
	st, logs := startWatch(t, path, WatchOptions{PollInterval: 50 * time.Millisecond})
	if st.Current().FileExists || st.Current().Policy.Phase != routing.PerlOnly {
		t.Fatalf("want built-in defaults, got %+v", st.Current())
	}
	if !strings.Contains(logs.String(), "cannot watch the file's directory; polling") {
		t.Errorf("fallback to polling not logged:\n%s", logs)
	}
	mustMkdir(t, dir)
	writeFile(t, path, phaseConf(routing.RustReadOnly))
	waitPhase(t, st, routing.RustReadOnly)
	waitFor(t, "notifications active", func() bool { return strings.Contains(logs.String(), "file notifications active") })
	if !st.Current().FileExists || st.Current().Path != path {
		t.Errorf("exists/path = %v/%q", st.Current().FileExists, st.Current().Path)
	}
}

// TestWatchOptionalFileComesAndGoes: at the default (implicit) path the
// file may appear later; once it served, its removal is an error that keeps
// it serving, not a silent return to the defaults.
func TestWatchOptionalFileComesAndGoes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "network-migration.conf")
	st, _ := startWatch(t, path, WatchOptions{PollInterval: -1})
	writeFile(t, path, phaseConf(routing.RustSDN))
	waitPhase(t, st, routing.RustSDN)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "error recorded", func() bool { return st.LastReload().Result == ResultError })
	if st.Current().Policy.Phase != routing.RustSDN {
		t.Errorf("phase %v after delete, want the last good rust-sdn", st.Current().Policy.Phase)
	}
}

func TestWatchArguments(t *testing.T) {
	if err := Watch(context.Background(), nil, WatchOptions{Path: "x"}); err == nil {
		t.Error("nil store accepted")
	}
	if err := Watch(context.Background(), NewStore(mustParse(t, "f", "", nil)), WatchOptions{}); err == nil {
		t.Error("empty path accepted")
	}
}

func TestEventRelevance(t *testing.T) {
	dir := t.TempDir()
	mustMkdir(t, filepath.Join(dir, "..v1"))
	writeFile(t, filepath.Join(dir, "..v1", "c.conf"), "")
	if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "c.conf")
	if err := os.Symlink("..data/c.conf", path); err != nil {
		t.Fatal(err)
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	w := &watcher{abs: path, log: slog.New(slog.DiscardHandler)}
	w.syncWatches()
	for name, want := range map[string]bool{
		path:                                  true,
		filepath.Join(dir, "..data"):          true, // the swapped link
		filepath.Join(real, "..v1", "c.conf"): true,
		filepath.Join(real, "..v1"):           true,
		filepath.Join(dir, "..data_tmp"):      false,
		filepath.Join(dir, "other.conf"):      false,
		filepath.Join(dir, "c.conf.bak"):      false,
	} {
		if got := w.isRelevant(name); got != want {
			t.Errorf("isRelevant(%s) = %v, want %v (chain %q)", name, got, want, w.relevant)
		}
	}
}
