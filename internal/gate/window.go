package gate

import (
	"math"
	"time"

	"github.com/pve-migration/router/routing"
)

// nSlots is how many time slots a window is cut into: the window slides
// by window/nSlots, and memory stays fixed whatever the request rate.
const nSlots = 60

// Latency histogram: exponential buckets from 0.5 ms by a factor of 1.25
// (±12% on a p99, plenty against a 3× limit), the last one open-ended.
const (
	nBuckets     = 64
	bucketBase   = 500 * time.Microsecond
	bucketFactor = 1.25
)

var bucketBounds = func() [nBuckets]time.Duration {
	var b [nBuckets]time.Duration
	f := float64(bucketBase)
	for i := range b {
		b[i] = time.Duration(f)
		f *= bucketFactor
	}
	b[nBuckets-1] = math.MaxInt64
	return b
}()

type hist [nBuckets]uint32

func (h *hist) add(d time.Duration) {
	// Linear search from the bottom: API calls take milliseconds, so the
	// first few buckets take nearly all of them.
	for i, ub := range bucketBounds {
		if d <= ub {
			h[i]++
			return
		}
	}
}

func (h *hist) merge(o *hist) {
	for i := range h {
		h[i] += o[i]
	}
}

func (h *hist) count() uint64 {
	var n uint64
	for _, v := range h {
		n += uint64(v)
	}
	return n
}

// p99 returns the upper bound of the bucket holding the 99th percentile,
// 0 for an empty histogram. The open last bucket reports the bound below
// it times the factor.
func (h *hist) p99() time.Duration {
	n := h.count()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(0.99 * float64(n)))
	var cum uint64
	for i, v := range h {
		cum += uint64(v)
		if cum >= rank {
			if i == nBuckets-1 {
				return time.Duration(float64(bucketBounds[i-1]) * bucketFactor)
			}
			return bucketBounds[i]
		}
	}
	return bucketBounds[nBuckets-2]
}

// counts are the figures of one slot or of a whole window.
type counts struct {
	// requests is every finished request of the category; perlByPhase
	// those the phase matrix kept on perl (what the next phase would
	// move); canary those a canary user sent to rust early.
	requests, perlByPhase, canary uint64
	// rustAttempts are requests decided for rust; rustErrors those whose
	// rust attempt failed (5xx, no answer, or a fallback to perl).
	rustAttempts, rustErrors uint64
	// rustLat: rust attempts rust answered; perlLat: perl decisions perl
	// answered. A fallback's duration holds both attempts and is in
	// neither.
	rustLat, perlLat hist
}

func (c *counts) merge(o *counts) {
	c.requests += o.requests
	c.perlByPhase += o.perlByPhase
	c.canary += o.canary
	c.rustAttempts += o.rustAttempts
	c.rustErrors += o.rustErrors
	c.rustLat.merge(&o.rustLat)
	c.perlLat.merge(&o.perlLat)
}

func (c *counts) errorRate() float64 {
	if c.rustAttempts == 0 {
		return 0
	}
	return float64(c.rustErrors) / float64(c.rustAttempts)
}

type slot struct {
	idx int64 // time / width; the slot is empty unless idx matches
	counts
}

// window is one category's sliding window: a ring of nSlots slots.
type window struct {
	width time.Duration
	slots [nSlots]slot
}

func newWindow(size time.Duration) *window {
	w := size / nSlots
	if w <= 0 {
		w = 1
	}
	return &window{width: w}
}

// slotAt returns the slot for time at, emptying a slot that held an
// older turn of the ring; nil when at is older than what the slot holds
// now (an outcome delayed by more than a window), which is dropped rather
// than allowed to wipe newer figures.
func (w *window) slotAt(at time.Time) *slot {
	idx := at.UnixNano() / int64(w.width)
	s := &w.slots[uint64(idx)%nSlots]
	switch {
	case s.idx == idx:
	case s.idx > idx:
		return nil
	default:
		*s = slot{idx: idx}
	}
	return s
}

// add records one finished request.
func (w *window) add(o *Outcome) {
	s := w.slotAt(o.At)
	if s == nil {
		return
	}
	s.requests++
	if o.Backend == routing.Perl {
		if o.Reason == routing.ReasonPhase {
			s.perlByPhase++
		}
		if o.ServedBy == "perl" {
			s.perlLat.add(o.Duration)
		}
		return
	}
	s.rustAttempts++
	if o.Reason == routing.ReasonCanary {
		s.canary++
	}
	if o.RustFailed() {
		s.rustErrors++
		return
	}
	s.rustLat.add(o.Duration)
}

// sum adds up the slots inside the window ending at now. A slot ahead of
// now (a clock step back) is left out rather than trusted.
func (w *window) sum(now time.Time) counts {
	var c counts
	cur := now.UnixNano() / int64(w.width)
	for i := range w.slots {
		s := &w.slots[i]
		if s.idx > cur-nSlots && s.idx <= cur && s.requests > 0 {
			c.merge(&s.counts)
		}
	}
	return c
}

// errorFigures is sum without the histograms, for the check after every
// rust outcome.
func (w *window) errorFigures(now time.Time) (attempts, errors uint64) {
	cur := now.UnixNano() / int64(w.width)
	for i := range w.slots {
		s := &w.slots[i]
		if s.idx > cur-nSlots && s.idx <= cur {
			attempts += s.rustAttempts
			errors += s.rustErrors
		}
	}
	return attempts, errors
}
