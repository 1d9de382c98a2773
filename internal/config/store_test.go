package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pve-migration/router/routing"
)

func TestStoreApply(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	first := mustParse(t, "f.conf", `phase = "perl-only"`, nil)
	st := NewStore(first)
	type call struct {
		result string
		phase  routing.Phase
		err    error
	}
	var calls []call
	st.OnReload = func(result string, snap *Snapshot, err error) {
		if st.LastReload().Result != result {
			t.Errorf("hook ran before LastReload was updated")
		}
		calls = append(calls, call{result, snap.Policy.Phase, err})
	}
	if st.LastReload().Result != "" || !st.LastReload().At.IsZero() {
		t.Errorf("LastReload before any reload = %+v", st.LastReload())
	}

	same := mustParse(t, "f.conf", "# only a comment changed\nphase = \"PerlOnly\"\n", nil)
	if r := st.Apply(same, nil, t0); r != ResultUnchanged || st.Current() != first {
		t.Errorf("equal snapshot: result %q, pointer swapped %v", r, st.Current() != first)
	}
	next := mustParse(t, "f.conf", `phase = "rust-read-only"`, nil)
	if r := st.Apply(next, nil, t0.Add(time.Second)); r != ResultOK || st.Current() != next || !next.LoadedAt.Equal(t0.Add(time.Second)) {
		t.Errorf("new snapshot: result %q, current %p (want %p), LoadedAt %v", r, st.Current(), next, next.LoadedAt)
	}
	bad := errors.New("f.conf: phase: unknown phase")
	if r := st.Apply(nil, bad, t0.Add(2*time.Second)); r != ResultError || st.Current() != next {
		t.Errorf("error: result %q, current changed %v", r, st.Current() != next)
	}
	if r := st.Apply(nil, nil, t0.Add(3*time.Second)); r != ResultError || st.LastReload().Err == nil {
		t.Errorf("nil snapshot without error: result %q, err %v", r, st.LastReload().Err)
	}

	want := []call{{ResultUnchanged, routing.PerlOnly, nil}, {ResultOK, routing.RustReadOnly, nil}, {ResultError, routing.RustReadOnly, bad}}
	if len(calls) != 4 || fmt.Sprint(calls[:3]) != fmt.Sprint(want) {
		t.Errorf("hook calls = %v, want %v + one more error", calls, want)
	}
	if c := st.ReloadCounts(); c[ResultOK] != 1 || c[ResultError] != 2 || c[ResultUnchanged] != 1 {
		t.Errorf("counts = %v", c)
	}
	st.Apply(nil, bad, t0.Add(2*time.Second))
	b, err := json.Marshal(st.LastReload())
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); got != `{"at":"2025-01-02T03:04:07Z","result":"error","error":"f.conf: phase: unknown phase"}` {
		t.Errorf("LastReload JSON = %s", got)
	}
	if b, _ := json.Marshal(ReloadStatus{}); string(b) != `{}` {
		t.Errorf("zero ReloadStatus JSON = %s", b)
	}
}

// TestConcurrentReloads swaps the snapshot 1,000 times while 8 goroutines
// route requests with whatever snapshot is current. Under -race this
// proves the hot path needs no lock; each decision must also be consistent
// with the one snapshot it was made from.
func TestConcurrentReloads(t *testing.T) {
	const reloads, readers = 1000, 8
	files := []string{
		"phase = \"rust-read-only\"\n",
		"phase = \"perl-only\"\n",
		"phase = \"rust-full\"\n[endpoints.\"/api2/json/nodes/{node}/network\"]\nuse_rust = false\n",
	}
	st := NewStore(mustParse(t, "f.conf", files[1], nil))
	var done atomic.Bool
	var decisions atomic.Int64
	var wg sync.WaitGroup
	req := routing.Request{Method: "GET", Path: "/api2/json/nodes/pve1/network"}
	for range readers {
		wg.Go(func() {
			for !done.Load() {
				snap := st.Current()
				d := routing.Decide(&snap.Policy, req)
				wantRust := snap.Policy.Phase == routing.RustReadOnly
				if (d.Backend == routing.Rust) != wantRust {
					t.Errorf("phase %v: decision %+v", snap.Policy.Phase, d)
					return
				}
				_ = snap.Policy.Endpoints["/nodes/{node}/network"]
				decisions.Add(1)
			}
		})
	}
	snaps := make([]*Snapshot, len(files))
	for i, f := range files {
		snaps[i] = mustParse(t, "f.conf", f, nil)
	}
	now := time.Now()
	for i := range reloads {
		if r := st.Apply(snaps[i%len(snaps)], nil, now); r != ResultOK {
			t.Fatalf("reload %d: %s", i, r)
		}
	}
	done.Store(true)
	wg.Wait()
	if c := st.ReloadCounts(); c[ResultOK] != reloads {
		t.Errorf("ok reloads = %d, want %d", c[ResultOK], reloads)
	}
	t.Logf("%d decisions during %d reloads", decisions.Load(), reloads)
}
