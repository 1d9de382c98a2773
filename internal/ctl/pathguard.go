package ctl

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// editTarget is where an edit command (set-phase, fallback) checks, before
// writing, that the file it edits is the one the router watches. A rollback
// written to a mistyped --config path used to create that file and report
// success while the router kept routing to rust.
type editTarget struct {
	router  string
	timeout time.Duration
	force   bool
}

// defineEditTarget registers --router and --timeout on an edit command;
// force is the command's --force.
func defineEditTarget(fs *flag.FlagSet, force *bool) func() editTarget {
	router := fs.String("router", defaultRouter(), "the running router's gRPC `ADDR`, asked which file it watches (host:port or unix:/path)")
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for the router")
	return func() editTarget { return editTarget{router: *router, timeout: *timeout, force: *force} }
}

// checkTarget refuses, unless --force, to create a config file that does
// not exist yet, and to edit a file other than the one a reachable router
// watches. It returns ExitOK to go on. With no router reachable there is
// nothing to compare, and an existing file is edited as before.
func (a *app) checkTarget(f *configFile, t editTarget) int {
	if t.force {
		return ExitOK
	}
	if !f.exists {
		if _, err := os.Stat(filepath.Dir(f.path)); err != nil {
			// The write fails anyway, with the hint that fits (/etc/pve
			// not mounted: pve-cluster down).
			return ExitOK
		}
		return a.failf([]string{
			fmt.Sprintf("check the path: a running router shows the file it watches in: %s status", prog),
			"pass --force to create " + f.path,
		}, "%s does not exist; creating a new config file needs --force, since a mistyped --config would otherwise be written and change nothing; nothing was changed", f.path)
	}
	resp, err := fetchStatus(a.ctx, t.router, t.timeout)
	if err != nil {
		return ExitOK
	}
	a.routerSeen = resp
	watched := resp.GetConfigPath()
	if watched == "" || sameFile(f.path, watched) {
		return ExitOK
	}
	return a.failf([]string{
		fmt.Sprintf("edit the router's file: %s ... --config %s", prog, watched),
		"or pass --force to edit " + f.path + " anyway (a router started with it later will read it)",
	}, "the router at %s watches %s, not %s: this edit would change nothing it serves; nothing was changed", t.router, watched, f.path)
}

// sameFile reports whether a and b name the same file: the same inode when
// both can be opened, else the same cleaned absolute path.
func sameFile(a, b string) bool {
	if sa, err := os.Stat(a); err == nil {
		if sb, err := os.Stat(b); err == nil {
			return os.SameFile(sa, sb)
		}
	}
	aa, err1 := filepath.Abs(a)
	ab, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && filepath.Clean(aa) == filepath.Clean(ab)
}
