package config

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pve-migration/router/routing"
)

// DefaultAPISchema is where pve-docs installs the API schema that PVE's own
// API viewer reads; the schema checker falls back to the schema embedded
// in the binary when it is absent.
const DefaultAPISchema = "/usr/share/pve-docs/api-viewer/apidoc.js"

// Compare is the [compare] table: shadow comparison of GET answers between
// the two backends, the evidence an operator reads before moving a read.
type Compare struct {
	// Enabled turns shadowing on. Off, rust gets nothing while perl serves.
	Enabled bool
	// SamplePercent is the share of eligible GETs shadowed, 0–100.
	SamplePercent float64
	// Categories are the read categories whose GETs are shadowed.
	Categories []routing.Category
	// MaxBodyBytes bounds each answer read; a larger one is skipped.
	MaxBodyBytes int64
	// Timeout bounds each shadow request.
	Timeout time.Duration
	// MaxInflight bounds the shadow requests running at once.
	MaxInflight int
	// Schema turns the PVE schema check of both answers on.
	Schema bool
	// APISchema is the schema file the checker reads (apidoc.js).
	APISchema string
	// Ignore holds each template's compare_ignore paths, keyed by template
	// without format prefix (as Policy.Endpoints is).
	Ignore map[string][]string
}

// DefaultCompare is the contract's [compare] table when the file has none.
func DefaultCompare() Compare {
	return Compare{
		SamplePercent: 10,
		Categories:    []routing.Category{routing.NodeNetworkRead, routing.SDNRead},
		MaxBodyBytes:  1 << 20,
		Timeout:       5 * time.Second,
		MaxInflight:   4,
		Schema:        true,
		APISchema:     DefaultAPISchema,
		Ignore:        map[string][]string{},
	}
}

// Wants reports whether GETs of category c are compared at all (enabled
// and listed); sampling is the caller's business.
func (c *Compare) Wants(cat routing.Category) bool {
	return c.Enabled && slices.Contains(c.Categories, cat)
}

// compareKeys are the keys of [compare], in the contract's order.
// MaxCompareBodyBytes is the largest max_body_bytes accepted: a shadow
// job holds three answers in memory, and up to max_inflight (1024) jobs
// run at once, so an unbounded value lets one answer exhaust memory.
const MaxCompareBodyBytes = 64 << 20

var compareKeys = []string{"enabled", "sample_percent", "categories", "max_body_bytes", "timeout", "max_inflight", "schema", "api_schema"}

// readCategories are the categories [compare] accepts: only GETs are ever
// shadowed, and a write category has none worth comparing.
var readCategories = []routing.Category{routing.NodeNetworkRead, routing.SDNRead}

// compareParse is the parser's state for [compare] and compare_ignore.
type compareParse struct {
	c   Compare
	set bool
}

func (p *parser) compareState() *Compare {
	if !p.cmp.set {
		p.cmp.c, p.cmp.set = DefaultCompare(), true
	}
	return &p.cmp.c
}

// compareSnapshot is the validated [compare] table, defaults filled in.
func (p *parser) compareSnapshot() Compare {
	return *p.compareState()
}

// compareTable validates [compare].
func (p *parser) compareTable(v any) {
	m, ok := v.(map[string]any)
	if !ok {
		p.problem("compare", valueText(v), "expected a table ([compare]), got "+describe(v))
		return
	}
	c := p.compareState()
	for _, key := range sortedKeys(m) {
		full := "compare." + key
		v := m[key]
		switch key {
		case "enabled":
			if b, ok := p.boolean(full, v); ok {
				c.Enabled = b
			}
		case "schema":
			if b, ok := p.boolean(full, v); ok {
				c.Schema = b
			}
		case "sample_percent":
			f, ok := number(v)
			if !ok || math.IsNaN(f) || f < 0 || f > 100 {
				p.problem(full, valueText(v), "expected a number from 0 to 100, got "+describe(v))
				continue
			}
			c.SamplePercent = f
		case "max_body_bytes":
			n, ok := v.(int64)
			if !ok || n <= 0 {
				p.problem(full, valueText(v), "expected a positive integer number of bytes, got "+describe(v))
				continue
			}
			if n > MaxCompareBodyBytes {
				// Each running job holds three answers in memory, up
				// to max_inflight jobs at once.
				p.problem(full, valueText(v), fmt.Sprintf("out of range: at most %d bytes (64 MiB) per answer, got %d", int64(MaxCompareBodyBytes), n))
				continue
			}
			c.MaxBodyBytes = n
		case "max_inflight":
			n, ok := v.(int64)
			if !ok || n <= 0 || n > 1024 {
				p.problem(full, valueText(v), "expected an integer from 1 to 1024, got "+describe(v))
				continue
			}
			c.MaxInflight = int(n)
		case "timeout":
			if d, ok := p.seconds(full, v); ok {
				c.Timeout = d
			}
		case "api_schema":
			s, ok := v.(string)
			if !ok || strings.TrimSpace(s) == "" {
				p.problem(full, valueText(v), "expected a file path, got "+describe(v))
				continue
			}
			c.APISchema = s
		case "categories":
			if cats, ok := p.compareCategories(full, v); ok {
				c.Categories = cats
			}
		default:
			p.problem(full, valueText(v), unknownKey(key, "compare", compareKeys))
		}
	}
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case int64:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

// compareCategories validates categories: names of read categories. A
// write category is refused by name: shadowing a write would apply it
// twice.
func (p *parser) compareCategories(key string, v any) ([]routing.Category, bool) {
	arr, ok := v.([]any)
	if !ok {
		p.problem(key, valueText(v), `expected an array of categories (["node-network-read", "sdn-read"]), got `+describe(v))
		return nil, false
	}
	var names, reads []string
	for _, c := range routing.Categories() {
		names = append(names, c.String())
	}
	for _, c := range readCategories {
		reads = append(reads, c.String())
	}
	out := []routing.Category{}
	good := true
	for _, e := range arr {
		s, ok := e.(string)
		if !ok {
			p.problem(key, valueText(e), "expected category names as strings, got "+describe(e))
			good = false
			continue
		}
		name := strings.ToLower(strings.TrimSpace(s))
		var cat routing.Category
		found := false
		for _, c := range routing.Categories() {
			if c.String() == name {
				cat, found = c, true
			}
		}
		switch {
		case !found:
			msg := fmt.Sprintf("unknown category %q (valid: %s)", s, strings.Join(reads, ", "))
			if best := routing.Suggest(name, names); best != "" {
				msg += fmt.Sprintf("; did you mean %q?", best)
			}
			p.problem(key, strconv.Quote(s), msg)
			good = false
		case !slices.Contains(readCategories, cat):
			p.problem(key, strconv.Quote(s), fmt.Sprintf("category %q is not a read category: only GETs are compared (valid: %s)", s, strings.Join(reads, ", ")))
			good = false
		case !slices.Contains(out, cat):
			out = append(out, cat)
		}
	}
	return out, good
}

// ignorePath is a compare_ignore entry: dot-separated field names, each
// optionally followed by [] (every element of an array).
var ignorePath = regexp.MustCompile(`^[A-Za-z0-9_-]+(\[\])*(\.[A-Za-z0-9_-]+(\[\])*)*$`)

// compareIgnore validates an endpoint's compare_ignore and records it.
func (p *parser) compareIgnore(key, tmpl string, v any) {
	arr, ok := v.([]any)
	if !ok {
		p.problem(key, valueText(v), `expected an array of field paths (["data[].active"]), got `+describe(v))
		return
	}
	out := []string{}
	for _, e := range arr {
		s, ok := e.(string)
		if !ok {
			p.problem(key, valueText(e), "expected field paths as strings, got "+describe(e))
			continue
		}
		if !ignorePath.MatchString(s) {
			p.problem(key, strconv.Quote(s), fmt.Sprintf(`invalid field path %q: want dot-separated names, [] for every element (e.g. "data[].active")`, s))
			continue
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if tmpl != "" {
		p.compareState().Ignore[tmpl] = out
	}
}
