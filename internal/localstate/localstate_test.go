package localstate

import (
	"sync"
	"testing"

	"github.com/pve-migration/router/routing"
)

func TestState(t *testing.T) {
	s := New("pve1")
	var seen []routing.Local
	var mu sync.Mutex
	s.OnChange(func(l routing.Local) { mu.Lock(); seen = append(seen, l); mu.Unlock() })
	if got := s.Local(); got.Node != "pve1" || got.KillSwitch || got.Tripped != 0 {
		t.Fatalf("initial %+v", got)
	}
	steps := []struct {
		name    string
		do      func() bool
		changed bool
		want    routing.Local
	}{
		{"kill on", func() bool { return s.SetKillSwitch(true) }, true, routing.Local{Node: "pve1", KillSwitch: true}},
		{"kill on again", func() bool { return s.SetKillSwitch(true) }, false, routing.Local{Node: "pve1", KillSwitch: true}},
		{"trip read", func() bool { return s.Trip(routing.NodeNetworkRead) }, true,
			routing.Local{Node: "pve1", KillSwitch: true, Tripped: routing.CategorySet(0).With(routing.NodeNetworkRead)}},
		{"trip sdn", func() bool { return s.Trip(routing.SDNRead) }, true,
			routing.Local{Node: "pve1", KillSwitch: true, Tripped: routing.CategorySet(0).With(routing.NodeNetworkRead).With(routing.SDNRead)}},
		{"reset one", func() bool { return s.Reset(routing.SDNRead) }, true,
			routing.Local{Node: "pve1", KillSwitch: true, Tripped: routing.CategorySet(0).With(routing.NodeNetworkRead)}},
		{"reset all", func() bool { return s.Reset() }, true, routing.Local{Node: "pve1", KillSwitch: true}},
		{"kill off", func() bool { return s.SetKillSwitch(false) }, true, routing.Local{Node: "pve1"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if got := st.do(); got != st.changed {
				t.Fatalf("changed = %v, want %v", got, st.changed)
			}
			if got := s.Local(); got != st.want {
				t.Fatalf("Local = %+v, want %+v", got, st.want)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 6 {
		t.Fatalf("listener saw %d changes, want 6", len(seen))
	}
}

func TestNilState(t *testing.T) {
	var s *State
	if s.Local() != (routing.Local{}) {
		t.Fatal("nil state must read as no local inputs")
	}
}

func TestConcurrent(t *testing.T) {
	s := New("pve1")
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				s.Trip(routing.Category(1 + (i+j)%5))
				_ = s.Local()
				s.Reset(routing.Category(1 + (i+j+1)%5))
			}
		}(i)
	}
	wg.Wait()
}
