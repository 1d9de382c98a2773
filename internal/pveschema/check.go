package pveschema

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Rule names a schema rule an answer broke. The names are part of the
// contract (the compare report and the metric's `rule` label).
type Rule string

// The rules of PVE's check_prop and check_object.
const (
	// RuleRequired: a property without `optional` is absent or null, or a
	// property named by another's `requires` is.
	RuleRequired Rule = "required"
	// RuleType: the value is not of the schema's type by PVE's rules.
	RuleType Rule = "type"
	// RuleEnum: the value's text is none of the enum's (or no oneOf
	// variant has its type).
	RuleEnum Rule = "enum"
	// RulePattern: the value does not match the anchored pattern.
	RulePattern Rule = "pattern"
	// RuleFormat: the value fails a registered PVE format.
	RuleFormat Rule = "format"
	// RuleRange: a numeric value is below minimum or above maximum.
	RuleRange Rule = "range"
	// RuleLength: the value is shorter than minLength or longer than
	// maxLength (in characters).
	RuleLength Rule = "length"
	// RuleExtra: a key the schema does not define, where
	// additionalProperties is explicitly false.
	RuleExtra Rule = "extra"
)

// Violation is one place where an answer leaves its schema.
type Violation struct {
	// Path is where, in the compare report's dot form rooted at the
	// envelope's data: "data", "data[].mtu", "data.fabrics[].id".
	// Array elements are "[]" so that counts add up per field.
	Path string `json:"path"`
	// Rule is the rule broken.
	Rule Rule `json:"rule"`
	// Example is the offending value as JSON text (cut to 96 bytes,
	// empty for an absent value, "(redacted)" under a key that may hold a
	// secret).
	Example string `json:"example"`
	// Message says what PVE's checker would have said, without the
	// answer's text (only Example carries that, cut and redacted).
	Message string `json:"message"`
}

// ErrNoSchema is returned for a template and method the schema does not
// describe.
var ErrNoSchema = errors.New("no schema for this method")

// Check checks data, the JSON text of an answer's `data` member, against
// the return schema of method on template (PVE's `returns` describes data
// only, never the envelope). It returns ErrNoSchema (wrapped) when the
// schema has no such method and a parse error for invalid JSON; otherwise
// the violations, sorted by path and rule, one per path and rule (the
// first example of a list's elements), nil when there are none.
func (c *Checker) Check(template, method string, data []byte) ([]Violation, error) {
	n, ok := c.methods[methodKey(template, method)]
	if !ok {
		return nil, fmt.Errorf("%s %s: %w", method, template, ErrNoSchema)
	}
	v, err := decodeInterned(data, c.names)
	if err != nil {
		return nil, fmt.Errorf("%s %s: answer data: %w", method, template, err)
	}
	return checkNode(n, v), nil
}

// CheckBody checks a whole json or extjs answer body: the envelope is
// decoded and its `data` member checked (an envelope without data checks
// an absent value). An extjs body with `success: 0` is ErrNotSuccess: a
// failure's data is no answer of the method. The caller skips error
// statuses (CheckAnswer does both).
func (c *Checker) CheckBody(template, method string, body []byte) ([]Violation, error) {
	n, ok := c.methods[methodKey(template, method)]
	if !ok {
		return nil, fmt.Errorf("%s %s: %w", method, template, ErrNoSchema)
	}
	v, err := decodeInterned(body, c.names)
	if err != nil {
		return nil, fmt.Errorf("%s %s: answer body: %w", method, template, err)
	}
	env, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s %s: answer body is not a JSON object", method, template)
	}
	if s, ok := env["success"]; ok && !perlTruthy(s) {
		return nil, fmt.Errorf("%s %s: extjs success 0: %w", method, template, ErrNotSuccess)
	}
	return checkNode(n, env["data"]), nil
}

// CheckValue checks an already decoded data value. Numbers may be
// json.Number (decoded with UseNumber, which keeps their text as PVE's
// checker sees it) or float64.
func (c *Checker) CheckValue(template, method string, data any) ([]Violation, error) {
	n, ok := c.methods[methodKey(template, method)]
	if !ok {
		return nil, fmt.Errorf("%s %s: %w", method, template, ErrNoSchema)
	}
	return checkNode(n, data), nil
}

func checkNode(n *node, v any) []Violation {
	w := walker{path: make([]byte, 0, 64)}
	w.path = append(w.path, "data"...)
	w.prop(v, n, "")
	if len(w.out) > 1 {
		sort.SliceStable(w.out, func(i, j int) bool {
			if w.out[i].Path != w.out[j].Path {
				return w.out[i].Path < w.out[j].Path
			}
			return w.out[i].Rule < w.out[j].Rule
		})
		// PVE joins the messages of one path into one error; per answer,
		// a path breaks a rule or does not (every element of a list
		// shares the path "[]"), so the first example stands for all.
		out := w.out[:1]
		for _, x := range w.out[1:] {
			if last := &out[len(out)-1]; x.Path == last.Path && x.Rule == last.Rule {
				continue
			}
			out = append(out, x)
		}
		w.out = out
	}
	return w.out
}

// walker carries one check's state: the path it is at and what it found.
type walker struct {
	out  []Violation
	path []byte
}

const maxKeyInPath = 64

func (w *walker) push(key string) int {
	mark := len(w.path)
	w.path = append(w.path, '.')
	if len(key) > maxKeyInPath {
		key = key[:maxKeyInPath] + "…"
	}
	w.path = append(w.path, key...)
	return mark
}

func (w *walker) add(r Rule, v any, msg string) {
	p := string(w.path)
	w.out = append(w.out, Violation{Path: p, Rule: r, Example: example(p, v), Message: msg})
}

// prop is check_prop: the schema n applied to one value (nil for absent
// or null; Perl sees both as undef). inst is the instance type that the
// enclosing object's type-property names, "" for none.
func (w *walker) prop(v any, n *node, inst string) {
	optionalForType := false
	if len(n.oneOf) > 0 && !n.typedOneOf {
		if n.typeProperty != "" {
			optionalForType = true
			if inst != "" {
				for _, alt := range n.oneOf {
					if !alt.hasInstanceTypes || !contains(alt.instanceTypes, inst) {
						continue
					}
					optionalForType = alt.optional
					w.prop(v, alt, "")
				}
			}
		} else {
			// Any alternative may pass; when none does, PVE reports
			// every alternative's errors.
			mark := len(w.out)
			for _, alt := range n.oneOf {
				before := len(w.out)
				w.prop(v, alt, "")
				if len(w.out) == before {
					w.out = w.out[:mark]
					break
				}
			}
		}
	} else if inst != "" && n.hasInstanceTypes && !contains(n.instanceTypes, inst) {
		// A property that does not apply to this instance type may be
		// absent whatever its own optionality.
		optionalForType = true
	}
	if n.alias {
		return
	}
	if v == nil {
		if n.nullType {
			return
		}
		if !n.optional && !n.group && !optionalForType {
			w.add(RuleRequired, nil, "property is missing and it is not optional")
		}
		return
	}
	if !w.typeCheck(v, n) {
		return
	}
	switch x := v.(type) {
	case []any:
		if n.items != nil {
			mark := len(w.path)
			w.path = append(w.path, "[]"...)
			for _, el := range x {
				w.prop(el, n.items, "")
			}
			w.path = w.path[:mark]
		}
		return
	case map[string]any:
		if n.checkObject {
			w.object(x, n, "")
		} else if n.typedOneOf {
			w.typedOneOf(x, n)
		}
		return
	case bool:
		// A JSON boolean is a reference in Perl: check_object refuses it.
		if n.checkObject {
			w.add(RuleType, v, "an object is required")
		}
		return
	}
	w.scalar(scalarText(v), v, n)
}

// typeCheck is check_type on a defined value.
func (w *walker) typeCheck(v any, n *node) bool {
	if len(n.types) == 0 {
		return true
	}
	for _, k := range n.types {
		if typeOK(k, v) {
			return true
		}
	}
	w.add(RuleType, v, "type check ('"+n.typeNames+"') failed")
	return false
}

func typeOK(k kind, v any) bool {
	switch k {
	case kindAny:
		return true
	case kindNull, kindCoderef:
		return false
	case kindArray:
		_, ok := v.([]any)
		return ok
	case kindObject:
		_, ok := v.(map[string]any)
		return ok
	}
	switch v.(type) {
	case []any, map[string]any:
		return false
	case bool:
		return k == kindBoolean
	}
	switch k {
	case kindBoolean:
		t := scalarText(v)
		return t == "1" || t == "0"
	case kindInteger:
		return isInteger(scalarText(v))
	case kindNumber:
		return isNumber(scalarText(v))
	}
	return true // string and unknown type names accept any scalar
}

// scalar is check_prop's branch for a defined non-reference value: format,
// pattern, length, range, enum, in that order, stopping at the first that
// fails (as PVE does).
func (w *walker) scalar(text string, v any, n *node) {
	if n.objectOnly {
		w.add(RuleType, v, "value must be an object")
		return
	}
	if n.format != nil && !n.format(text) {
		w.add(RuleFormat, v, "invalid format - value does not look like a valid "+n.formatName)
		return
	}
	if n.propFormat != nil {
		if msg := checkPropertyString(n.propFormat, text); msg != "" {
			if n.propFormat.secretKeys {
				v = redacted
			}
			w.add(RuleFormat, v, "invalid format - "+msg)
			return
		}
	}
	if n.pattern != nil && !n.pattern.MatchString(text) {
		w.add(RulePattern, v, "value does not match the regex pattern")
		return
	}
	if n.maxLen >= 0 || n.minLen >= 0 {
		l := utf8.RuneCountInString(text)
		if n.maxLen >= 0 && l > n.maxLen {
			w.add(RuleLength, v, "value may only be "+strconv.Itoa(n.maxLen)+" characters long")
			return
		}
		if n.minLen >= 0 && l < n.minLen {
			w.add(RuleLength, v, "value must be at least "+strconv.Itoa(n.minLen)+" characters long")
			return
		}
	}
	if (n.hasMax || n.hasMin) && isNumber(text) {
		f := perlNumify(text)
		if n.hasMax && f > n.max {
			w.add(RuleRange, v, "value must have a maximum value of "+perlFloat(n.max))
			return
		}
		if n.hasMin && f < n.min {
			w.add(RuleRange, v, "value must have a minimum value of "+perlFloat(n.min))
			return
		}
	}
	if n.enum != nil && !contains(n.enum, text) {
		// The value itself is in Example, cut and redacted; messages
		// never carry answer text.
		w.add(RuleEnum, v, "value does not have a value in the enumeration '"+n.enumText+"'")
	}
}

// object is check_object. skip is a key that is not extra whatever the
// schema says (the type property of a typed oneOf, owned by the oneOf).
func (w *walker) object(val map[string]any, n *node, skip string) {
	if n.hasAlias {
		val = w.remapAliases(val, n)
	}
	// check_object's two loops (every schema property, then every key of
	// the value) in one pass over the value's keys, which are far fewer
	// than a schema's properties (a network list item has about 10 of
	// 52): absent properties are visited afterwards only when their
	// absence can matter.
	var seenBuf [128]bool
	var seen []bool
	if len(n.props) <= len(seenBuf) {
		seen = seenBuf[:len(n.props)]
	} else {
		seen = make([]bool, len(n.props))
	}
	for k, x := range val {
		if i, ok := n.propIndex[k]; ok {
			seen[i] = true
			sub := n.props[i].node
			inst := ""
			if sub.typeProperty != "" {
				inst = instanceText(val[sub.typeProperty])
			}
			mark := w.push(k)
			w.prop(x, sub, inst)
			w.path = w.path[:mark]
			if sub.requires != "" && val[sub.requires] == nil {
				mark := w.push(sub.requires)
				w.add(RuleRequired, nil, "missing property required by '"+k+"'")
				w.path = w.path[:mark]
			}
			if sub.requiresNode != nil {
				w.prop(val, sub.requiresNode, "")
			}
			matched := true
			if len(sub.oneOf) > 0 {
				inst := instanceText(val[sub.typeProperty])
				matched = false
				for _, alt := range sub.oneOf {
					if alt.hasInstanceTypes && !contains(alt.instanceTypes, inst) {
						continue
					}
					matched = true
					break
				}
			}
			if matched {
				continue
			}
		}
		if k == skip {
			continue
		}
		switch n.extra {
		case extraForbidden:
			mark := w.push(k)
			w.add(RuleExtra, x, "property is not defined in schema and the schema does not allow additional properties")
			w.path = w.path[:mark]
		case extraSchema:
			mark := w.push(k)
			w.prop(x, n.extraNode, "")
			w.path = w.path[:mark]
		}
	}
	for i := range n.props {
		if seen[i] || n.props[i].absentOK {
			continue
		}
		p := &n.props[i]
		inst := ""
		if p.node.typeProperty != "" {
			inst = instanceText(val[p.node.typeProperty])
		}
		mark := w.push(p.name)
		w.prop(nil, p.node, inst)
		w.path = w.path[:mark]
	}
}

// remapAliases does what check_object does before checking: a key whose
// schema is an alias moves to its target, unless the target is set too.
// The answer itself is never changed.
func (w *walker) remapAliases(val map[string]any, n *node) map[string]any {
	var out map[string]any
	for k, x := range val {
		sub := n.lookup(k)
		if sub == nil || !sub.alias {
			continue
		}
		if val[sub.aliasTarget] != nil {
			mark := w.push(k)
			w.add(RuleExtra, x, "cannot set both '"+k+"' and its alias target '"+sub.aliasTarget+"'")
			w.path = w.path[:mark]
			continue
		}
		if out == nil {
			out = make(map[string]any, len(val))
			for k2, x2 := range val {
				out[k2] = x2
			}
		}
		out[sub.aliasTarget] = x
		delete(out, k)
	}
	if out == nil {
		return val
	}
	return out
}

// typedOneOf is check_one_of: the object's type property picks the
// variant its other keys are checked against.
func (w *walker) typedOneOf(val map[string]any, n *node) {
	tv := val[n.typeProperty]
	mark := w.push(n.typeProperty)
	if tv == nil {
		if !n.optional {
			w.prop(nil, n.typePropSchema, "")
		}
		w.path = w.path[:mark]
		return
	}
	before := len(w.out)
	w.prop(tv, n.typePropSchema, "")
	w.path = w.path[:mark]
	if len(w.out) > before {
		return
	}
	variant := n.variants[scalarText(tv)]
	if variant == nil {
		w.add(RuleEnum, tv, "the type is not a valid oneOf variant")
		return
	}
	if !w.typeCheck(val, variant) {
		return
	}
	if variant.checkObject {
		w.object(val, variant, n.typeProperty)
	}
}

// instanceText is get_instance_type's value as a Perl truth: absent, "" and
// "0" mean no instance type.
func instanceText(v any) string {
	switch v.(type) {
	case nil, []any, map[string]any:
		return ""
	}
	t := scalarText(v)
	if !perlTrue(t) {
		return ""
	}
	return t
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

var (
	reInteger = mustPerl(`^[+-]?\d+$`)
	reNumber  = mustPerl(`^[+-]?(\d+\.\d+|\d+\.|\.\d+|\d+)([eE][+-]?\d+)?$`)
)

// isInteger is JSONSchema.pm's is_integer: `m/^[+-]?\d+$/`, where Perl's
// \d takes any script's decimal digits and $ a final newline; the ASCII
// fast path is the common case.
func isInteger(s string) bool {
	if s == "" {
		return false
	}
	i := 0
	if s[0] == '+' || s[0] == '-' {
		i = 1
	}
	if i == len(s) {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return reInteger.MatchString(s)
		}
	}
	return true
}

// isNumber is JSONSchema.pm's is_number (perlretut's number).
func isNumber(s string) bool {
	if isInteger(s) {
		return true
	}
	return reNumber.MatchString(s)
}

// scalarText is the string a Perl scalar decoded by JSON::XS (PVE's JSON
// backend) has: a JSON string as is, an integer literal as written, any
// other number as Perl prints a double (%.15g: 1.0 is "1", 1e3 is "1000"),
// true and false as 1 and 0.
func scalarText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		// JSON::XS keeps an integer literal's text whatever its size
		// (beyond 64 bits as a string), reads -0 as 0, and turns any
		// other number into a double (1e400 is Inf).
		s := string(x)
		if isInteger(s) {
			if s == "-0" {
				return "0"
			}
			return s
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return s
		}
		return perlFloat(f)
	case float64:
		return perlFloat(x)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case bool:
		if x {
			return "1"
		}
		return "0"
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// perlNumify is the numeric value Perl gives a string that is_number
// accepted: its final newline ignored, and 0 for other scripts' digits
// (which \d accepts but Perl's numification does not read).
func perlNumify(s string) float64 {
	f, err := strconv.ParseFloat(strings.TrimSuffix(s, "\n"), 64)
	if err != nil {
		return 0
	}
	return f
}

// perlFloat prints a double as Perl does (%.15g).
func perlFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	case math.IsNaN(f):
		return "NaN"
	}
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'g', 15, 64)
}

const maxExample = 96

// secretKeys are key fragments under which an answer may carry a
// credential (SDN IPAM and DNS plugins have `token`, `key`); their values
// never reach a report.
var secretKeys = []string{"token", "secret", "password", "passwd", "key", "ticket", "csrf", "auth"}

// redactedValue marks an example that must not be shown.
type redactedValue struct{}

var redacted any = redactedValue{}

// secretName reports whether a key name may hold a credential.
func secretName(name string) bool {
	name = strings.ToLower(name)
	for _, s := range secretKeys {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// example renders v for a report: JSON text, cut short, redacted under a
// key that may hold a secret.
func example(path string, v any) string {
	if v == nil {
		return ""
	}
	if _, ok := v.(redactedValue); ok {
		return "(redacted)"
	}
	last := path
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		last = path[i+1:]
	}
	if secretName(last) {
		return "(redacted)"
	}
	var s string
	switch x := v.(type) {
	case []any:
		s = "[…" + strconv.Itoa(len(x)) + " elements]"
	case map[string]any:
		s = "{…" + strconv.Itoa(len(x)) + " keys}"
	case json.Number:
		s = string(x)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			s = scalarText(v)
		} else {
			s = string(b)
		}
	}
	if len(s) > maxExample {
		cut := maxExample
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
