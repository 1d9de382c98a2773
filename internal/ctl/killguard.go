package ctl

import (
	"flag"
	"fmt"
	"path/filepath"
)

// flagSet reports whether the command line set flag name (not its default).
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// killSwitchPath is the kill switch file that `set-phase perl-only --local`
// and `kill-switch on|off` act on. The router on this node is asked which
// file it watches: a switch created at another path (a typo, or a router
// started with its own --kill-switch) would report a rollback while the
// router keeps routing to rust. With the default path the router's is
// used; an explicit --kill-switch that differs is refused unless --force.
// With no router reachable there is nothing to compare, and path stands.
// It returns the path and ExitOK to go on.
func (a *app) killSwitchPath(path string, explicit bool, t editTarget) (string, int) {
	if t.force || t.router == "" {
		return path, ExitOK
	}
	resp, err := fetchStatus(a.ctx, t.router, t.timeout)
	if err != nil {
		return path, ExitOK
	}
	watched := resp.GetNode().GetKillSwitchPath()
	if watched == "" || !filepath.IsAbs(watched) || sameFile(path, watched) {
		// A relative path is the router's own directory's business: it
		// cannot be compared from here.
		return path, ExitOK
	}
	if !explicit {
		fmt.Fprintf(a.stdout, "the router at %s watches the kill switch %s: using it\n", t.router, watched)
		return watched, ExitOK
	}
	return "", a.failf([]string{
		"use the router's: --kill-switch " + watched,
		"or pass --force to use " + path + " anyway (a router started with it later will read it)",
	}, "the router at %s watches the kill switch %s, not %s: this would change nothing it serves; nothing was changed", t.router, watched, path)
}
