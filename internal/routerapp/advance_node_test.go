package routerapp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/routing"
)

// TestAdvanceMovesTheNodeTable: one node first, the PVE way: the top
// level is perl-only and [nodes.pve1] runs rust-read-only. The router's
// plan is about pve1's phase, so advance moves [nodes.pve1] one phase and
// leaves the top level (every other node) alone. It used to edit the top
// level, which set-phase refused as "2 phases ahead" even with --force.
// Advance also refuses a --config the router does not watch.
func TestAdvanceMovesTheNodeTable(t *testing.T) {
	const conf = "phase = \"perl-only\"\n[gate]\nenabled = true\n[nodes.pve1]\nphase = \"rust-read-only\"\n"
	r := startRouter(t, conf)
	load := func(path string) *config.Snapshot {
		t.Helper()
		s, err := config.Load(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	other := filepath.Join(filepath.Dir(r.conf), "other.conf")
	data, err := os.ReadFile(r.conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, data, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCtl("advance", "--force", "--config", other, "--router", "unix:"+r.sock)
	if code != 1 || !strings.Contains(errs, r.conf) || !strings.Contains(errs, other) {
		t.Fatalf("advance on a file the router does not watch: exit %d\n%s", code, errs)
	}
	if s := load(other); s.FileNodes["pve1"] != routing.RustReadOnly || s.Policy.Phase != routing.PerlOnly {
		t.Fatalf("the refused advance changed %s", other)
	}

	code, out, errs := r.ctl(t, "advance", "--force")
	if code != 0 || !strings.Contains(out, "[nodes.pve1]") {
		t.Fatalf("advance --force with a node table: exit %d\n%s\n%s", code, out, errs)
	}
	s := load(r.conf)
	if s.FileNodes["pve1"] != routing.RustBasicWrite || s.Policy.Phase != routing.PerlOnly {
		t.Fatalf("after advance: top %s, pve1 %s; want top perl-only, pve1 rust-basic-write", s.Policy.Phase, s.FileNodes["pve1"])
	}
}
