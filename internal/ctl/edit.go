package ctl

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/internal/killswitch"
	"github.com/pve-migration/router/internal/tomledit"
	"github.com/pve-migration/router/routing"
)

func setPhaseCommand() *command {
	var names []string
	for _, p := range routing.Phases() {
		names = append(names, p.String())
	}
	return &command{
		name:    "set-phase",
		args:    "PHASE",
		summary: "change the migration phase in the config file (rollback: set-phase perl-only)",
		details: `Sets "phase" in the config file and shows which request categories move to
rust or back to perl. Only that value changes: comments, key order and every
other key stay as they are. The result is validated with the router's loader
before anything is replaced, and the file is replaced atomically (a temporary
file in the same directory, fsync, rename), so the router watching it never
reads a half-written file. A missing file is created from the
generate-config template.

Phases, in order: ` + strings.Join(names, ", ") + `.
Advancing more than one phase at once needs --force: each step should be
watched (` + prog + ` status) before the next. Moving back, and rolling back to
perl-only in particular, is always allowed and takes effect at the next
reload, within seconds.

PVE_NETWORK_MIGRATION_PHASE, when set in the router's environment, overrides
the file: the change has no effect there until it is unset.

In a cluster, --node NAME changes only that node's [nodes.NAME] table (one
node first, the rest later). set-phase perl-only without --node also sets
every node table to perl-only, in the same single write: the rollback stays
one command. When /etc/pve is read-only (no quorum), --local rolls back the
node it runs on through its kill switch instead.`,
		examples: []string{
			prog + " set-phase rust-read-only --dry-run",
			prog + " set-phase rust-read-only",
			prog + " set-phase perl-only          # rollback",
			prog + " set-phase rust-read-only --node pve1",
			prog + " set-phase perl-only --local  # this node, without quorum",
		},
		minArgs: 1,
		maxArgs: 1,
		define: func(fs *flag.FlagSet) runFunc {
			o := &phaseOptions{}
			fs.BoolVar(&o.dryRun, "dry-run", false, "show the change and the diff; write nothing")
			fs.BoolVar(&o.force, "force", false, "allow advancing more than one phase at once, creating the file, or editing a file the router does not watch")
			fs.StringVar(&o.node, "node", "", "change only this node's [nodes.`NAME`] table (created if missing)")
			fs.BoolVar(&o.local, "local", false, "perl-only on this node alone, without writing the config: create the kill switch (works without quorum)")
			fs.StringVar(&o.killSwitch, "kill-switch", killswitch.DefaultPath, "the kill switch file `PATH` for --local (the router's --kill-switch)")
			target := defineEditTarget(fs, &o.force)
			return func(a *app, cfg configFlag, args []string) int {
				a.target = target()
				o.killSwitchSet = flagSet(fs, "kill-switch")
				return a.setPhaseRouted(cfg, args[0], *o)
			}
		},
	}
}

func fallbackCommand() *command {
	return &command{
		name:    "fallback",
		args:    "true|false",
		summary: "turn the retry of failed rust attempts on perl on or off",
		details: `Sets "fallback_enabled" in the config file, with the same safe editing as
set-phase (only the value changes; validated; atomic replace).

With fallback on, a rust attempt that fails or times out is retried on perl
where nothing can have changed: GETs on any error, writes only when rust never
received them or answered 501. With it off, clients see rust's errors: useful
to measure rust alone, risky in production. An endpoint's
fallback_on_error = false keeps fallback off for its template either way.
PVE_NETWORK_MIGRATION_FALLBACK, when set, overrides the file.`,
		examples: []string{
			prog + " fallback false --dry-run",
			prog + " fallback true",
		},
		minArgs: 1,
		maxArgs: 1,
		define: func(fs *flag.FlagSet) runFunc {
			dryRun := fs.Bool("dry-run", false, "show the change and the diff; write nothing")
			force := fs.Bool("force", false, "create the file, or edit a file the router does not watch")
			target := defineEditTarget(fs, force)
			return func(a *app, cfg configFlag, args []string) int {
				a.target = target()
				return a.setFallback(cfg, args[0], *dryRun)
			}
		},
	}
}

// configFile is the config file as read before an edit.
type configFile struct {
	path   string
	data   []byte // the template when the file does not exist
	exists bool
	old    []byte // exactly what was read; nil when absent
}

func (a *app) readForEdit(cfg configFlag) (*configFile, int) {
	path, _ := cfg.resolve(a.getenv)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		return &configFile{path: path, data: data, exists: true, old: data}, ExitOK
	case errors.Is(err, fs.ErrNotExist):
		return &configFile{path: path, data: []byte(configTemplate)}, ExitOK
	}
	return nil, a.failf(writeHints(err), "cannot read %s: %v", path, err)
}

// edit sets one top-level key, validates the result with the router's
// parser and either shows the diff (dry run) or replaces the file. It
// returns the parsed new snapshot, or ok=false after printing why nothing
// was changed.
func (a *app) edit(f *configFile, key string, value any) ([]byte, *config.Snapshot, bool) {
	edited, err := tomledit.Set(f.data, key, value)
	if err != nil {
		a.failf([]string{"edit the file by hand, then check it with: " + prog + " validate --config " + f.path},
			"cannot edit %s: %v; nothing was changed", f.path, err)
		return nil, nil, false
	}
	// Validate without environment overrides: the question is whether the
	// file is good, not whether this shell's variables are.
	snap, err := config.Parse(f.path, edited, nil)
	if err != nil {
		var ve *config.ValidationError
		if errors.As(err, &ve) {
			fmt.Fprintf(a.stderr, "error: %s would not load after this edit (%s); nothing was changed:\n",
				f.path, plural(len(ve.Problems), "problem"))
			for _, p := range ve.Problems {
				fmt.Fprintf(a.stderr, "  %s\n", p)
			}
		} else {
			fmt.Fprintf(a.stderr, "error: %s would not load after this edit: %v; nothing was changed\n", f.path, err)
		}
		fmt.Fprintf(a.stderr, "hint: fix those lines first (%s validate --config %s); the router keeps its last good configuration meanwhile\n", prog, f.path)
		// The kill switch first: it needs neither a valid file nor a
		// restart (the environment override needs both a unit edit and a
		// restart, which is what an operator in a hurry gets wrong).
		fmt.Fprintf(a.stderr, "hint: to roll back while the file cannot be fixed: %s set-phase perl-only --local on each node (kill switch, no restart)\n", prog)
		return nil, nil, false
	}
	return edited, snap, true
}

// commit writes the edited file and then prints the plan (what changed),
// or for a dry run prints the plan and the diff. A failed write prints only
// the error, so nothing suggests that a change was made.
func (a *app) commit(f *configFile, edited []byte, dryRun bool, plan func()) int {
	if dryRun {
		plan()
		_, _ = fmt.Fprint(a.stdout, "\n"+unifiedDiff(f.path, f.old, edited, f.exists))
		fmt.Fprintf(a.stdout, "dry run: %s not changed\n", f.path)
		return ExitOK
	}
	if code := a.checkTarget(f, a.target); code != ExitOK {
		return code
	}
	if err := replaceFile(f.path, edited, unchangedSince(f)); err != nil {
		return a.failf(writeHints(err), "%v", err)
	}
	plan()
	verb := "updated"
	if !f.exists {
		verb = "created"
	}
	fmt.Fprintf(a.stdout, "%s %s; a running router applies it at its next reload (seconds); check with: %s status\n", verb, f.path, prog)
	return ExitOK
}

func (a *app) setPhase(cfg configFlag, arg string, dryRun, force bool) int {
	target, err := routing.ParsePhase(arg)
	if err != nil {
		return a.usageError("set-phase", err.Error())
	}
	f, code := a.readForEdit(cfg)
	if f == nil {
		return code
	}
	v, present, err := tomledit.Lookup(f.data, "phase")
	if err != nil {
		return a.failf([]string{"fix the file by hand, then check it with: " + prog + " validate --config " + f.path},
			"cannot edit %s: %v; nothing was changed", f.path, err)
	}
	cur, curKnown := routing.PerlOnly, true
	curText := cur.String()
	switch {
	case !f.exists:
		curText += " (no file: built-in default)"
	case !present:
		curText += " (not set: default)"
	default:
		if cur, err = routing.ParsePhase(v.String()); err != nil {
			curKnown, curText = false, fmt.Sprintf("%s (invalid)", v.Raw)
		} else {
			curText = cur.String()
		}
	}
	defer a.envOverrideWarning(config.EnvPhase, "phase")

	if f.exists && curKnown && cur == target {
		fmt.Fprintf(a.stdout, "phase is already %s in %s; nothing to change\n", target, f.path)
		return ExitOK
	}
	if !force && target != routing.PerlOnly {
		if !curKnown {
			return a.failf([]string{
				fmt.Sprintf("the router keeps serving its last good phase; see it with: %s status", prog),
				"pass --force to set " + target.String() + " anyway",
			}, "the file's phase %s is not valid, so how far %s moves cannot be checked; nothing was changed", v.Raw, target)
		}
		if target > cur+1 {
			next := cur + 1
			return a.failf([]string{
				fmt.Sprintf("advance one phase at a time (next: %s set-phase %s) and check %s status between steps", prog, next, prog),
				"or pass --force to jump straight to " + target.String(),
			}, "%s is %d phases ahead of %s; nothing was changed", target, int(target-cur), cur)
		}
	}
	edited, snap, ok := a.edit(f, "phase", target.String())
	if !ok {
		return ExitFailure
	}
	code = a.commit(f, edited, dryRun, func() {
		fmt.Fprintf(a.stdout, "phase: %s → %s\n", curText, a.style.bold(target.String()))
		if curKnown {
			a.printMoves(snap, &cur, target)
		} else {
			a.printMoves(snap, nil, target)
		}
	})
	if code == ExitOK && !dryRun {
		return a.routerPhasePinned(target)
	}
	return code
}

// printMoves shows, per category, the backend before and after a phase
// change, computed with routing.Decide and the file's feature flags, so
// the operator sees exactly what will move before it moves.
func (a *app) printMoves(snap *config.Snapshot, from *routing.Phase, to routing.Phase) {
	pol := snap.Policy
	decide := func(ph routing.Phase, c routing.Category) routing.Decision {
		p := pol
		p.Phase = ph
		p.Endpoints = nil // per-template rules are listed separately
		return routing.DecideClassified(&p, "GET", "", routing.Classification{Category: c})
	}
	s := a.style
	var toRust, toPerl, held []string
	t := &table{}
	t.add("category", "before", "after")
	for _, c := range routing.Categories() {
		if c == routing.NotNetwork {
			continue
		}
		after := decide(to, c)
		before := "?"
		note := ""
		if from != nil {
			b := decide(*from, c)
			before = b.Backend.String()
			switch {
			case b.Backend == routing.Perl && after.Backend == routing.Rust:
				note = s.good("moves to rust")
				toRust = append(toRust, c.String())
			case b.Backend == routing.Rust && after.Backend == routing.Perl:
				note = s.warn("moves back to perl")
				toPerl = append(toPerl, c.String())
			}
		}
		if after.Reason == routing.ReasonFeatureDisabled && to != routing.PerlOnly {
			if m := featureBlocking(c); m != "" && firstRustAtOrBefore(c, to) {
				note = "held on perl by " + m + " = false"
				held = append(held, c.String())
			}
		}
		t.add(c.String(), s.backend(before), s.backend(after.Backend.String()), note)
	}
	t.write(a.stdout, "  ")
	switch {
	case from == nil:
	case len(toRust) == 0 && len(toPerl) == 0:
		fmt.Fprintf(a.stdout, "no category changes backend")
		if len(held) > 0 {
			fmt.Fprintf(a.stdout, " (%s held back by a feature flag in [features])", strings.Join(held, ", "))
		}
		fmt.Fprintln(a.stdout)
	default:
		if len(toRust) > 0 {
			fmt.Fprintf(a.stdout, "moves to rust: %s\n", strings.Join(toRust, ", "))
		}
		if len(toPerl) > 0 {
			fmt.Fprintf(a.stdout, "moves back to perl: %s\n", strings.Join(toPerl, ", "))
		}
	}
	if to == routing.PerlOnly {
		fmt.Fprintln(a.stdout, "perl-only overrides every endpoint rule: all requests go to perl")
		return
	}
	if rules := overrideRules(pol); len(rules) > 0 {
		fmt.Fprintf(a.stdout, "endpoint rules still decide their templates: %s\n", strings.Join(rules, "; "))
	}
}

// featureBlocking names the feature flag that can hold a category back.
func featureBlocking(c routing.Category) string {
	switch c {
	case routing.NodeNetworkAdvancedWrite:
		return "features.enable_advanced_networking"
	case routing.SDNRead, routing.SDNWrite:
		return "features.enable_sdn_migration"
	}
	return ""
}

func firstRustAtOrBefore(c routing.Category, ph routing.Phase) bool {
	first, ok := firstRustPhase(c)
	return ok && first <= ph
}

// overrideRules lists the endpoint rules that set use_rust, sorted by
// template, as "TEMPLATE use_rust = X [methods]".
func overrideRules(p routing.Policy) []string {
	var out []string
	for _, tmpl := range routing.Templates() {
		r, ok := p.Endpoints[tmpl]
		if !ok || r.UseRust == nil {
			continue
		}
		s := fmt.Sprintf("%s use_rust = %t", tmpl, *r.UseRust)
		if *r.UseRust && r.RustMethods != nil {
			s += " for " + strings.Join(r.RustMethods, ", ")
		}
		out = append(out, s)
	}
	return out
}

func (a *app) setFallback(cfg configFlag, arg string, dryRun bool) int {
	target, ok := parseBoolArg(arg)
	if !ok {
		return a.usageError("fallback", fmt.Sprintf("expected true or false, got %q", arg))
	}
	f, code := a.readForEdit(cfg)
	if f == nil {
		return code
	}
	v, present, err := tomledit.Lookup(f.data, "fallback_enabled")
	if err != nil {
		return a.failf([]string{"fix the file by hand, then check it with: " + prog + " validate --config " + f.path},
			"cannot edit %s: %v; nothing was changed", f.path, err)
	}
	cur := routing.DefaultPolicy().FallbackEnabled
	curText := fmt.Sprint(cur)
	curKnown := true
	switch {
	case !f.exists:
		curText += " (no file: built-in default)"
	case !present:
		curText += " (not set: default)"
	case v.Raw == "true" || v.Raw == "false":
		cur = v.Raw == "true"
		curText = v.Raw
	default:
		curKnown, curText = false, v.Raw+" (invalid)"
	}
	defer a.envOverrideWarning(config.EnvFallback, "fallback_enabled")
	if f.exists && curKnown && cur == target {
		fmt.Fprintf(a.stdout, "fallback_enabled is already %t in %s; nothing to change\n", target, f.path)
		return ExitOK
	}
	edited, snap, ok := a.edit(f, "fallback_enabled", target)
	if !ok {
		return ExitFailure
	}
	code = a.commit(f, edited, dryRun, func() { a.printFallbackChange(snap, curText, target) })
	if code == ExitOK && !dryRun {
		return a.routerFallbackPinned(target)
	}
	return code
}

// printFallbackChange says what turning fallback on or off means for the
// requests rust serves.
func (a *app) printFallbackChange(snap *config.Snapshot, curText string, target bool) {
	fmt.Fprintf(a.stdout, "fallback_enabled: %s → %s\n", curText, a.style.bold(fmt.Sprint(target)))
	if target {
		fmt.Fprintln(a.stdout, "a failed or timed-out rust attempt is retried on perl where nothing can have changed")
		fmt.Fprintln(a.stdout, "(GET on any error; writes only when rust never received them or answered 501)")
	} else {
		fmt.Fprintln(a.stdout, "a failed or timed-out rust attempt is returned to the client as it is: nothing is retried on perl")
	}
	var pinned []string
	for _, tmpl := range routing.Templates() {
		if r, ok := snap.Policy.Endpoints[tmpl]; ok && r.FallbackOnError != nil && !*r.FallbackOnError {
			pinned = append(pinned, tmpl)
		}
	}
	if target && len(pinned) > 0 {
		fmt.Fprintf(a.stdout, "fallback stays off for %s (fallback_on_error = false)\n", strings.Join(pinned, ", "))
	}
	if snap.Policy.Phase == routing.PerlOnly {
		fmt.Fprintln(a.stdout, "note: phase perl-only sends nothing to rust, so fallback has no effect until you advance")
	}
}

// parseBoolArg accepts true/false and the spellings the environment
// variable accepts.
func parseBoolArg(s string) (bool, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "on", "yes", "1":
		return true, true
	case "false", "off", "no", "0":
		return false, true
	}
	return false, false
}

// envOverrideWarning warns when an environment variable that overrides the
// edited key is set here. This shell's environment is only a hint of the
// router's, but an operator who exported it for a rollback is exactly the
// one who later wonders why set-phase "did nothing".
func (a *app) envOverrideWarning(name, key string) {
	if v := strings.TrimSpace(a.getenv(name)); v != "" {
		a.warnf("%s=%s is set in this shell; where the router runs with it, it overrides %s in the file and this change has no effect until it is unset and the router restarted (%s status shows where the router's value comes from)",
			name, v, key, prog)
	}
}

// replaceFile writes data to path so that a reader (the router's watcher,
// another node through pmxcfs) sees either the old or the new content,
// never a truncated or half-written file: the data goes to a temporary file
// in the same directory (PVE's own "NAME.tmp.*" pattern), is fsynced and
// renamed over path, and the directory is fsynced so the rename survives a
// crash. A symlink is followed, not replaced. check, if non-nil, runs just
// before the rename and can abort it (the file changed meanwhile). On any
// error the temporary file is removed.
func replaceFile(path string, data []byte, check func() error) (err error) {
	target := path
	if r, e := filepath.EvalSymlinks(path); e == nil {
		target = r
	}
	dir := filepath.Dir(target)
	mode := os.FileMode(0o644)
	if st, e := os.Stat(target); e == nil {
		mode = st.Mode().Perm()
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(target)+".tmp.*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the temporary name means nothing to the operator
		}
		return fmt.Errorf("cannot write %s: cannot create a file in %s: %w", path, dir, err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil && !syncUnsupported(err) {
		return fmt.Errorf("cannot write %s: fsync: %w", path, err)
	}
	// pmxcfs has fixed permissions and refuses chmod; that is not a reason
	// to abandon the edit.
	_ = tmp.Chmod(mode)
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	if check != nil {
		if err = check(); err != nil {
			return err
		}
	}
	if err = os.Rename(tmp.Name(), target); err != nil {
		return fmt.Errorf("cannot replace %s: %w", path, err)
	}
	if d, e := os.Open(dir); e == nil {
		// Some file systems cannot fsync a directory; the rename has
		// happened, so that is not a reason to report failure.
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// syncUnsupported reports an fsync the file system cannot do. The rename
// still makes the replace atomic; only durability across a crash is lost,
// which a FUSE file system such as pmxcfs handles on its own.
func syncUnsupported(err error) bool {
	return errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.ENOSYS)
}

// unchangedSince aborts a replace when the file no longer holds what was
// read (another set-phase, an editor, an edit on another node): writing
// would silently undo that change.
func unchangedSince(f *configFile) func() error {
	return func() error {
		cur, err := os.ReadFile(f.path)
		if (err == nil && f.exists && bytes.Equal(cur, f.old)) || (errors.Is(err, fs.ErrNotExist) && !f.exists) {
			return nil
		}
		return fmt.Errorf("%s changed while it was being edited (another set-phase, an editor, another node?); nothing was written: run the command again", f.path)
	}
}

// writeHints says what to do about a failed read or write in /etc/pve.
func writeHints(err error) []string {
	switch {
	case errors.Is(err, syscall.EROFS), errors.Is(err, fs.ErrPermission):
		return []string{
			"run as root; on a PVE node /etc/pve is also read-only while the cluster has no quorum (check: pvecm status)",
			fmt.Sprintf("to roll back this node without writing the file: %s set-phase perl-only --local (the node-local kill switch, no restart)", prog),
			fmt.Sprintf("or set %s=perl-only in the router's environment (systemctl edit pve-migration-router) and restart it", config.EnvPhase),
		}
	case errors.Is(err, fs.ErrNotExist):
		return []string{"the directory does not exist: on a PVE node /etc/pve is mounted by pve-cluster (systemctl status pve-cluster); elsewhere pass --config PATH"}
	}
	return nil
}

// unifiedDiff renders the change from old to new as a unified diff with
// three lines of context: enough for an operator to review a one-line edit.
func unifiedDiff(name string, old, new []byte, oldExists bool) string {
	a, b := splitLines(old), splitLines(new)
	p := 0
	for p < len(a) && p < len(b) && a[p] == b[p] {
		p++
	}
	s := 0
	for s < len(a)-p && s < len(b)-p && a[len(a)-1-s] == b[len(b)-1-s] {
		s++
	}
	if p == len(a) && p == len(b) {
		return ""
	}
	const ctx = 3
	start := max(0, p-ctx)
	endA, endB := min(len(a), len(a)-s+ctx), min(len(b), len(b)-s+ctx)
	var out strings.Builder
	from := name
	if !oldExists {
		from = "/dev/null"
	}
	fmt.Fprintf(&out, "--- %s\n+++ %s\n", from, name)
	fmt.Fprintf(&out, "@@ -%s +%s @@\n", hunkRange(start, endA-start), hunkRange(start, endB-start))
	line := func(prefix, l string) {
		out.WriteString(prefix + strings.TrimRight(l, "\n"))
		out.WriteString("\n")
		if !strings.HasSuffix(l, "\n") {
			out.WriteString("\\ No newline at end of file\n")
		}
	}
	for _, l := range a[start:p] {
		line(" ", l)
	}
	for _, l := range a[p : len(a)-s] {
		line("-", l)
	}
	for _, l := range b[p : len(b)-s] {
		line("+", l)
	}
	for _, l := range a[len(a)-s : endA] {
		line(" ", l)
	}
	return out.String()
}

func hunkRange(start, n int) string {
	if n == 0 {
		return fmt.Sprintf("%d,0", start)
	}
	return fmt.Sprintf("%d,%d", start+1, n)
}

// splitLines splits after each "\n", keeping it, so that a missing final
// newline shows.
func splitLines(b []byte) []string {
	var out []string
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			out = append(out, string(b))
			break
		}
		out = append(out, string(b[:i+1]))
		b = b[i+1:]
	}
	return out
}
