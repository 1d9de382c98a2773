package pveschema

import (
	"errors"
	"fmt"
)

// ErrNotSuccess is returned for an answer that reports a failure (an error
// status, or extjs `success: 0` under HTTP 200): its data is no answer of
// the method, and PVE's return schema does not describe it.
var ErrNotSuccess = errors.New("answer is a failure, not checked")

// CheckAnswer is the compare worker's one call per fetched answer: it
// checks a successful json or extjs body of method on template and adds its
// violations to t under backend ("perl" or "rust"). It returns the
// violations (for the metric) or an error: ErrNoSchema for a method the
// schema lacks, ErrNotSuccess for a failed answer, a parse error for a body
// that is not JSON. Only a nil error means the answer was checked.
func (c *Checker) CheckAnswer(t *Tally, template, method, backend string, status int, body []byte) ([]Violation, error) {
	if status < 200 || status > 299 {
		return nil, fmt.Errorf("%s %s: HTTP %d: %w", method, template, status, ErrNotSuccess)
	}
	vs, err := c.CheckBody(template, method, body)
	if err != nil {
		return nil, err
	}
	if t != nil {
		t.Record(template, method, backend, vs)
	}
	return vs, nil
}
