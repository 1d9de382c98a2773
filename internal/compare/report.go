package compare

import (
	"encoding/json"
	"github.com/pve-migration/router/internal/pveschema"
	"sort"
	"sync"
	"time"
)

// MaxWindow is the longest window Report.Window can answer for: it keeps
// one bucket per second for this long.
const MaxWindow = time.Hour

// maxReasons bounds the distinct error and skip reasons kept per template.
const maxReasons = 32

// maxFields bounds the field paths kept per template, so that an answer
// with ever-new paths cannot grow the report without limit.
const maxFields = 256

// Report tallies verdicts per template and field path, with one example
// pair each, plus totals and a sliding window per category. It is safe
// for concurrent use; every method takes the time it needs as an argument,
// so it has no clock of its own.
type Report struct {
	mu         sync.Mutex
	since      time.Time
	templates  map[tplKey]*tplStats
	categories map[string]*catStats
	noise      map[string]map[string]bool // template → learned noise paths
	// noiseSeen counts in how many jobs a path was noise before it is
	// learned: one out-of-band change between two answers (pvesh on the
	// node) must not hide that path's mismatches for good.
	noiseSeen map[string]map[string]uint8
}

type tplKey struct{ template, method string }

type tplStats struct {
	category string
	counts   map[Result]uint64
	reasons  map[string]uint64
	fields   map[fieldKey]*fieldStats
}

type fieldKey struct {
	path string
	kind Kind
}

type fieldStats struct {
	count      uint64
	perl, rust json.RawMessage
}

type catStats struct {
	counts  map[Result]uint64
	buckets [int(MaxWindow / time.Second)]bucket
}

type bucket struct {
	sec                  int64
	compared, mismatched uint32
}

// NewReport returns an empty report whose window starts at since.
func NewReport(since time.Time) *Report {
	return &Report{since: since, templates: map[tplKey]*tplStats{}, categories: map[string]*catStats{}, noise: map[string]map[string]bool{}, noiseSeen: map[string]map[string]uint8{}}
}

// Record adds one job's verdict.
func (r *Report) Record(category, template, method string, v Verdict, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := tplKey{template, method}
	t := r.templates[k]
	if t == nil {
		t = &tplStats{category: category, counts: map[Result]uint64{}, reasons: map[string]uint64{}, fields: map[fieldKey]*fieldStats{}}
		r.templates[k] = t
	}
	t.counts[v.Result]++
	if v.Reason != "" {
		r := v.Reason
		if _, ok := t.reasons[r]; !ok && len(t.reasons) >= maxReasons {
			r = "other"
		}
		t.reasons[r]++
	}
	seen := make(map[fieldKey]bool, len(v.Fields))
	for _, f := range v.Fields {
		fk := fieldKey{f.Path, f.Kind}
		if seen[fk] {
			continue // counted once per job: "in how many answers"
		}
		seen[fk] = true
		fs := t.fields[fk]
		if fs == nil {
			if len(t.fields) >= maxFields {
				continue
			}
			fs = &fieldStats{perl: f.Perl, rust: f.Rust}
			t.fields[fk] = fs
		}
		fs.count++
	}
	if len(v.NoisePaths) > 0 {
		n := r.noise[template]
		if n == nil {
			n = map[string]bool{}
			r.noise[template] = n
		}
		seen := r.noiseSeen[template]
		if seen == nil {
			seen = map[string]uint8{}
			r.noiseSeen[template] = seen
		}
		for _, p := range v.NoisePaths {
			if n[p] {
				continue
			}
			if _, ok := seen[p]; !ok && len(seen) >= maxFields {
				continue
			}
			if seen[p]++; seen[p] >= learnAfter && len(n) < maxFields {
				n[p] = true
				delete(seen, p)
			}
		}
	}
	c := r.categories[category]
	if c == nil {
		c = &catStats{counts: map[Result]uint64{}}
		r.categories[category] = c
	}
	c.counts[v.Result]++
	if v.Result == Match || v.Result == Mismatch || v.Result == Noise {
		sec := now.Unix()
		b := &c.buckets[uint64(sec)%uint64(len(c.buckets))]
		if b.sec != sec {
			*b = bucket{sec: sec}
		}
		b.compared++
		if v.Result == Mismatch {
			b.mismatched++
		}
	}
}

// learnAfter is in how many jobs a path must be noise to be learned.
const learnAfter = 2

// Learned returns the noise learned so far for template, for Input.Learned.
// The function holds the report's lock only while it runs.
func (r *Report) Learned(template string) func(path string) bool {
	return func(path string) bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return covered(path, r.noise[template])
	}
}

// Window returns how many jobs of category were compared (match, mismatch
// or noise) and how many of them mismatched in the d before now (at most
// MaxWindow). Errors and skipped jobs are no evidence either way and are
// not counted. This is the evidence the gate reads.
func (r *Report) Window(category string, now time.Time, d time.Duration) (compared, mismatched int) {
	if d > MaxWindow {
		d = MaxWindow
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.categories[category]
	if c == nil {
		return 0, 0
	}
	hi := now.Unix()
	lo := hi - int64(d/time.Second)
	for i := range c.buckets {
		b := &c.buckets[i]
		if b.sec > lo && b.sec <= hi {
			compared += int(b.compared)
			mismatched += int(b.mismatched)
		}
	}
	return compared, mismatched
}

// Summary is the report as /compare.json and `migration-ctl compare --json`
// show it. Templates and their fields are sorted worst first.
type Summary struct {
	// Enabled, Phase and SamplePercent are filled by the face that serves
	// the summary (it knows the config); the report leaves them zero.
	Enabled       bool    `json:"enabled"`
	Phase         string  `json:"phase,omitempty"`
	SamplePercent float64 `json:"sample_percent"`
	// Since and Until are the window the counts cover: from the router's
	// start to the moment of the summary (Until is set by the face).
	Since      time.Time         `json:"since"`
	Until      time.Time         `json:"until"`
	Templates  []TemplateSummary `json:"templates"`
	Categories []CategorySummary `json:"categories"`
	// Schema is the conformance of the same jobs' answers to PVE's API
	// schema (both backends, perl's as the baseline); nil while schema
	// checking is off. Filled by the face, like Phase.
	Schema *pveschema.Report `json:"schema,omitempty"`
}

// TemplateSummary is one template's (and method's) tally.
type TemplateSummary struct {
	Template   string            `json:"template"`
	Method     string            `json:"method"`
	Category   string            `json:"category"`
	Compared   uint64            `json:"compared"`
	Matched    uint64            `json:"matched"`
	Mismatched uint64            `json:"mismatched"`
	Noise      uint64            `json:"noise"`
	Errors     uint64            `json:"errors"`
	Skipped    uint64            `json:"skipped"`
	Reasons    map[string]uint64 `json:"reasons,omitempty"`
	Fields     []FieldSummary    `json:"fields"`
}

// FieldSummary is one field path's tally with its first example. Count is
// the number of jobs in which the path differed (an array element path
// counts once per job however many elements differ).
type FieldSummary struct {
	Path    string  `json:"path"`
	Count   uint64  `json:"count"`
	Kind    Kind    `json:"kind"`
	Example Example `json:"example"`
}

// Example is one pair of differing values, as JSON.
type Example struct {
	Perl json.RawMessage `json:"perl"`
	Rust json.RawMessage `json:"rust"`
}

// CategorySummary are a category's totals.
type CategorySummary struct {
	Category   string `json:"category"`
	Compared   uint64 `json:"compared"`
	Matched    uint64 `json:"matched"`
	Mismatched uint64 `json:"mismatched"`
	Noise      uint64 `json:"noise"`
	Errors     uint64 `json:"errors"`
	Skipped    uint64 `json:"skipped"`
}

// MismatchRate is mismatched over compared, 0 when nothing was compared.
func (t TemplateSummary) MismatchRate() float64 {
	if t.Compared == 0 {
		return 0
	}
	return float64(t.Mismatched) / float64(t.Compared)
}

// Summary returns a copy of the report, worst first: templates by
// mismatches, then mismatch rate, then errors; fields mismatches before
// noise, then by count.
func (r *Report) Summary() Summary {
	r.mu.Lock()
	s := Summary{Since: r.since, Templates: []TemplateSummary{}, Categories: []CategorySummary{}}
	for k, t := range r.templates {
		ts := TemplateSummary{Template: k.template, Method: k.method, Category: t.category,
			Matched: t.counts[Match], Mismatched: t.counts[Mismatch], Noise: t.counts[Noise],
			Errors: t.counts[Error], Skipped: t.counts[Skipped], Fields: []FieldSummary{}}
		ts.Compared = ts.Matched + ts.Mismatched + ts.Noise
		if len(t.reasons) > 0 {
			ts.Reasons = make(map[string]uint64, len(t.reasons))
			for k, v := range t.reasons {
				ts.Reasons[k] = v
			}
		}
		for fk, f := range t.fields {
			ts.Fields = append(ts.Fields, FieldSummary{Path: fk.path, Count: f.count, Kind: fk.kind, Example: Example{Perl: f.perl, Rust: f.rust}})
		}
		sort.Slice(ts.Fields, func(i, j int) bool {
			a, b := ts.Fields[i], ts.Fields[j]
			if (a.Kind == KindNoise) != (b.Kind == KindNoise) {
				return b.Kind == KindNoise
			}
			if a.Count != b.Count {
				return a.Count > b.Count
			}
			if a.Path != b.Path {
				return a.Path < b.Path
			}
			return a.Kind < b.Kind
		})
		s.Templates = append(s.Templates, ts)
	}
	for name, c := range r.categories {
		cs := CategorySummary{Category: name, Matched: c.counts[Match], Mismatched: c.counts[Mismatch], Noise: c.counts[Noise],
			Errors: c.counts[Error], Skipped: c.counts[Skipped]}
		cs.Compared = cs.Matched + cs.Mismatched + cs.Noise
		s.Categories = append(s.Categories, cs)
	}
	r.mu.Unlock()
	sort.Slice(s.Templates, func(i, j int) bool {
		a, b := s.Templates[i], s.Templates[j]
		switch {
		case a.Mismatched != b.Mismatched:
			return a.Mismatched > b.Mismatched
		case a.MismatchRate() != b.MismatchRate():
			return a.MismatchRate() > b.MismatchRate()
		case a.Errors != b.Errors:
			return a.Errors > b.Errors
		case a.Template != b.Template:
			return a.Template < b.Template
		}
		return a.Method < b.Method
	})
	sort.Slice(s.Categories, func(i, j int) bool { return s.Categories[i].Category < s.Categories[j].Category })
	return s
}
