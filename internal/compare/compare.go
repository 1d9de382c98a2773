// Package compare decides whether two PVE API answers to the same GET say
// the same thing, the way PVE's clients read them. It is pure: bytes in, a
// verdict out, no network and no clock, so every rule is testable on its
// own. The shadow worker (internal/shadow) feeds it; Report tallies the
// verdicts for the admin page, the CLI and the gate.
//
// PVE answers are compared as PVE produces them: only the envelope fields a
// client reads (data, changes, total, errors; for extjs also success,
// status, message); arrays of objects built from Perl hashes (random order,
// hash_to_array) as sets keyed by their identifying field; a number against
// a numeric string as a difference of its own kind, because typed clients
// (Terraform, go-proxmox) break on it; the `changes` diff by its hunks only,
// since its header lines carry file mtimes.
package compare

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Result is a job's outcome, the `result` label of
// pve_migration_compare_total.
type Result string

// The results of the contract.
const (
	Match    Result = "match"
	Mismatch Result = "mismatch"
	Noise    Result = "noise"
	Error    Result = "error"
	Skipped  Result = "skipped"
)

// Kind says how a field differs.
type Kind string

// Kinds of difference. KindType is the number-vs-numeric-string case typed
// clients break on; KindShape any other change of JSON type.
const (
	KindValue   Kind = "value"   // same type, different value
	KindType    Kind = "type"    // a number on one side, a numeric string on the other
	KindShape   Kind = "shape"   // other JSON type change (object vs array, string vs bool, ...)
	KindMissing Kind = "missing" // perl has it, rust does not
	KindExtra   Kind = "extra"   // rust has it, perl does not
	KindStatus  Kind = "status"  // different HTTP status
	KindNoise   Kind = "noise"   // differs between two answers of the same backend
)

// StatusPath is the Field.Path of a KindStatus difference.
const StatusPath = "(status)"

// Field is one difference at a field path. Path uses dots for object keys
// and [] for "an element of this array", as compare_ignore does
// (data[].mtu). Perl and Rust are the two values as JSON (null when
// absent), shortened and with secret-looking fields redacted.
type Field struct {
	Path string          `json:"path"`
	Kind Kind            `json:"kind"`
	Perl json.RawMessage `json:"perl"`
	Rust json.RawMessage `json:"rust"`
}

// Answer is one HTTP answer: its status and body.
type Answer struct {
	Status int
	Body   []byte
}

// Input is one comparison job's material.
type Input struct {
	// Extjs is true for /api2/extjs paths, whose envelope also carries
	// success, status and message.
	Extjs bool
	// Perl and Rust are the two backends' answers to the same GET.
	Perl, Rust Answer
	// Again is the serving backend's second answer, and ServedBy ("perl" or
	// "rust") says which one that is; a field that differs between it and
	// the same backend's other answer is noise. A zero Again skips the
	// calibration.
	Again    Answer
	ServedBy string
	// Ignore are the template's compare_ignore paths.
	Ignore []string
	// Learned reports whether a path was noise in an earlier job of the
	// same template (nil: nothing learned).
	Learned func(path string) bool
}

// Verdict is the outcome of one comparison.
type Verdict struct {
	Result Result
	// Reason says why for Error and Skipped; empty otherwise. It is one of
	// a small set of fixed texts (it is a key of the report), never an
	// answer's content.
	Reason string
	// Fields are the differences: mismatches (Kind other than noise) and
	// the noise seen in this job (KindNoise), in path order.
	Fields []Field
	// NoisePaths are the paths found to differ between the two answers of
	// the serving backend, to be learned for the template.
	NoisePaths []string
}

// Compare judges one job. It never fails: unusable answers give an Error
// verdict with a reason.
func Compare(in Input) Verdict {
	if in.Perl.Status != in.Rust.Status {
		return Verdict{Result: Mismatch, Fields: []Field{{Path: StatusPath, Kind: KindStatus,
			Perl: json.RawMessage(strconv.Itoa(in.Perl.Status)), Rust: json.RawMessage(strconv.Itoa(in.Rust.Status))}}}
	}
	// Each body is decoded at most once, and not at all where two answers
	// are byte for byte the same (the common case of a healthy backend).
	var pv, rv map[string]any
	var err error
	if pv, err = decode(in.Perl.Body); err != nil {
		return Verdict{Result: Error, Reason: "perl answer is not a JSON object"}
	}
	var diffs []Field
	if !bytes.Equal(in.Perl.Body, in.Rust.Body) {
		if rv, err = decode(in.Rust.Body); err != nil {
			return Verdict{Result: Error, Reason: "rust answer is not a JSON object"}
		}
		diffs = diffDecoded(in.Extjs, pv, rv)
	}
	noise := map[string]bool{}
	var noisePaths []string
	if in.Again.Status != 0 {
		first, fv := in.Perl, pv
		if in.ServedBy == "rust" {
			first, fv = in.Rust, rv
		}
		if in.Again.Status != first.Status {
			return Verdict{Result: Error, Reason: fmt.Sprintf("%s answered %d, then %d", in.ServedBy, first.Status, in.Again.Status)}
		}
		if !bytes.Equal(first.Body, in.Again.Body) {
			if fv == nil {
				fv = pv // rust's body equals perl's
			}
			av, err := decode(in.Again.Body)
			if err != nil {
				return Verdict{Result: Error, Reason: in.ServedBy + " answer is not a JSON object"}
			}
			for _, f := range diffDecoded(in.Extjs, fv, av) {
				if isDigest(f.Path) || ignored(f.Path, in.Ignore) || noise[f.Path] {
					continue
				}
				if structural(f.Kind) {
					// An element or field that comes and goes between
					// two answers of one backend is a change of state
					// the router did not see (pvesh on the node, an SDN
					// edit through another node's router), not noise:
					// learned, "data[]" would cover every path of the
					// template and hide every later mismatch.
					return Verdict{Result: Skipped, Reason: "answer changed during job"}
				}
				noise[f.Path] = true
				noisePaths = append(noisePaths, f.Path)
			}
		}
	}
	v := Verdict{Result: Match, NoisePaths: noisePaths}
	for _, f := range diffs {
		if ignored(f.Path, in.Ignore) {
			continue
		}
		if !isDigest(f.Path) && (covered(f.Path, noise) || (in.Learned != nil && in.Learned(f.Path))) {
			f.Kind = KindNoise
			if v.Result == Match {
				v.Result = Noise
			}
		} else {
			v.Result = Mismatch
		}
		v.Fields = append(v.Fields, f)
	}
	return v
}

// structural reports whether a difference between two answers of one
// backend changes their shape (something added, removed, or of another
// type) rather than a value.
func structural(k Kind) bool { return k == KindMissing || k == KindExtra || k == KindShape }

// isDigest: a digest must match whatever the calibration says, because
// clients send it back on writes.
func isDigest(path string) bool {
	return path == "digest" || strings.HasSuffix(path, ".digest")
}

// covered reports whether path or one of its ancestors is in set.
func covered(path string, set map[string]bool) bool {
	for p := path; p != ""; p = parent(p) {
		if set[p] {
			return true
		}
	}
	return false
}

// parent strips the last path step: "data[].a" → "data[]" → "data" → "".
func parent(p string) string {
	if strings.HasSuffix(p, "[]") {
		return p[:len(p)-2]
	}
	if i := strings.LastIndexAny(p, ".]"); i >= 0 {
		if p[i] == ']' {
			return p[:i+1]
		}
		return p[:i]
	}
	return ""
}

// ignored reports whether path is one of the compare_ignore paths or below one.
func ignored(path string, ignore []string) bool {
	for _, ig := range ignore {
		if path == ig || (strings.HasPrefix(path, ig) && (path[len(ig)] == '.' || path[len(ig)] == '[')) {
			return true
		}
	}
	return false
}

// envelopeKeys are the answer fields a client reads.
var (
	jsonKeys  = []string{"data", "changes", "total", "errors"}
	extjsKeys = []string{"data", "changes", "total", "errors", "success", "status", "message"}
)

// Diff lists the differences between two answer bodies (perl first), in
// path order. It fails when either is not a JSON object.
func Diff(extjs bool, perl, rust []byte) ([]Field, error) {
	pv, err := decode(perl)
	if err != nil {
		return nil, fmt.Errorf("perl answer is not a JSON object: %w", err)
	}
	rv, err := decode(rust)
	if err != nil {
		return nil, fmt.Errorf("rust answer is not a JSON object: %w", err)
	}
	return diffDecoded(extjs, pv, rv), nil
}

// diffDecoded is Diff on decoded answers.
func diffDecoded(extjs bool, pv, rv map[string]any) []Field {
	keys := jsonKeys
	if extjs {
		keys = extjsKeys
	}
	var d differ
	for _, k := range keys {
		a, aok := pv[k]
		b, bok := rv[k]
		if k == "changes" {
			a, b = hunks(a), hunks(b)
		}
		d.field(k, a, aok, b, bok)
	}
	sort.SliceStable(d.out, func(i, j int) bool { return d.out[i].Path < d.out[j].Path })
	return d.out
}

func decode(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, fmt.Errorf("null")
	}
	return m, nil
}

// hunks drops the header lines of a unified diff ("--- file mtime",
// "+++ file mtime"), which differ with every write of the file.
func hunks(v any) any {
	s, ok := v.(string)
	if !ok {
		return v
	}
	lines := strings.Split(s, "\n")
	out := lines[:0]
	for _, l := range lines {
		if strings.HasPrefix(l, "--- ") || strings.HasPrefix(l, "+++ ") {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

type differ struct{ out []Field }

func (d *differ) add(path string, k Kind, a, b any) {
	d.out = append(d.out, Field{Path: path, Kind: k, Perl: example(path, a), Rust: example(path, b)})
}

// field compares a possibly absent value on each side.
func (d *differ) field(path string, a any, aok bool, b any, bok bool) {
	switch {
	case !aok && !bok:
	case !bok:
		d.add(path, KindMissing, a, nil)
	case !aok:
		d.add(path, KindExtra, nil, b)
	default:
		d.value(path, a, b)
	}
}

func (d *differ) value(path string, a, b any) {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok {
			d.add(path, KindShape, a, b)
			return
		}
		keys := make([]string, 0, len(x)+len(y))
		for k := range x {
			keys = append(keys, k)
		}
		for k := range y {
			if _, ok := x[k]; !ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			av, aok := x[k]
			bv, bok := y[k]
			d.field(join(path, k), av, aok, bv, bok)
		}
	case []any:
		y, ok := b.([]any)
		if !ok {
			d.add(path, KindShape, a, b)
			return
		}
		d.array(path, x, y)
	case json.Number:
		switch y := b.(type) {
		case json.Number:
			if !numEqual(x, y) {
				d.add(path, KindValue, a, b)
			}
		case string:
			if _, err := strconv.ParseFloat(strings.TrimSpace(y), 64); err == nil {
				d.add(path, KindType, a, b)
			} else {
				d.add(path, KindShape, a, b)
			}
		default:
			d.add(path, KindShape, a, b)
		}
	case string:
		switch y := b.(type) {
		case string:
			if x != y {
				d.add(path, KindValue, a, b)
			}
		case json.Number:
			if _, err := strconv.ParseFloat(strings.TrimSpace(x), 64); err == nil {
				d.add(path, KindType, a, b)
			} else {
				d.add(path, KindShape, a, b)
			}
		default:
			d.add(path, KindShape, a, b)
		}
	case bool:
		y, ok := b.(bool)
		if !ok {
			d.add(path, KindShape, a, b)
		} else if x != y {
			d.add(path, KindValue, a, b)
		}
	case nil:
		if b != nil {
			d.add(path, KindShape, a, b)
		}
	}
}

func numEqual(a, b json.Number) bool {
	if a == b {
		return true
	}
	x, err1 := strconv.ParseFloat(string(a), 64)
	y, err2 := strconv.ParseFloat(string(b), 64)
	return err1 == nil && err2 == nil && x == y
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// idKeys are the fields that identify an element of a PVE list built from
// a Perl hash, most specific first.
var idKeys = []string{"iface", "vnet", "zone", "subnet", "controller", "ipam", "dns", "fabric", "node_id", "id", "name", "node", "cidr"}

// array compares two arrays: as sets keyed by an identifying field when
// every element is an object that has it (and it is unique), as multisets
// when every element is a scalar, else position by position.
func (d *differ) array(path string, a, b []any) {
	elem := path + "[]"
	if key := setKey(a, b); key != "" {
		bm := map[string]map[string]any{}
		for _, e := range b {
			m := e.(map[string]any)
			bm[idOf(m[key])] = m
		}
		seen := map[string]bool{}
		for _, e := range a {
			m := e.(map[string]any)
			id := idOf(m[key])
			seen[id] = true
			if o, ok := bm[id]; ok {
				d.value(elem, m, o)
			} else {
				d.add(elem, KindMissing, map[string]any{key: m[key]}, nil)
			}
		}
		for _, e := range b {
			m := e.(map[string]any)
			if !seen[idOf(m[key])] {
				d.add(elem, KindExtra, nil, map[string]any{key: m[key]})
			}
		}
		return
	}
	if scalars(a) && scalars(b) {
		if !slices.Equal(canon(a), canon(b)) {
			d.add(path, KindValue, a, b)
		}
		return
	}
	for i := 0; i < len(a) || i < len(b); i++ {
		switch {
		case i >= len(b):
			d.add(elem, KindMissing, a[i], nil)
		case i >= len(a):
			d.add(elem, KindExtra, nil, b[i])
		default:
			d.value(elem, a[i], b[i])
		}
	}
}

// setKey picks the identifying field of two arrays of objects, "" when
// there is none.
func setKey(a, b []any) string {
	if len(a) == 0 && len(b) == 0 {
		return ""
	}
	for _, k := range idKeys {
		if unique(a, k) && unique(b, k) {
			return k
		}
	}
	return ""
}

func unique(arr []any, key string) bool {
	seen := make(map[string]bool, len(arr))
	for _, e := range arr {
		m, ok := e.(map[string]any)
		if !ok {
			return false
		}
		v, ok := m[key]
		if !ok {
			return false
		}
		id := idOf(v)
		if seen[id] {
			return false
		}
		seen[id] = true
	}
	return true
}

// idOf is an element's identity; a number and its string spelling are the
// same element (their type difference is reported on the field itself).
func idOf(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return string(x)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func scalars(arr []any) bool {
	for _, e := range arr {
		switch e.(type) {
		case map[string]any, []any:
			return false
		}
	}
	return true
}

func canon(arr []any) []string {
	out := make([]string, len(arr))
	for i, e := range arr {
		b, _ := json.Marshal(e)
		out[i] = string(b)
	}
	slices.Sort(out)
	return out
}

// maxExample bounds an example value; longer ones are cut and shown as a
// JSON string ending in "…".
const maxExample = 160

// secretWords mark field names whose values are never shown.
var secretWords = []string{"password", "secret", "token", "key", "psk", "ticket", "csrf"}

// example renders a value for the report.
func example(path string, v any) json.RawMessage {
	last := path
	if i := strings.LastIndexAny(path, ".]"); i >= 0 {
		last = path[i+1:]
	}
	if secretWord(last) && v != nil {
		return json.RawMessage(`"(redacted)"`)
	}
	// A difference at an object or array (a shape change, data null on one
	// side) shows the whole value: what sits under a secret-looking key
	// inside it is redacted too (an SDN IPAM's token, a DNS plugin's key).
	b, err := json.Marshal(redactNested(v))
	if err != nil {
		return json.RawMessage("null")
	}
	if len(b) > maxExample {
		s, _ := json.Marshal(string(b[:maxExample]) + "…")
		return s
	}
	return b
}

// secretWord reports whether a field name may hold a credential.
func secretWord(name string) bool {
	name = strings.ToLower(name)
	for _, w := range secretWords {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// redactNested returns v with every value under a secret-looking key
// replaced by "(redacted)", at any depth; v itself is not changed.
func redactNested(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if secretWord(k) && e != nil {
				out[k] = "(redacted)"
			} else {
				out[k] = redactNested(e)
			}
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = redactNested(e)
		}
		return out
	}
	return v
}
