package pveschema

import (
	"sort"
	"sync"
	"sync/atomic"
)

// Answer is one backend's answer to a compare job's GET, as the compare
// worker fetched it.
type Answer struct {
	// Backend is "perl" or "rust".
	Backend string
	// Status is the HTTP status code; only 2xx answers are checked.
	Status int
	// Body is the answer body (json or extjs envelope), decompressed.
	Body []byte
}

// Conformance is schema checking as the compare engine runs it: the
// checker in force, swapped on config load, and the tally of violations
// the report shows. It is the one value the compare package needs to hold:
//
//	conf := pveschema.NewConformance(func(backend, template string, rule pveschema.Rule, n int) {
//		tel.RecordSchemaViolations(backend, template, string(rule), int64(n))
//	})
//	err := conf.Configure(cfg.Compare.Schema, cfg.Compare.APISchema) // on every config load; log err
//	conf.CheckJob(job.Template, "GET", perlAnswer, rustAnswer)        // in the worker, per job
//	report.Schema = conf.Report()                                    // /compare.json, migration-ctl compare
//	status.Schema = conf.Status()                                    // status --json
//
// It is safe for concurrent use: workers check while a config load swaps
// the checker.
type Conformance struct {
	onViolation func(backend, template string, rule Rule, n int)

	mu      sync.Mutex // serialises Configure
	state   atomic.Pointer[conformanceState]
	tally   *Tally
	checked atomic.Int64
	// seen holds the methods checked so far (bounded by the schema), so
	// that Status lists what their checks skip.
	seen sync.Map
}

type conformanceState struct {
	enabled bool
	checker *Checker
	loadErr error
	path    string
}

// NewConformance returns schema checking switched off until Configure.
// onViolation, if not nil, is called once per checked answer and broken
// rule with the number of paths that broke it (the metric's increment).
func NewConformance(onViolation func(backend, template string, rule Rule, n int)) *Conformance {
	c := &Conformance{onViolation: onViolation, tally: NewTally()}
	c.state.Store(&conformanceState{})
	return c
}

// Configure applies `[compare] schema` and `api_schema` (path "" for the
// default). It loads and compiles the schema when checking is enabled; a
// file that cannot be read or parsed is returned as the error, and the
// embedded schema serves meanwhile (nothing else stops). The tally starts
// over when the schema in force changes, since counts against two schemas
// do not add up.
func (c *Conformance) Configure(enabled bool, path string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !enabled {
		c.state.Store(&conformanceState{path: path})
		return nil
	}
	chk, err := Load(path)
	if chk == nil {
		// Only a broken build gets here (the embedded schema is tested).
		c.state.Store(&conformanceState{path: path, loadErr: err})
		return err
	}
	prev := c.state.Load()
	if prev.checker == nil || prev.checker.Source() != chk.Source() {
		c.tally.Reset()
	}
	c.state.Store(&conformanceState{enabled: true, checker: chk, loadErr: err, path: path})
	return err
}

// Enabled reports whether answers are being checked.
func (c *Conformance) Enabled() bool {
	st := c.state.Load()
	return st.enabled && st.checker != nil
}

// CheckJob checks every answer of one compare job of method on template
// and tallies what breaks the schema. Failed answers, methods the schema
// lacks and bodies that are not JSON are skipped (the comparison reports
// those itself). Give each backend's first answer only: the serving
// backend's second fetch (noise calibration) would count it twice.
func (c *Conformance) CheckJob(template, method string, answers ...Answer) {
	st := c.state.Load()
	if !st.enabled || st.checker == nil {
		return
	}
	for _, a := range answers {
		vs, err := st.checker.CheckAnswer(c.tally, template, method, a.Backend, a.Status, a.Body)
		if err != nil {
			continue
		}
		c.checked.Add(1)
		if c.onViolation == nil {
			continue
		}
		var counts [len(allRules)]int
		for _, v := range vs {
			for i, r := range allRules {
				if v.Rule == r {
					counts[i]++
				}
			}
		}
		for i, n := range counts {
			if n > 0 {
				c.onViolation(a.Backend, template, allRules[i], n)
			}
		}
	}
	c.seen.Store(methodKey(template, method), struct{}{})
}

// allRules are the contract's rules, in the order the metric is fed.
var allRules = [...]Rule{RuleRequired, RuleType, RuleEnum, RulePattern, RuleFormat, RuleRange, RuleLength, RuleExtra}

// Checked is how many answers have been checked since the start.
func (c *Conformance) Checked() int64 { return c.checked.Load() }

// Report is the `schema` object of /compare.json and `migration-ctl
// compare --json`; nil while checking is off, so that it can be omitted.
func (c *Conformance) Report() *Report {
	st := c.state.Load()
	if !st.enabled || st.checker == nil {
		return nil
	}
	r := c.tally.Report(st.checker.Source())
	return &r
}

// Status describes the schema in force, what its checks of the answers
// seen so far skip (not the whole schema's list: only what matters here),
// and the last load error; the zero Status while checking is off.
func (c *Conformance) Status() Status {
	st := c.state.Load()
	if !st.enabled {
		return Status{}
	}
	s := StatusOf(st.checker, st.loadErr)
	if st.checker != nil {
		set := map[string]struct{}{}
		c.seen.Range(func(k, _ any) bool {
			for _, u := range st.checker.uncheckedMethod[k.(string)] {
				set[u] = struct{}{}
			}
			return true
		})
		s.Unchecked = s.Unchecked[:0]
		for u := range set {
			s.Unchecked = append(s.Unchecked, u)
		}
		sort.Strings(s.Unchecked)
		if len(s.Unchecked) == 0 {
			s.Unchecked = nil
		}
	}
	return s
}
