package config

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultPollInterval is how often Watch re-reads the file when
// WatchOptions.PollInterval is zero. /etc/pve is pmxcfs, a FUSE file
// system: an edit made on another cluster node changes the file here without
// any inotify event, so polling is what makes a cluster-wide phase change
// (or rollback) reach every node. Two seconds bounds that delay at the cost
// of reading a small file from memory.
const DefaultPollInterval = 2 * time.Second

// debounceDelay coalesces the bursts of events one save produces (truncate
// and write, or create, write and rename) into one reload, so the router
// rarely parses a half-written file.
const debounceDelay = 5 * time.Millisecond

// settleDelay is how long a file must stay missing, empty or invalid before
// that counts. Saves that are not atomic pass through such states (vim
// renames the file away before writing the new one; an in-place write
// truncates first), and reporting each as a failed reload, or briefly
// applying an empty file's defaults, would be noise and flapping.
const settleDelay = 100 * time.Millisecond

// WatchOptions configures Watch. The zero value of every field but Path is
// usable.
type WatchOptions struct {
	// Path is the config file, as ResolvePath returned it.
	Path string
	// Explicit is ResolvePath's explicit. While the built-in defaults
	// serve because an implicit file is absent, the file staying (or
	// becoming again) absent is not an error.
	Explicit bool
	// Env is the environment for overrides, applied on every reload so
	// that an override keeps winning over later edits; nil means none.
	Env func(string) string
	// PollInterval is how often the file is re-read whatever the
	// notifications say: 0 means DefaultPollInterval, negative turns
	// polling off (it comes back at DefaultPollInterval while file
	// notifications are unavailable, so a change is never missed for good).
	PollInterval time.Duration
	// DisableNotify turns off fsnotify and relies on polling alone, as on
	// a file system that raises no events.
	DisableNotify bool
	// Logger receives reloads (info), rejected files (error, with the
	// file name) and watch problems (warn); nil means slog.Default().
	Logger *slog.Logger
	// Now stamps LoadedAt and LastReload; nil means time.Now.
	Now func() time.Time
	// ReadTimeout bounds each read of the file (DefaultReadTimeout if
	// zero). A read that takes longer is a failed reload; the watcher
	// carries on and shutdown does not wait for it.
	ReadTimeout time.Duration
	// Ready, if non-nil, is called once the watch is in place and the file
	// has been checked, so startup code (and tests) know that every later
	// change will be seen.
	Ready func()
}

// Watch keeps store in step with the config file until ctx is done, then
// returns nil. On every change of the file's content it parses the file;
// a valid, different configuration becomes current atomically, while an
// invalid, unreadable or deleted file is logged at error level, recorded
// in store.LastReload and counted, and the last good configuration keeps
// serving: a typo must never route traffic differently.
//
// It watches the file's directory, not the file, so that editors' save by
// rename, `mv` over the file and symlink swaps (`ln -sfn`, Kubernetes'
// ..data) are seen; the directories of symlink targets are watched too.
// Because /etc/pve raises no events for changes made on other nodes, it
// also polls (see WatchOptions.PollInterval). If notifications cannot be
// set up (no inotify, missing directory) it logs that and polls.
//
// Watch returns an error only for unusable arguments.
func Watch(ctx context.Context, store *Store, opts WatchOptions) error {
	if store == nil {
		return errors.New("config: Watch needs a Store")
	}
	if opts.Path == "" {
		return errors.New("config: Watch needs a Path")
	}
	abs, err := filepath.Abs(opts.Path)
	if err != nil {
		return fmt.Errorf("config: watch %s: %w", opts.Path, err)
	}
	w := &watcher{
		store: store, path: opts.Path, abs: abs, explicit: opts.Explicit,
		env: opts.Env, log: opts.Logger, now: opts.Now, watched: map[string]bool{},
		ctx: ctx, readTimeout: opts.ReadTimeout,
	}
	if w.log == nil {
		w.log = slog.Default()
	}
	if w.now == nil {
		w.now = time.Now
	}
	w.poll = opts.PollInterval
	if w.poll == 0 {
		w.poll = DefaultPollInterval
	}
	if !opts.DisableNotify {
		w.startNotify()
	}
	defer w.close()
	if w.fsw == nil && w.poll < 0 {
		w.log.Warn("config watch: no file notifications and polling is off; polling anyway",
			"path", w.path, "interval", DefaultPollInterval)
	}
	w.timer = time.NewTimer(time.Hour)
	w.timer.Stop()
	defer w.timer.Stop()
	w.check(true)
	if opts.Ready != nil {
		opts.Ready()
	}
	w.loop(ctx)
	return nil
}

// fileState is what decides whether the file changed. The content hash is
// the judge: mtime and size miss a same-size rewrite within pmxcfs's
// one-second mtime resolution, and the file is small enough to read.
type fileState struct {
	exists bool
	hash   [sha256.Size]byte
	errMsg string // a read error other than "does not exist"
}

type watcher struct {
	store    *Store
	path     string // as given, for messages and Snapshot.Path
	abs      string
	explicit bool
	env      func(string) string
	log      *slog.Logger
	now      func() time.Time
	poll     time.Duration // negative: off
	// ctx ends the watch; a read in progress is abandoned then.
	ctx         context.Context
	readTimeout time.Duration

	fsw      *fsnotify.Watcher // nil: polling only
	watched  map[string]bool   // real directory paths under watch
	relevant []string          // paths whose change can change what path reads
	notifyOK bool              // the file's own directory is watched

	last     fileState
	haveLast bool

	// A state that looks like a save in progress waits settleDelay.
	pending    fileState
	hasPending bool
	pendingAt  time.Time
	timer      *time.Timer // debounce and settle re-checks
}

func (w *watcher) startNotify() {
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		w.log.Warn("config watch: file notifications unavailable; polling", "path", w.path, "error", err)
		return
	}
	w.fsw = fsw
	w.notifyOK = true // so that a failure in syncWatches is logged
	w.syncWatches()
}

func (w *watcher) close() {
	if w.fsw != nil {
		_ = w.fsw.Close()
	}
}

// syncWatches watches the directories that can change what the path reads:
// the file's own and those of every symlink hop and of the final target.
// It runs after every check, since a symlink swap moves the target.
func (w *watcher) syncWatches() {
	chain := linkChain(w.abs)
	want := map[string]bool{}
	for _, p := range chain {
		if d, err := filepath.EvalSymlinks(filepath.Dir(p)); err == nil {
			want[d] = true
		}
	}
	w.relevant = chain
	if w.fsw == nil {
		return
	}
	for d := range w.watched {
		if !want[d] {
			_ = w.fsw.Remove(d) // fails harmlessly if the directory is gone
			delete(w.watched, d)
		}
	}
	var addErr error
	for d := range want {
		if !w.watched[d] {
			if err := w.fsw.Add(d); err != nil {
				addErr = err
				continue
			}
			w.watched[d] = true
		}
	}
	base, err := filepath.EvalSymlinks(filepath.Dir(w.abs))
	ok := err == nil && w.watched[base]
	if ok != w.notifyOK {
		if ok {
			w.log.Info("config watch: file notifications active", "path", w.path)
		} else {
			if addErr == nil {
				addErr = err
			}
			w.log.Warn("config watch: cannot watch the file's directory; polling", "path", w.path,
				"interval", w.pollInterval(), "error", addErr)
		}
	}
	w.notifyOK = ok
}

// pollInterval is the effective polling period while notifications are
// unavailable.
func (w *watcher) pollInterval() time.Duration {
	if w.poll > 0 {
		return w.poll
	}
	return DefaultPollInterval
}

// linkChain lists path, every symlink hop's target and the fully resolved
// file, each also with its directory resolved (inotify reports real
// directory names). An event on any of these, or on a directory that
// contains one (a swapped ..data link), may change what path reads.
func linkChain(path string) []string {
	out := []string{path}
	cur := path
	for range 40 { // the kernel's own symlink limit
		t, err := os.Readlink(cur)
		if err != nil {
			break
		}
		if !filepath.IsAbs(t) {
			t = filepath.Join(filepath.Dir(cur), t)
		}
		cur = filepath.Clean(t)
		out = append(out, cur)
	}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		out = append(out, real)
	}
	for _, p := range out[:len(out):len(out)] {
		if d, err := filepath.EvalSymlinks(filepath.Dir(p)); err == nil {
			out = append(out, filepath.Join(d, filepath.Base(p)))
		}
	}
	return out
}

func (w *watcher) isRelevant(name string) bool {
	name = filepath.Clean(name)
	for _, p := range w.relevant {
		if p == name || strings.HasPrefix(p, name+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

func (w *watcher) loop(ctx context.Context) {
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w.fsw != nil {
		events, errs = w.fsw.Events, w.fsw.Errors
	}
	tick := time.NewTicker(w.pollInterval())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok { // notifications are gone: let the ticker poll
				events, w.fsw, w.notifyOK = nil, nil, false
				continue
			}
			name := filepath.Clean(ev.Name)
			if w.watched[name] && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				// The kernel dropped this watch; syncWatches re-adds the
				// directory if it comes back.
				_ = w.fsw.Remove(name)
				delete(w.watched, name)
			}
			if w.isRelevant(name) {
				w.timer.Reset(debounceDelay)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// Overflow or worse: events may be lost, so look now.
			w.log.Warn("config watch: notification error; re-reading the file", "path", w.path, "error", err)
			w.timer.Reset(debounceDelay)
		case <-w.timer.C:
			w.syncWatches()
			w.check(false)
		case <-tick.C:
			w.syncWatches()
			if w.poll > 0 || !w.notifyOK {
				w.check(false)
			}
		}
	}
}

// check reads the file and, if its state changed since the last check,
// reloads. The initial check only records the state unless the file no
// longer matches what the store serves (it changed between Load and Watch).
// A missing, empty or invalid file is acted on only once it has stayed so
// for settleDelay.
func (w *watcher) check(initial bool) {
	data, err := readConfigFile(w.ctx, w.path, w.readTimeout)
	if w.ctx.Err() != nil {
		return // shutting down: nothing to report
	}
	var st fileState
	missing := false
	switch {
	case err == nil:
		st.exists, st.hash = true, sha256.Sum256(data)
	case errors.Is(err, fs.ErrNotExist):
		missing = true
	default:
		st.errMsg = err.Error()
	}
	if w.haveLast && st == w.last {
		w.hasPending = false
		return
	}

	cur := w.store.Current()
	var next *Snapshot
	var lerr error
	switch {
	case err == nil:
		next, lerr = Parse(w.path, data, w.env)
	case missing && !w.explicit && !cur.FileExists:
		// Still (or again) absent while the defaults serve: the same
		// answer Load gives at startup.
		next, lerr = defaults(w.env)
	case missing:
		lerr = fmt.Errorf("config file removed: %w", err)
	default:
		lerr = fmt.Errorf("read config: %w", err)
	}
	if suspect := lerr != nil || (err == nil && len(data) == 0); suspect && !initial {
		if !w.hasPending || w.pending != st {
			w.pending, w.hasPending, w.pendingAt = st, true, time.Now()
		}
		if wait := settleDelay - time.Since(w.pendingAt); wait > 0 {
			w.timer.Reset(wait)
			return
		}
	}
	w.hasPending = false
	w.last, w.haveLast = st, true
	if initial && lerr == nil && next.Equal(cur) {
		return
	}

	result := w.store.Apply(next, lerr, w.now())
	switch result {
	case ResultOK:
		w.log.Info("config reloaded", "path", w.path,
			"phase", next.Policy.Phase.String(), "phase_source", string(next.PhaseSource),
			"previous_phase", cur.Policy.Phase.String(),
			"fallback", next.Policy.FallbackEnabled, "fallback_source", string(next.FallbackSource))
		for _, p := range next.Warnings {
			w.log.Warn("config warning", "path", w.path, "problem", p.String())
		}
	case ResultError:
		w.log.Error("config reload failed; keeping the last good configuration", "path", w.path,
			"error", lerr, "phase", cur.Policy.Phase.String())
	default:
		w.log.Debug("config file changed, configuration unchanged", "path", w.path)
	}
}
