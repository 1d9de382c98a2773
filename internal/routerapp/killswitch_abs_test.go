package routerapp

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestKillSwitchPathIsAbsolute: the router reports its kill switch in
// status, and migration-ctl (run from any directory) creates that file;
// a relative --kill-switch must be reported resolved.
func TestKillSwitchPathIsAbsolute(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	f := flags{node: "pve1", killSwitch: "var/perl-only", stateInterval: time.Second}
	if err := f.validateNode(); err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(wd, "var", "perl-only"); f.killSwitch != want {
		t.Errorf("kill switch %q, want %q", f.killSwitch, want)
	}
}
