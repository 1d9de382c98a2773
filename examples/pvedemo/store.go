package pvedemo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// File names inside the state directory. The first two are the names the
// contract fixes; the lock file mirrors PVE's /etc/network/.pve-interfaces.lock.
const (
	fileInterfaces    = "interfaces"
	fileInterfacesNew = "interfaces.new"
	fileNetworkLock   = ".pve-interfaces.lock"
	fileSDN           = "sdn.json"
	fileSDNLock       = ".pve-sdn.lock"
)

// lockTimeout is PVE's own timeout for the interfaces lock (lock_file with 10 s).
const lockTimeout = 10 * time.Second

// store is the state directory. Two backends (perl and rust, possibly in
// different processes) share one directory, so every access goes through an
// flock(2) on a lock file and every write is a rename of a complete temporary
// file: a reader never sees half a file, and two writers never interleave.
// Nothing is cached, so a write made through one backend is read back through
// the other on the very next request.
type store struct {
	dir string
}

// lock takes an flock on the named lock file, shared for readers and
// exclusive for writers. It polls with LOCK_NB instead of blocking so that a
// cancelled request or the 10 s timeout can end the wait.
func (st *store) lock(ctx context.Context, name string, exclusive bool) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(st.dir, name), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	deadline := time.Now().Add(lockTimeout)
	delay := time.Millisecond
	for {
		err = syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return func() {
				// Closing the descriptor releases the flock as well.
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("flock %s: %w", name, err)
		}
		if time.Now().After(deadline) {
			_ = f.Close()
			return nil, fmt.Errorf("can't lock file '%s' - got timeout", name)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("waiting for lock %s: %w", name, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, 20*time.Millisecond)
	}
}

// read returns a file's content; ok is false when it does not exist.
func (st *store) read(name string) (data []byte, mtime time.Time, ok bool, err error) {
	f, err := os.Open(filepath.Join(st.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, time.Time{}, false, nil
	}
	if err != nil {
		return nil, time.Time{}, false, fmt.Errorf("read state: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, false, fmt.Errorf("stat state: %w", err)
	}
	data, err = io.ReadAll(f)
	if err != nil {
		return nil, time.Time{}, false, fmt.Errorf("read state %s: %w", name, err)
	}
	return data, fi.ModTime(), true, nil
}

// write replaces a file atomically: temporary file, fsync, rename.
func (st *store) write(name string, data []byte) error {
	tmp, err := os.CreateTemp(st.dir, "."+name+".tmp-*")
	if err != nil {
		return fmt.Errorf("write state %s: %w", name, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write state %s: %w", name, err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("sync state %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close state %s: %w", name, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("chmod state %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(st.dir, name)); err != nil {
		return fmt.Errorf("rename state %s: %w", name, err)
	}
	return nil
}

// rename moves one state file over another (apply: interfaces.new → interfaces).
func (st *store) rename(from, to string) error {
	if err := os.Rename(filepath.Join(st.dir, from), filepath.Join(st.dir, to)); err != nil {
		return fmt.Errorf("rename %s to %s: %w", from, to, err)
	}
	return nil
}

// remove deletes a state file; a missing file is not an error.
func (st *store) remove(name string) error {
	err := os.Remove(filepath.Join(st.dir, name))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}
