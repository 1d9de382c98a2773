package config

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultReadTimeout bounds one read of the config file. /etc/pve is
// pmxcfs, a FUSE file system that can hang (lost quorum, a wedged
// daemon); a read stuck there must not freeze the watcher, and with it
// every later reload, rollback included, nor hold up shutdown.
const DefaultReadTimeout = 5 * time.Second

// maxBlockedReads caps the reads that may be stuck in the kernel at once.
// A blocked read cannot be cancelled; each one holds a goroutine until the
// file system answers. Beyond the cap a check fails at once instead of
// starting yet another read.
const maxBlockedReads = 4

// maxConfigBytes is far above any real configuration; a larger file is
// refused instead of being read into memory.
const maxConfigBytes = 4 << 20

// ErrReadTimeout is a config read that did not finish in time.
var ErrReadTimeout = errors.New("config read timed out (a hung file system, e.g. pmxcfs?)")

// errNotRegular is a config path that is not a regular file (a FIFO, a
// device, a directory): reading it could block or never end.
var errNotRegular = errors.New("not a regular file")

// blockedReads counts reads still running after their caller gave up.
var blockedReads atomic.Int32

// readFileFunc reads a config file; tests of the time bound replace it
// with one that blocks, since no test machine has a hung FUSE mount.
var readFileFunc = readRegularFile

// readRegularFile reads path if it is a regular file. It opens without
// blocking (O_NONBLOCK: opening a FIFO with no writer would wait for
// one) and checks the opened file, so a FIFO swapped in at the config path
// is refused instead of read.
func readRegularFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w (%v)", path, errNotRegular, fi.Mode().Type())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxConfigBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxConfigBytes)
	}
	return data, nil
}

// readConfigFile reads path within timeout (DefaultReadTimeout if not
// positive) or until ctx ends, whichever comes first. The read runs on a
// goroutine of its own, so a read the kernel never finishes costs that
// goroutine, not the caller: the caller gets ErrReadTimeout (or ctx's
// error) and carries on. Errors keep os.ReadFile's fs.ErrNotExist.
func readConfigFile(ctx context.Context, path string, timeout time.Duration) ([]byte, error) {
	if timeout <= 0 {
		timeout = DefaultReadTimeout
	}
	if n := blockedReads.Load(); n >= maxBlockedReads {
		return nil, fmt.Errorf("read %s: %w: %d earlier reads are still blocked", path, ErrReadTimeout, n)
	}
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1) // buffered: a late read never blocks
	// state: 0 running, 1 finished in time, 2 abandoned by the caller.
	var state atomic.Int32
	read := readFileFunc
	go func() {
		data, err := read(path)
		if !state.CompareAndSwap(0, 1) {
			blockedReads.Add(-1) // the caller counted it as blocked
		}
		done <- result{data, err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	var why error
	select {
	case r := <-done:
		return r.data, r.err
	case <-t.C:
		why = fmt.Errorf("read %s: %w after %v", path, ErrReadTimeout, timeout)
	case <-ctx.Done():
		why = ctx.Err()
	}
	blockedReads.Add(1)
	if !state.CompareAndSwap(0, 2) {
		// It finished just now: use the answer after all.
		blockedReads.Add(-1)
		r := <-done
		return r.data, r.err
	}
	return nil, why
}
