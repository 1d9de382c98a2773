package pvedemo

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// Faults are the failures the demo backend simulates, so that the router's
// fallback, retry and timeout rules can be tested against a backend that
// misbehaves on demand. The zero value is a healthy backend.
//
// In JSON (GET and POST /debug/faults) Latency is a Go duration string:
//
//	{"error_rate":0.5,"latency":"200ms","refuse":false,"crash_after":0,"drop_after_write":false}
type Faults struct {
	// ErrorRate is the fraction (0..1) of API requests answered with HTTP
	// 500 before the handler runs, so a failed write never changed state.
	ErrorRate float64
	// Latency is added before every API request is answered.
	Latency time.Duration
	// CrashAfter > 0 lets that many API requests through (counted from when
	// the faults were set) and then simulates a crash: the next request's
	// connection is closed without a response and the listener is closed,
	// so later connections are refused. A crash cannot be undone.
	CrashAfter int64
	// Refuse closes the listener: connections are refused until Refuse is
	// switched off again (through SetFaults or a separate debug listener),
	// which listens again on the same address. A Server used as a plain
	// http.Handler, without Serve, cannot refuse and drops API requests'
	// connections instead.
	Refuse bool
	// DropAfterWrite runs every API write (POST, PUT, DELETE) to the end,
	// so it is applied and counted, and then closes that one connection
	// without a response. Unlike CrashAfter the listener stays open: this
	// is a backend that dies between applying a write and answering it, or
	// a network that loses the answer, and it shows whether anything in
	// front of the backend sends the write again.
	DropAfterWrite bool
	// Diverge names a field (a key, or a compare path such as
	// "data[].method" whose last name counts) that every GET answer of this
	// backend alters wherever it appears: the shadow comparison must report
	// it as a mismatch. "" is off.
	Diverge string
	// Noise names a field that every GET answer gives a fresh random
	// value: on both backends it must count as noise, not as a mismatch.
	Noise string
}

type faultsJSON struct {
	ErrorRate  float64 `json:"error_rate"`
	Latency    string  `json:"latency"`
	Refuse     bool    `json:"refuse"`
	CrashAfter int64   `json:"crash_after"`
	DropAfter  bool    `json:"drop_after_write"`
	Diverge    string  `json:"diverge,omitempty"`
	Noise      string  `json:"noise,omitempty"`
}

// MarshalJSON writes Latency as a duration string ("200ms").
func (f Faults) MarshalJSON() ([]byte, error) {
	return json.Marshal(faultsJSON{ErrorRate: f.ErrorRate, Latency: f.Latency.String(), Refuse: f.Refuse, CrashAfter: f.CrashAfter, DropAfter: f.DropAfterWrite, Diverge: f.Diverge, Noise: f.Noise})
}

// UnmarshalJSON reads the form MarshalJSON writes, so Go tests can decode
// GET /debug/faults into a Faults.
func (f *Faults) UnmarshalJSON(b []byte) error {
	var p faultsPatch
	if err := json.Unmarshal(b, &p); err != nil {
		return fmt.Errorf("decode faults: %w", err)
	}
	nf, err := p.apply(Faults{})
	if err != nil {
		return err
	}
	*f = nf
	return nil
}

// faultsPatch is the body of POST /debug/faults: fields left out keep their
// current value, so a soak script can change one knob at a time.
type faultsPatch struct {
	ErrorRate  *float64 `json:"error_rate"`
	Latency    *string  `json:"latency"`
	Refuse     *bool    `json:"refuse"`
	CrashAfter *int64   `json:"crash_after"`
	DropAfter  *bool    `json:"drop_after_write"`
	Diverge    *string  `json:"diverge"`
	Noise      *string  `json:"noise"`
}

func (p faultsPatch) apply(f Faults) (Faults, error) {
	if p.ErrorRate != nil {
		f.ErrorRate = *p.ErrorRate
	}
	if p.Latency != nil {
		d, err := time.ParseDuration(*p.Latency)
		if err != nil {
			return f, fmt.Errorf("latency: %w", err)
		}
		f.Latency = d
	}
	if p.Refuse != nil {
		f.Refuse = *p.Refuse
	}
	if p.CrashAfter != nil {
		f.CrashAfter = *p.CrashAfter
	}
	if p.DropAfter != nil {
		f.DropAfterWrite = *p.DropAfter
	}
	if p.Diverge != nil {
		f.Diverge = *p.Diverge
	}
	if p.Noise != nil {
		f.Noise = *p.Noise
	}
	return f, f.validate()
}

// validate reports every invalid field at once.
func (f Faults) validate() error {
	var errs []error
	if math.IsNaN(f.ErrorRate) || f.ErrorRate < 0 || f.ErrorRate > 1 {
		errs = append(errs, fmt.Errorf("error rate %v: want a fraction between 0 and 1", f.ErrorRate))
	}
	if f.Latency < 0 {
		errs = append(errs, fmt.Errorf("latency %v: must not be negative", f.Latency))
	}
	if f.CrashAfter < 0 {
		errs = append(errs, fmt.Errorf("crash after %d: must not be negative", f.CrashAfter))
	}
	return errors.Join(errs...)
}
