// Package localstate holds what one router knows about itself at run time
// and that no config file may say: its PVE node name, whether the
// node-local kill switch is on, and which categories the gate has tripped
// back to Perl. The decision service reads it on every request as a
// routing.Local value, so routing.Decide keeps taking all of its inputs as
// data; the kill-switch watcher and the gate write it.
package localstate

import (
	"sync"
	"sync/atomic"

	"github.com/pve-migration/router/routing"
)

// State is safe for concurrent use. Reads (Local) are lock-free because
// they sit on the request path; writes are rare and serialised.
type State struct {
	node string
	cur  atomic.Pointer[routing.Local]

	mu        sync.Mutex // serialises writers
	listeners []func(routing.Local)
}

// New returns the state of a router on node (empty: no node awareness).
func New(node string) *State {
	s := &State{node: node}
	s.cur.Store(&routing.Local{Node: node})
	return s
}

// Node is the node name the router was started with.
func (s *State) Node() string { return s.node }

// Local returns the current run-time inputs of the decision.
func (s *State) Local() routing.Local {
	if s == nil {
		return routing.Local{}
	}
	return *s.cur.Load()
}

// OnChange registers f to be called (outside the writer lock, in the
// writer's goroutine) after every change, with the new value. The state
// file writer uses it to publish a change at once.
func (s *State) OnChange(f func(routing.Local)) {
	s.mu.Lock()
	s.listeners = append(s.listeners, f)
	s.mu.Unlock()
}

// update applies f to a copy of the current value and publishes it; it
// reports whether anything changed.
func (s *State) update(f func(*routing.Local)) bool {
	s.mu.Lock()
	old := *s.cur.Load()
	next := old
	f(&next)
	if next == old {
		s.mu.Unlock()
		return false
	}
	s.cur.Store(&next)
	ls := append([]func(routing.Local){}, s.listeners...)
	s.mu.Unlock()
	for _, l := range ls {
		l(next)
	}
	return true
}

// SetKillSwitch records whether the kill-switch file exists.
func (s *State) SetKillSwitch(on bool) bool {
	return s.update(func(l *routing.Local) { l.KillSwitch = on })
}

// Trip sends category c back to Perl on this node until Reset.
func (s *State) Trip(c routing.Category) bool {
	return s.update(func(l *routing.Local) { l.Tripped = l.Tripped.With(c) })
}

// Reset clears the trips of the given categories, or every trip when none
// is given.
func (s *State) Reset(cs ...routing.Category) bool {
	return s.update(func(l *routing.Local) {
		if len(cs) == 0 {
			l.Tripped = 0
			return
		}
		for _, c := range cs {
			l.Tripped = l.Tripped.Without(c)
		}
	})
}
