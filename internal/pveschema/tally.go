package pveschema

import (
	"sort"
	"sync"
)

// Backend names as the report and the metric spell them.
const (
	BackendPerl = "perl"
	BackendRust = "rust"
)

// MaxTallyEntries bounds the distinct (template, method, backend, path,
// rule) rows a Tally keeps. Paths come from answers (an extra key's name),
// so a backend that invents keys must not grow the router's memory; rows
// beyond the bound are counted in Dropped only.
const MaxTallyEntries = 2000

type tallyKey struct {
	template, method, backend, path string
	rule                            Rule
}

type tallyEntry struct {
	count   int64
	example string
}

// Tally adds up the violations the compare workers find, per template,
// method, backend, path and rule, keeping the first example value. It is
// safe for concurrent use; Report is a consistent snapshot.
type Tally struct {
	mu      sync.Mutex
	rows    map[tallyKey]*tallyEntry
	dropped int64
}

// NewTally returns an empty tally.
func NewTally() *Tally { return &Tally{rows: map[tallyKey]*tallyEntry{}} }

// Record adds the violations of one answer that backend ("perl" or "rust")
// gave for method on template.
func (t *Tally) Record(template, method, backend string, vs []Violation) {
	if len(vs) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, v := range vs {
		k := tallyKey{template: template, method: method, backend: backend, path: v.Path, rule: v.Rule}
		e := t.rows[k]
		if e == nil {
			if len(t.rows) >= MaxTallyEntries {
				t.dropped++
				continue
			}
			e = &tallyEntry{example: v.Example}
			t.rows[k] = e
		}
		e.count++
	}
}

// Reset forgets everything, for a config load that changes the schema
// (counts against two schemas do not add up).
func (t *Tally) Reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rows = map[tallyKey]*tallyEntry{}
	t.dropped = 0
}

// Dropped is how many violations were not tallied because the tally was
// full.
func (t *Tally) Dropped() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dropped
}

// ReportViolation is one row of the compare report's schema list.
type ReportViolation struct {
	// Template is the router's template, e.g. "/nodes/{node}/network".
	Template string `json:"template"`
	// Method is the HTTP method (GET for compare jobs).
	Method string `json:"method"`
	// Backend is "perl" or "rust".
	Backend string `json:"backend"`
	// Path is the field, as Violation.Path.
	Path string `json:"path"`
	// Rule is the rule broken.
	Rule Rule `json:"rule"`
	// Count is how many answers broke it.
	Count int64 `json:"count"`
	// Example is the first offending value seen (cut, redacted).
	Example string `json:"example"`
	// Baseline is true when perl's answers break the same rule at the same
	// path of the same method: PVE's own behaviour, not rust's fault.
	Baseline bool `json:"baseline"`
}

// Report is the `schema` object of /compare.json and
// `migration-ctl compare --json`.
type Report struct {
	// Source is "embedded" or the schema file's path.
	Source string `json:"source"`
	// Version is "PVE 9.1.3" or the file's "sha256:..." digest.
	Version string `json:"version"`
	// Violations are sorted rust-only first, never null in JSON.
	Violations []ReportViolation `json:"violations"`
}

// Report snapshots the tally against the schema src describes. Rows come
// rust-only first (what rust must fix), then the rest; within each group
// the most frequent first, then by template, method, path, rule and
// backend, so the order is stable.
func (t *Tally) Report(src Source) Report {
	t.mu.Lock()
	rows := make([]ReportViolation, 0, len(t.rows))
	for k, e := range t.rows {
		rows = append(rows, ReportViolation{
			Template: k.template, Method: k.method, Backend: k.backend,
			Path: k.path, Rule: k.rule, Count: e.count, Example: e.example,
		})
	}
	perl := make(map[tallyKey]bool)
	for k := range t.rows {
		if k.backend == BackendPerl {
			perl[tallyKey{template: k.template, method: k.method, path: k.path, rule: k.rule}] = true
		}
	}
	t.mu.Unlock()
	for i := range rows {
		r := &rows[i]
		r.Baseline = perl[tallyKey{template: r.Template, method: r.Method, path: r.Path, rule: r.Rule}]
	}
	sort.Slice(rows, func(i, j int) bool {
		a, b := &rows[i], &rows[j]
		if ra, rb := a.rustOnly(), b.rustOnly(); ra != rb {
			return ra
		}
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		if a.Template != b.Template {
			return a.Template < b.Template
		}
		if a.Method != b.Method {
			return a.Method < b.Method
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		if a.Rule != b.Rule {
			return a.Rule < b.Rule
		}
		return a.Backend < b.Backend
	})
	return Report{Source: src.Name, Version: src.Version, Violations: rows}
}

// RustOnly reports whether the row is a violation rust has and perl does
// not: what the report puts first.
func (r ReportViolation) RustOnly() bool { return r.rustOnly() }

func (r *ReportViolation) rustOnly() bool { return r.Backend == BackendRust && !r.Baseline }
