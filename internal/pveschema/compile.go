package pveschema

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// kind is a schema `type` resolved at compile time.
type kind uint8

const (
	kindAny     kind = iota // "any": everything passes
	kindNull                // "null": only an absent value passes
	kindString              // any scalar, number included
	kindBoolean             // 0, 1 (number or string) or a JSON boolean
	kindInteger             // scalar text ^[+-]?\d+$
	kindNumber              // scalar text of perlretut's number
	kindArray
	kindObject
	kindCoderef // "coderef": nothing in JSON passes
	kindUnknown // any other name: scalars pass, references do not
)

func kindOf(name string) kind {
	switch name {
	case "any":
		return kindAny
	case "null":
		return kindNull
	case "string":
		return kindString
	case "boolean":
		return kindBoolean
	case "integer":
		return kindInteger
	case "number":
		return kindNumber
	case "array":
		return kindArray
	case "object":
		return kindObject
	case "coderef":
		return kindCoderef
	}
	return kindUnknown
}

// extraMode is what an object schema says about keys it does not define.
type extraMode uint8

const (
	extraAllowed   extraMode = iota // additionalProperties unset or true
	extraForbidden                  // additionalProperties explicitly false (0)
	extraSchema                     // additionalProperties is a schema
)

// node is one compiled schema: every lookup, regular expression and
// format PVE's check_prop would resolve on each call is resolved here once.
type node struct {
	types     []kind // empty: no type check
	typeNames string // for messages: "integer" or "string|null"
	nullType  bool   // type is exactly "null"
	optional  bool
	group     bool
	alias     bool

	format     formatFunc
	formatName string
	pattern    *regexp.Regexp
	minLen     int // -1: none
	maxLen     int // -1: none
	hasMin     bool
	hasMax     bool
	min, max   float64
	enum       []string
	enumText   string // "a, b, c" for messages

	items *node

	checkObject bool // properties or a true additionalProperties
	props       []prop
	propIndex   map[string]int
	hasAlias    bool
	extra       extraMode
	extraNode   *node

	requires     string
	requiresNode *node

	typeProperty     string
	instanceTypes    []string
	hasInstanceTypes bool
	oneOf            []*node // alternatives: property-level (type-property) or typed variants
	typedOneOf       bool    // oneOf with type-property-schema (check_one_of)
	typePropSchema   *node
	variants         map[string]*node // by instance-type
	objectOnly       bool             // allOf or a typed oneOf: scalars are an error
	aliasTarget      string
	keyAlias         string

	// propFormat is a format given as a schema: the value is a property
	// string whose keys this object schema describes.
	propFormat *node
	defaultKey string // propFormat's key for a part without "key="
	secretKeys bool   // a property-string format with a key that may hold a credential
}

type prop struct {
	name string
	node *node
	// absentOK: check_prop on an absent value can report nothing (the
	// property is optional, a group member, an alias or of type null, and
	// no oneOf makes its optionality depend on the instance type).
	absentOK bool
}

func (n *node) lookup(k string) *node {
	if i, ok := n.propIndex[k]; ok {
		return n.props[i].node
	}
	return nil
}

// compiler collects what it cannot check, so that the operator is told
// once, at load, instead of on every answer.
type compiler struct {
	unchecked map[string]struct{}
	patterns  map[string]*regexp.Regexp
	// method collects what the method being compiled cannot check.
	method map[string]struct{}
}

func (c *compiler) skip(what string) {
	c.unchecked[what] = struct{}{}
	if c.method != nil {
		c.method[what] = struct{}{}
	}
}

// perlTruthy is Perl's truth of a decoded JSON scalar.
func perlTruthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case float64:
		return x != 0
	case json.Number:
		f, err := x.Float64()
		return err != nil || f != 0
	case string:
		return x != "" && x != "0"
	}
	return true // references are true
}

func numberOf(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case string:
		if isNumber(x) {
			f, err := strconv.ParseFloat(x, 64)
			return f, err == nil
		}
	}
	return 0, false
}

func (c *compiler) node(s map[string]any) *node {
	n := &node{minLen: -1, maxLen: -1}
	switch t := s["type"].(type) {
	case string:
		if !perlTrue(t) { // check_type: `return 1 if !$type`
			break
		}
		n.types = []kind{kindOf(t)}
		n.typeNames = t
		n.nullType = t == "null"
	case []any:
		var names []string
		for _, e := range t {
			if name, ok := e.(string); ok {
				n.types = append(n.types, kindOf(name))
				names = append(names, name)
			} else {
				// A schema as a member of a type union: rare, and not in
				// PVE 9.1's returns; accept rather than guess.
				n.types = append(n.types, kindAny)
				names = append(names, "schema")
				c.skip("type union with a schema member")
			}
		}
		n.typeNames = strings.Join(names, "|")
	case map[string]any:
		c.skip("type given as a schema")
	}
	n.optional = perlTruthy(s["optional"])
	n.group = perlTruthy(s["group"])
	if a, ok := s["alias"].(string); ok && a != "" {
		n.alias = true
		n.aliasTarget = a
	}
	if ka, ok := s["keyAlias"].(string); ok {
		n.keyAlias = ka
	}
	switch f := s["format"].(type) {
	case string:
		n.formatName = f
		if fn, ok := resolveFormat(f); ok {
			n.format = fn
		} else {
			c.skip("format " + f)
		}
	case map[string]any:
		// A property string ("name=eth0,ip=10.0.0.1/24"), checked as
		// parse_property_string does: against an object schema whose
		// properties are the format's keys, extra keys refused.
		n.propFormat = c.propertyString(f)
	}
	if p, ok := s["pattern"].(string); ok && perlTrue(p) { // `if (my $pattern = ...)`
		re, ok := c.patterns[p]
		if !ok {
			var err error
			re, err = compilePerlAnchored(p)
			if err != nil {
				c.skip(fmt.Sprintf("pattern %q (%v)", p, err))
				re = nil
			}
			c.patterns[p] = re
		}
		n.pattern = re
	}
	if v, ok := numberOf(s["maxLength"]); ok {
		n.maxLen = int(v)
	}
	if v, ok := numberOf(s["minLength"]); ok {
		n.minLen = int(v)
	}
	if v, ok := numberOf(s["minimum"]); ok {
		n.min, n.hasMin = v, true
	}
	if v, ok := numberOf(s["maximum"]); ok {
		n.max, n.hasMax = v, true
	}
	if e, ok := s["enum"].([]any); ok {
		// An empty enum is still a (true) array reference in Perl: no
		// value passes it.
		n.enum = make([]string, 0, len(e))
		for _, v := range e {
			n.enum = append(n.enum, scalarText(v))
		}
		n.enumText = strings.Join(n.enum, ", ")
	}
	switch it := s["items"].(type) {
	case map[string]any:
		n.items = c.node(it)
	case []any:
		c.skip("items given as a list of schemas")
	}
	props, hasProps := s["properties"].(map[string]any)
	ap, apSet := s["additionalProperties"]
	n.checkObject = hasProps || perlTruthy(ap)
	if n.checkObject {
		names := make([]string, 0, len(props))
		for k := range props {
			names = append(names, k)
		}
		sort.Strings(names)
		n.propIndex = make(map[string]int, len(names))
		for _, k := range names {
			ps, ok := props[k].(map[string]any)
			if !ok {
				c.skip("property " + k + " without a schema")
				continue
			}
			pn := c.node(ps)
			if pn.alias {
				n.hasAlias = true
			}
			n.propIndex[k] = len(n.props)
			absentOK := (pn.optional || pn.group || pn.alias || pn.nullType) && len(pn.oneOf) == 0
			n.props = append(n.props, prop{name: k, node: pn, absentOK: absentOK})
		}
		switch a := ap.(type) {
		case map[string]any:
			n.extra = extraSchema
			n.extraNode = c.node(a)
		default:
			if apSet && a != nil && !perlTruthy(a) {
				n.extra = extraForbidden
			}
		}
	}
	switch r := s["requires"].(type) {
	case string:
		n.requires = r
	case map[string]any:
		n.requiresNode = c.node(r)
	}
	if tp, ok := s["type-property"].(string); ok {
		n.typeProperty = tp
	}
	if its, ok := s["instance-types"].([]any); ok {
		n.hasInstanceTypes = true
		for _, it := range its {
			n.instanceTypes = append(n.instanceTypes, scalarText(it))
		}
	}
	if alts, ok := s["oneOf"].([]any); ok {
		tps, typed := s["type-property-schema"].(map[string]any)
		for _, a := range alts {
			as, ok := a.(map[string]any)
			if !ok {
				continue
			}
			an := c.node(as)
			if typed {
				if n.variants == nil {
					n.variants = map[string]*node{}
				}
				if name, ok := as["instance-type"].(string); ok {
					n.variants[name] = an
				}
			}
			n.oneOf = append(n.oneOf, an)
		}
		if typed {
			n.typedOneOf = true
			n.objectOnly = true
			n.typePropSchema = c.node(tps)
			if n.typeProperty == "" {
				c.skip("typed oneOf without type-property")
			}
		}
	}
	if _, ok := s["allOf"]; ok {
		n.objectOnly = true
		c.skip("allOf")
	}
	return n
}

// propertyString compiles a hash format into an object schema that
// refuses extra keys (parse_property_string's default).
func (c *compiler) propertyString(f map[string]any) *node {
	n := c.node(map[string]any{"properties": f, "additionalProperties": float64(0)})
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
		if secretName(k) {
			n.secretKeys = true
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if ks, ok := f[k].(map[string]any); ok && perlTruthy(ks["default_key"]) {
			n.defaultKey = k
			break
		}
	}
	return n
}

// collectNames adds the property names under n to names.
func (n *node) collectNames(names map[string]string, depth int) {
	if n == nil || depth > 32 {
		return
	}
	for _, p := range n.props {
		names[p.name] = p.name
		p.node.collectNames(names, depth+1)
	}
	n.items.collectNames(names, depth+1)
	n.extraNode.collectNames(names, depth+1)
	for _, a := range n.oneOf {
		a.collectNames(names, depth+1)
	}
}

// Checker is a compiled schema: every method's return schema with its
// regular expressions and formats resolved, looked up by the router's
// template form ("/nodes/{node}/network/{iface}") and method. It is
// immutable and safe for concurrent use by the compare workers.
type Checker struct {
	methods         map[string]*node
	unchecked       []string
	uncheckedMethod map[string][]string
	source          Source
	// names are every property name of the schema (and the envelope's),
	// for the decoder to intern.
	names map[string]string
}

// Compile builds a Checker from a parsed schema. It is meant to run once
// per config load; Check never compiles anything. The error is nil unless
// the schema holds no method at all: parts that cannot be checked
// (unknown formats, patterns RE2 cannot express) are listed by Unchecked
// and skipped, because a check must never invent a violation.
func Compile(s *Schema) (*Checker, error) {
	if s == nil || len(s.returns) == 0 {
		return nil, fmt.Errorf("empty schema")
	}
	c := &compiler{unchecked: map[string]struct{}{}, patterns: map[string]*regexp.Regexp{}}
	ch := &Checker{methods: make(map[string]*node, len(s.returns)), uncheckedMethod: map[string][]string{}}
	for key, ret := range s.returns {
		c.method = map[string]struct{}{}
		ch.methods[key] = c.node(ret)
		for u := range c.method {
			ch.uncheckedMethod[key] = append(ch.uncheckedMethod[key], u)
		}
		sort.Strings(ch.uncheckedMethod[key])
	}
	ch.names = map[string]string{"data": "data", "success": "success", "total": "total", "changes": "changes", "message": "message", "status": "status", "errors": "errors"}
	for _, n := range ch.methods {
		n.collectNames(ch.names, 0)
	}
	for u := range c.unchecked {
		ch.unchecked = append(ch.unchecked, u)
	}
	sort.Strings(ch.unchecked)
	return ch, nil
}

// Unchecked lists, once per compile and sorted, the schema parts this
// checker skips: formats it does not know, property-string formats, and
// patterns Go's regexp cannot express. They are never violations; status
// and the log show them so that nobody mistakes "no violation" for "checked".
func (c *Checker) Unchecked() []string { return append([]string(nil), c.unchecked...) }

// UncheckedIn is Unchecked for one method: what its answers' check skips
// (for status, next to the templates compare covers).
func (c *Checker) UncheckedIn(template, method string) []string {
	return append([]string(nil), c.uncheckedMethod[methodKey(template, method)]...)
}

// Has reports whether the schema describes the answer of method on
// template. The router's catalogue has SDN endpoints (prefix lists, route
// maps) newer than PVE 9.1's schema; their answers cannot be checked.
func (c *Checker) Has(template, method string) bool {
	_, ok := c.methods[methodKey(template, method)]
	return ok
}

// Methods is the number of method+template pairs the checker knows.
func (c *Checker) Methods() int { return len(c.methods) }

// Source says which schema this checker was compiled from.
func (c *Checker) Source() Source { return c.source }

// methodKey is the lookup key of a method. A template may carry the
// /api2/json or /api2/extjs prefix of a config key; the schema's paths do
// not.
func methodKey(template, method string) string {
	if strings.HasPrefix(template, "/api2/") {
		for _, p := range [...]string{"/api2/json/", "/api2/extjs/"} {
			if strings.HasPrefix(template, p) {
				template = template[len(p)-1:]
				break
			}
		}
	}
	return strings.ToUpper(method) + " " + template
}
