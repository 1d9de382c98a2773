package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pve-migration/router/routing"
)

// TestWatchFIFOAtConfigPath is finding 1 of issue 13: a FIFO put at the
// config path made the watcher block in open(2) for ever, so later edits
// (a rollback included) were never applied, /status kept saying ok and
// shutdown never completed. Now the FIFO is a failed reload, the next edit
// applies, and the watcher stops (startWatch's cleanup waits for that).
func TestWatchFIFOAtConfigPath(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "network-migration.conf")
	writeFile(t, path, phaseConf(routing.RustFull))
	st, _ := startWatch(t, path, WatchOptions{Explicit: true, PollInterval: 20 * time.Millisecond})
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	if err := os.Rename(fifo, path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the FIFO to be reported as a failed reload", func() bool {
		r := st.LastReload()
		return r.Result == ResultError && r.Err != nil && strings.Contains(r.Err.Error(), "not a regular file")
	})
	if p := st.Current().Policy.Phase; p != routing.RustFull {
		t.Fatalf("phase %v after the FIFO, want the last good rust-full", p)
	}
	// The rollback written next is applied.
	replaceFile(t, path, phaseConf(routing.PerlOnly))
	waitPhase(t, st, routing.PerlOnly)
	if r := st.LastReload(); r.Result != ResultOK {
		t.Errorf("last reload %+v after the rollback", r)
	}
}

// TestWatchHungRead: a read that never returns (pmxcfs wedged; no test
// machine has one, so the read function blocks until the test ends) is a
// failed reload after ReadTimeout, a later good read applies, and the
// watcher still stops at once.
func TestWatchHungRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "network-migration.conf")
	writeFile(t, path, phaseConf(routing.RustFull))
	release := make(chan struct{})
	var hang atomicBool
	readFileFunc = func(p string) ([]byte, error) {
		if hang.get() {
			<-release
		}
		return readRegularFile(p)
	}
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(func() { unblock(); readFileFunc = readRegularFile })
	st, _ := startWatch(t, path, WatchOptions{Explicit: true, PollInterval: 20 * time.Millisecond, ReadTimeout: 50 * time.Millisecond})
	hang.set(true)
	replaceFile(t, path, phaseConf(routing.RustReadOnly))
	waitFor(t, "the hung read to be reported", func() bool {
		r := st.LastReload()
		return r.Result == ResultError && errors.Is(r.Err, ErrReadTimeout)
	})
	if p := st.Current().Policy.Phase; p != routing.RustFull {
		t.Fatalf("phase %v, want the last good rust-full", p)
	}
	// pmxcfs recovers: the stuck reads return.
	hang.set(false)
	unblock()
	replaceFile(t, path, phaseConf(routing.PerlOnly))
	waitPhase(t, st, routing.PerlOnly)
}

// TestReadConfigFileBounds: the context ends a wait, too many blocked
// reads refuse at once, and a missing file keeps fs.ErrNotExist.
func TestReadConfigFileBounds(t *testing.T) {
	release := make(chan struct{})
	readFileFunc = func(string) ([]byte, error) { <-release; return nil, errors.New("released") }
	defer func() { readFileFunc = readRegularFile }()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := readConfigFile(ctx, "x", time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	for range maxBlockedReads {
		_, _ = readConfigFile(context.Background(), "x", time.Millisecond)
	}
	start := time.Now()
	if _, err := readConfigFile(context.Background(), "x", time.Hour); !errors.Is(err, ErrReadTimeout) || !strings.Contains(err.Error(), "still blocked") {
		t.Errorf("beyond the cap: %v after %v", err, time.Since(start))
	}
	close(release)
	waitFor(t, "blocked reads to drain", func() bool { return blockedReads.Load() == 0 })
	readFileFunc = readRegularFile
	if _, err := readConfigFile(context.Background(), filepath.Join(t.TempDir(), "none"), time.Second); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

type atomicBool struct{ v atomic.Int32 }

func (b *atomicBool) set(x bool) {
	if x {
		b.v.Store(1)
	} else {
		b.v.Store(0)
	}
}
func (b *atomicBool) get() bool { return b.v.Load() == 1 }
