package dataplane

import (
	"sync"
	"sync/atomic"
	"time"
)

// Metrics are the data plane's counters since New, the figures Envoy keeps
// as stats (downstream_rq, upstream_rq_retry, ext_proc.failure_mode_allowed,
// ...). An embedding program reads them with Proxy.Metrics and exports them
// as it likes; the decision service's own outcome metrics come from the
// ext_proc response_headers message and are not duplicated here.
type Metrics struct {
	// Requests counts downstream requests (websocket upgrades included).
	Requests uint64
	// Active is the number of requests in flight.
	Active int64
	// Attempts counts upstream attempts, retries included.
	Attempts uint64
	// Retries counts retries by the condition that allowed them:
	// "connect-failure", "reset-before-request", "reset", "5xx",
	// "per-try-timeout", "retriable-status-codes", "gateway-error".
	Retries map[string]uint64
	// ServedBy counts final responses by the backend that produced them
	// ("rust", "perl"); local replies are not counted.
	ServedBy map[string]uint64
	// LocalReplies counts responses the data plane made itself, by status
	// (413, 500, 503, 504, ...), like Envoy's local replies.
	LocalReplies map[int]uint64
	// FailOpen counts requests that continued without the decision
	// service's answer because failure_mode_allow is true.
	FailOpen uint64
	// ExtProcErrors counts ext_proc streams that failed (could not open,
	// closed with an error, spurious reply, invalid mutation).
	ExtProcErrors uint64
	// ExtProcTimeouts counts ext_proc messages not answered within
	// message_timeout.
	ExtProcTimeouts uint64
	// RejectedHeaderMutations counts header mutations the mutation_rules
	// refused (Envoy: ext_proc.rejected_header_mutations).
	RejectedHeaderMutations uint64
	// Ejections counts outlier ejections of a backend.
	Ejections uint64
	// Upgrades counts websocket connections that were switched.
	Upgrades uint64
}

// UpstreamHealth is what the data plane knows about one backend, for an
// operator's status page: the active health check (where envoy.yaml
// configures one, i.e. rust) and the outcome of real requests.
type UpstreamHealth struct {
	// Name is "rust" or "perl".
	Name string
	// URL is the backend's base URL.
	URL string
	// Available is whether requests may go to the backend now (not failed
	// by the health check, not ejected).
	Available bool
	// HealthChecked says whether an active health check runs; LastCheck
	// and LastCheckError are its latest result.
	HealthChecked  bool
	LastCheck      time.Time
	LastCheckError string
	// EjectedUntil is set while outlier detection keeps the backend out.
	EjectedUntil time.Time
	// LastSuccess and LastFailure are the times of the latest upstream
	// attempts that succeeded or failed; LastError describes the failure
	// (never a URL or header value).
	LastSuccess time.Time
	LastFailure time.Time
	LastError   string
	// ConsecutiveFailures counts failed attempts since the last success.
	ConsecutiveFailures int
}

// Health is the reachability of both backends.
type Health struct {
	Perl, Rust UpstreamHealth
}

// counters is the lock-free side of Metrics plus small locked maps.
type counters struct {
	requests, attempts, failOpen, extProcErrors, extProcTimeouts atomic.Uint64
	rejected, ejections, upgrades                                atomic.Uint64
	active                                                       atomic.Int64

	mu           sync.Mutex
	retries      map[string]uint64
	servedBy     map[string]uint64
	localReplies map[int]uint64
}

func (c *counters) retry(reason string) {
	c.mu.Lock()
	if c.retries == nil {
		c.retries = map[string]uint64{}
	}
	c.retries[reason]++
	c.mu.Unlock()
}

func (c *counters) served(backend string) {
	c.mu.Lock()
	if c.servedBy == nil {
		c.servedBy = map[string]uint64{}
	}
	c.servedBy[backend]++
	c.mu.Unlock()
}

func (c *counters) localReply(status int) {
	c.mu.Lock()
	if c.localReplies == nil {
		c.localReplies = map[int]uint64{}
	}
	c.localReplies[status]++
	c.mu.Unlock()
}

func (c *counters) snapshot() Metrics {
	m := Metrics{
		Requests:                c.requests.Load(),
		Active:                  c.active.Load(),
		Attempts:                c.attempts.Load(),
		FailOpen:                c.failOpen.Load(),
		ExtProcErrors:           c.extProcErrors.Load(),
		ExtProcTimeouts:         c.extProcTimeouts.Load(),
		RejectedHeaderMutations: c.rejected.Load(),
		Ejections:               c.ejections.Load(),
		Upgrades:                c.upgrades.Load(),
		Retries:                 map[string]uint64{},
		ServedBy:                map[string]uint64{},
		LocalReplies:            map[int]uint64{},
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, v := range c.retries {
		m.Retries[k] = v
	}
	for k, v := range c.servedBy {
		m.ServedBy[k] = v
	}
	for k, v := range c.localReplies {
		m.LocalReplies[k] = v
	}
	return m
}
