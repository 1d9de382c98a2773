package killswitch

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestOnUnreadable: a switch that cannot be examined counts as on, and
// one that cannot exist (a file in the way) as off.
func TestOnUnreadable(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if on, err := On(filepath.Join(file, "perl-only")); on || err != nil {
		t.Errorf("On under a file = %t, %v; want off", on, err)
	}
	long := filepath.Join(dir, strings.Repeat("x", 300)) // ENAMETOOLONG
	if on, err := On(long); !on || err == nil {
		t.Errorf("On(name too long) = %t, %v; want on with the error", on, err)
	}
}

func TestCreateRemove(t *testing.T) {
	path := filepath.Join(t.TempDir(), "var", "lib", "pve-migration-router", "perl-only")
	if on, err := On(path); on || err != nil {
		t.Fatalf("On before Create = %t, %v", on, err)
	}
	already, err := Create(path, "rollback by test\n")
	if err != nil || already {
		t.Fatalf("Create = %t, %v", already, err)
	}
	if on, err := On(path); !on || err != nil {
		t.Fatalf("On after Create = %t, %v", on, err)
	}
	if already, err := Create(path, "again"); err != nil || !already {
		t.Fatalf("second Create = %t, %v; want already on", already, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the switch (no temporary files left)", len(entries))
	}
	if was, err := Remove(path); !was || err != nil {
		t.Fatalf("Remove = %t, %v", was, err)
	}
	if was, err := Remove(path); was || err != nil {
		t.Fatalf("second Remove = %t, %v; want not on, no error", was, err)
	}
}

// TestContentNeverParsed: whatever the file holds, even nothing or
// garbage, the switch is on.
func TestContentNeverParsed(t *testing.T) {
	for name, content := range map[string]string{"empty": "", "garbage": "\x00\xff{not json", "off": "off\n"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "perl-only")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if on, err := On(path); !on || err != nil {
				t.Errorf("On = %t, %v; want on", on, err)
			}
		})
	}
}

type recorder struct {
	mu  sync.Mutex
	got []bool
}

func (r *recorder) set(on bool) { r.mu.Lock(); r.got = append(r.got, on); r.mu.Unlock() }

func (r *recorder) last() (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) == 0 {
		return false, 0
	}
	return r.got[len(r.got)-1], len(r.got)
}

func waitFor(t *testing.T, r *recorder, want bool, calls int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if v, n := r.last(); n == calls && v == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	v, n := r.last()
	t.Fatalf("after %d calls the switch is %t; want %d calls ending in %t", n, v, calls, want)
}

func TestWatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "missing-dir", "perl-only")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &recorder{}
	done := make(chan struct{})
	go func() { Watch(ctx, path, 20*time.Millisecond, r.set, nil); close(done) }()
	waitFor(t, r, false, 1) // reported once at start
	if _, err := Create(path, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, r, true, 2)
	if _, err := Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, r, false, 3)
	cancel()
	<-done
}
