package ctl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pve-migration/router/internal/config"
)

// TestStatusFindsPackagedRouter: on a node installed from the Debian
// package the router listens on its unix socket, not on 127.0.0.1:50051;
// status without --router must reach it there, and fall back to the TCP
// default when the socket is absent (or a plain file).
func TestStatusFindsPackagedRouter(t *testing.T) {
	dir := fixtureDir(t)
	path := filepath.Join(dir, "commented.conf")
	snap, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	store := config.NewStore(snap)

	old := packagedSocket
	t.Cleanup(func() { packagedSocket = old })

	t.Run("socket present", func(t *testing.T) {
		// A short path: unix socket paths are limited to 108 bytes.
		sockDir, err := os.MkdirTemp("", "pmr")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
		packagedSocket = filepath.Join(sockDir, "extproc.sock")
		uaddr := startRouter(t, "unix", packagedSocket, store, nil)
		r := run(t, nil, "", "status", "--config", path)
		if r.code != 0 || !strings.Contains(r.stdout, "router     up "+uaddr) {
			t.Errorf("status without --router did not reach the packaged socket: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("socket absent", func(t *testing.T) {
		packagedSocket = filepath.Join(t.TempDir(), "none.sock")
		if got := defaultRouter(); got != DefaultRouterAddr {
			t.Errorf("defaultRouter() = %q, want %q", got, DefaultRouterAddr)
		}
	})
	t.Run("plain file", func(t *testing.T) {
		packagedSocket = filepath.Join(t.TempDir(), "extproc.sock")
		if err := os.WriteFile(packagedSocket, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if got := defaultRouter(); got != DefaultRouterAddr {
			t.Errorf("defaultRouter() = %q, want %q", got, DefaultRouterAddr)
		}
	})
}
