// Package killswitch is the node-local rollback that works without quorum.
// pmxcfs (/etc/pve) turns read-only on a node that loses quorum, exactly
// when an operator may need to roll back, so the switch is a plain file on
// the node's own disk (as Proxmox's firewall switch is): while it exists,
// the router on that node sends every request to Perl. Its existence is
// all that counts; its content is a note for humans and is never parsed,
// so no mistake in it can keep the switch from working.
package killswitch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// DefaultPath is the contract's default: outside /etc/pve, kept across a
// reboot (/var/lib, not /run).
const DefaultPath = "/var/lib/pve-migration-router/perl-only"

// DefaultInterval is how often Watch looks at the file: four times a
// second keeps the contract's "within a second" with margin, for the cost
// of one stat.
const DefaultInterval = 250 * time.Millisecond

// On reports whether the switch is on. A file that cannot be examined (a
// permission problem on its directory) counts as on, with the error:
// when in doubt, Perl is the safe side.
func On(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		// ENOTDIR: a component of the path is a file, so the switch
		// cannot exist there.
		return false, nil
	}
	return true, fmt.Errorf("kill switch %s: %w", path, err)
}

// Create turns the switch on: it writes note to path (creating the
// directory) and syncs the file and its directory so the switch survives a
// crash or a reboot. It reports whether the switch was already on.
func Create(path, note string) (already bool, err error) {
	if _, err := os.Stat(path); err == nil {
		already = true
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return already, fmt.Errorf("create kill switch %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, ".perl-only.tmp.*")
	if err != nil {
		return already, fmt.Errorf("create kill switch %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this is a no-op
	if _, err := tmp.WriteString(note); err != nil {
		_ = tmp.Close()
		return already, fmt.Errorf("create kill switch %s: %w", path, err)
	}
	_ = tmp.Sync()
	if err := tmp.Close(); err != nil {
		return already, fmt.Errorf("create kill switch %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return already, fmt.Errorf("create kill switch %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return already, fmt.Errorf("create kill switch %s: %w", path, err)
	}
	syncDir(dir)
	return already, nil
}

// Remove turns the switch off. It reports whether the switch was on.
func Remove(path string) (wasOn bool, err error) {
	err = os.Remove(path)
	switch {
	case err == nil:
		syncDir(filepath.Dir(path))
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return true, fmt.Errorf("remove kill switch %s: %w", path, err)
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// Watch reports the switch's state to set at once and after every change
// until ctx ends, looking every interval (DefaultInterval when zero or
// negative). Polling a stat is cheap and, unlike inotify, cannot miss a
// file created before its directory existed.
func Watch(ctx context.Context, path string, interval time.Duration, set func(on bool), log *slog.Logger) {
	if interval <= 0 {
		interval = DefaultInterval
	}
	if log == nil {
		log = slog.Default()
	}
	var last, known bool
	var lastErr string
	look := func() {
		on, err := On(path)
		if msg := fmt.Sprint(err); err != nil && msg != lastErr {
			log.Warn("kill switch cannot be examined; treating it as on (everything to perl)", "path", path, "error", err)
		}
		lastErr = fmt.Sprint(err)
		if known && on == last {
			return
		}
		if known || on {
			if on {
				log.Warn("kill switch on: every request on this node goes to perl", "path", path)
			} else {
				log.Info("kill switch off: routing follows the config again", "path", path)
			}
		}
		last, known = on, true
		set(on)
	}
	look()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			look()
		}
	}
}
