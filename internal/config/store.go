package config

import (
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Reload results, the values of the `result` label of
// pve_migration_config_reloads_total.
const (
	// ResultOK: a new, different snapshot is now current.
	ResultOK = "ok"
	// ResultError: the file was invalid, unreadable or gone; the last good
	// snapshot keeps serving.
	ResultError = "error"
	// ResultUnchanged: the file changed but configures the same thing
	// (comments, formatting, a touch).
	ResultUnchanged = "unchanged"
)

// ReloadStatus describes the last reload attempt, for /status and
// `migration-ctl status`: an operator who edited the file must be able to
// see that the edit was rejected, and why, without reading logs.
type ReloadStatus struct {
	// At is when the attempt was made; zero before the first one.
	At time.Time
	// Result is ResultOK, ResultError or ResultUnchanged; "" before the
	// first attempt.
	Result string
	// Err is the reason for ResultError (often a *ValidationError). Only
	// its message is meant for display; it never contains a secret.
	Err error
}

// MarshalJSON shows Err as its message, since error values have no JSON
// form of their own.
func (r ReloadStatus) MarshalJSON() ([]byte, error) {
	out := struct {
		At     *time.Time `json:"at,omitempty"`
		Result string     `json:"result,omitempty"`
		Error  string     `json:"error,omitempty"`
	}{Result: r.Result}
	if !r.At.IsZero() {
		out.At = &r.At
	}
	if r.Err != nil {
		out.Error = r.Err.Error()
	}
	return json.Marshal(out)
}

// Store holds the current Snapshot. The request path calls Current for every
// request, so reading is a single atomic load; reloads are rare and
// serialised. A snapshot is only ever published after it validated: a bad
// edit can never take the router down or half-apply.
type Store struct {
	// OnReload, if non-nil, is called after every reload attempt that
	// Apply records, in order, on the reloading goroutine, with the
	// snapshot now serving (the new one for ResultOK, the kept one
	// otherwise) and the error for ResultError. It is the hook for metrics
	// and audit logs. It may call Current, LastReload and ReloadCounts but
	// not Apply. Set it before the Store is shared.
	OnReload func(result string, snap *Snapshot, err error)

	cur    atomic.Pointer[Snapshot]
	status atomic.Pointer[ReloadStatus]
	mu     sync.Mutex // serialises Apply
	counts [3]atomic.Uint64
}

// NewStore returns a Store serving initial, which must not be nil: the
// router has a valid configuration (possibly the defaults) before it
// accepts a request, so Current never returns nil.
func NewStore(initial *Snapshot) *Store {
	if initial == nil {
		panic("config: NewStore with nil snapshot")
	}
	s := &Store{}
	s.cur.Store(initial)
	s.status.Store(&ReloadStatus{})
	return s
}

// Current returns the snapshot in force. It never blocks and never returns
// nil; callers use one snapshot for a whole request so a reload cannot
// change the policy halfway through a decision.
func (s *Store) Current() *Snapshot { return s.cur.Load() }

// LastReload returns the outcome of the most recent reload attempt.
func (s *Store) LastReload() ReloadStatus { return *s.status.Load() }

// ReloadCounts returns how many reload attempts ended in each result
// (ResultOK, ResultError, ResultUnchanged), for the reloads counter.
func (s *Store) ReloadCounts() map[string]uint64 {
	return map[string]uint64{
		ResultOK:        s.counts[0].Load(),
		ResultError:     s.counts[1].Load(),
		ResultUnchanged: s.counts[2].Load(),
	}
}

// Apply records one reload attempt made at time at: the outcome of loading
// next (err non-nil means it failed). A valid next that differs from the
// current snapshot becomes current (its LoadedAt is set to at if zero); an
// equal one is dropped so readers keep the same pointer; an error keeps the
// last good snapshot serving. It returns the result. The watcher calls it;
// so can a SIGHUP handler or a control-API "reload now".
func (s *Store) Apply(next *Snapshot, err error, at time.Time) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil && next == nil {
		err = errors.New("config: reload produced no snapshot")
	}
	var result string
	switch {
	case err != nil:
		result = ResultError
		s.counts[1].Add(1)
	case next.Equal(s.cur.Load()):
		result = ResultUnchanged
		s.counts[2].Add(1)
	default:
		result = ResultOK
		if next.LoadedAt.IsZero() {
			next.LoadedAt = at
		}
		s.cur.Store(next)
		s.counts[0].Add(1)
	}
	s.status.Store(&ReloadStatus{At: at, Result: result, Err: err})
	if s.OnReload != nil {
		s.OnReload(result, s.cur.Load(), err)
	}
	return result
}
