package dataplane

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"

	mutationv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"golang.org/x/net/http/httpguts"
)

// mutationChecker is Envoy's MutationRules::Checker
// (source/extensions/filters/common/mutation_rules/mutation_rules.cc): it
// decides which headers the ext_proc service may set or remove. envoy.yaml
// uses disallow_all plus an allow_expression, i.e. an allow-list of
// x-pve-backend and the three x-envoy timeout/retry headers.
type mutationChecker struct {
	allow, disallow *regexp.Regexp
	disallowAll     bool
	allowRouting    bool
	allowEnvoy      bool
	disallowSystem  bool
	isError         bool
}

type checkResult int

const (
	checkOK checkResult = iota
	checkIgnore
	checkFail
)

func newMutationChecker(r *mutationv3.HeaderMutationRules) (*mutationChecker, error) {
	c := &mutationChecker{
		disallowAll:    r.GetDisallowAll().GetValue(),
		allowRouting:   r.GetAllowAllRouting().GetValue(),
		allowEnvoy:     r.GetAllowEnvoy().GetValue(),
		disallowSystem: r.GetDisallowSystem().GetValue(),
		isError:        r.GetDisallowIsError().GetValue(),
	}
	var err error
	if e := r.GetAllowExpression(); e != nil {
		if c.allow, err = regexp.Compile("^(?:" + e.GetRegex() + ")$"); err != nil {
			return nil, fmt.Errorf("ext_proc mutation_rules.allow_expression: %w", err)
		}
	}
	if e := r.GetDisallowExpression(); e != nil {
		if c.disallow, err = regexp.Compile("^(?:" + e.GetRegex() + ")$"); err != nil {
			return nil, fmt.Errorf("ext_proc mutation_rules.disallow_expression: %w", err)
		}
	}
	return c, nil
}

func (c *mutationChecker) allowed(name string) bool {
	switch {
	case c.disallow != nil && c.disallow.MatchString(name):
		return false
	case c.allow != nil && c.allow.MatchString(name):
		return true
	case c.disallowAll:
		return false
	case !c.allowRouting && (name == "host" || name == ":authority" || name == ":method" || name == ":scheme"):
		return false
	case c.disallowSystem && strings.HasPrefix(name, ":"):
		return false
	case !c.allowEnvoy && strings.HasPrefix(name, "x-envoy"):
		return false
	}
	return true
}

func (c *mutationChecker) check(name string) checkResult {
	if c.allowed(name) {
		return checkOK
	}
	if c.isError {
		return checkFail
	}
	return checkIgnore
}

// headerSet is a request or response header map as Envoy's filters see it:
// lower-case names, pseudo-headers beside the ordinary ones.
type headerSet struct {
	h      http.Header
	pseudo map[string]string // ":method", ":path", ":authority", ":scheme", ":status"
}

func (s *headerSet) get(name string) (string, bool) {
	if strings.HasPrefix(name, ":") {
		v, ok := s.pseudo[name]
		return v, ok
	}
	vs := s.h.Values(name)
	if len(vs) == 0 {
		return "", false
	}
	return vs[0], true
}

// proto returns the headers in ext_proc's HeaderMap form: lower-case keys,
// pseudo-headers first, values in raw_value (Envoy ≥ 1.27). It runs twice
// per request, so the HeaderValues and their raw values are carved out of
// one allocation each instead of two per header; the map is only read
// (marshalled) and dropped, so sharing the backing arrays is safe.
func (s *headerSet) proto() *corev3.HeaderMap {
	n, size := 0, 0
	var keyBuf [protoInline]string // the keys stay on the stack
	keys := keyBuf[:0]
	for k, vs := range s.h {
		keys = append(keys, k)
		n += len(vs)
		for _, v := range vs {
			size += len(v)
		}
	}
	for _, k := range pseudoOrder {
		if v, ok := s.pseudo[k]; ok {
			n++
			size += len(v)
		}
	}
	slices.Sort(keys)
	var (
		vals []corev3.HeaderValue
		hm   *corev3.HeaderMap
	)
	if n <= protoInline {
		// The usual case: map, pointers and values in one allocation.
		hp := new(headerProto)
		vals, hm = hp.vals[:n], &hp.hm
		hm.Headers = hp.ptrs[:0:n]
	} else {
		vals = make([]corev3.HeaderValue, n)
		hm = &corev3.HeaderMap{Headers: make([]*corev3.HeaderValue, 0, n)}
	}
	raw := make([]byte, 0, size)
	add := func(k, v string) {
		start := len(raw)
		raw = append(raw, v...)
		hv := &vals[len(hm.Headers)]
		hv.Key, hv.RawValue = k, raw[start:len(raw):len(raw)]
		hm.Headers = append(hm.Headers, hv)
	}
	for _, k := range pseudoOrder {
		if v, ok := s.pseudo[k]; ok {
			add(k, v)
		}
	}
	for _, k := range keys {
		lk := lowerName(k)
		for _, v := range s.h[k] {
			add(lk, v)
		}
	}
	return hm
}

// protoInline is how many headers proto carves out of one headerProto;
// a PVE API request or response has about fifteen.
const protoInline = 32

// headerProto holds a HeaderMap of up to protoInline headers.
type headerProto struct {
	hm   corev3.HeaderMap
	ptrs [protoInline]*corev3.HeaderValue
	vals [protoInline]corev3.HeaderValue
}

// pseudoOrder is the order in which proto sends the pseudo-headers.
var pseudoOrder = []string{":method", ":scheme", ":authority", ":path", ":status"}

// lowerNames maps the canonical form of the headers seen on nearly every
// request and response to their lower-case form, so that the ext_proc
// messages and the route match do not allocate a lower-case copy of each
// name every time. It is fixed at start-up (never grown from traffic).
var lowerNames = func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{
		"accept", "accept-encoding", "accept-language", "authorization", "cache-control",
		"connection", "content-encoding", "content-length", "content-type", "cookie",
		"csrfpreventiontoken", "date", "etag", "expires", "host", "last-modified", "origin",
		"pragma", "referer", "server", "set-cookie", "user-agent", "vary",
		"x-envoy-attempt-count", "x-envoy-expected-rq-timeout-ms", "x-envoy-external-address",
		"x-envoy-max-retries", "x-envoy-upstream-rq-per-try-timeout-ms", "x-envoy-upstream-rq-timeout-ms",
		"x-envoy-upstream-service-time", "x-forwarded-for", "x-forwarded-proto",
		"x-pve-backend", "x-pve-served-by", "x-request-id",
	} {
		m[http.CanonicalHeaderKey(n)] = n
	}
	return m
}()

// lowerName is strings.ToLower(k) for an http.Header key.
func lowerName(k string) string {
	if l, ok := lowerNames[k]; ok {
		return l
	}
	return strings.ToLower(k)
}

// lowerMap returns the first value of every header, pseudo-headers
// included, keyed by lower-case name: what envoy.RouteTable.Match reads.
func (s *headerSet) lowerMap() map[string]string {
	m := make(map[string]string, len(s.h)+len(s.pseudo))
	for k, vs := range s.h {
		if len(vs) > 0 {
			m[lowerName(k)] = vs[0]
		}
	}
	for k, v := range s.pseudo {
		m[k] = v
	}
	return m
}

// errInvalidMutation is a mutation Envoy rejects with a local reply
// whatever failure_mode_allow says (mutation_utils.cc): bad characters,
// value and raw_value both set, a disallowed header with disallow_is_error.
var errInvalidMutation = errors.New("invalid header mutation")

// applyMutation applies an ext_proc HeaderMutation as Envoy's
// MutationUtils::applyHeaderMutations does. Rejected (not allowed) mutations
// are skipped and counted in rejected; it returns errInvalidMutation for a
// mutation that makes Envoy fail the request.
func applyMutation(m *extprocv3.HeaderMutation, s *headerSet, c *mutationChecker, rejected func()) error {
	if m == nil {
		return nil
	}
	for _, name := range m.GetRemoveHeaders() {
		if !httpguts.ValidHeaderFieldName(strings.TrimPrefix(name, ":")) {
			rejected()
			return fmt.Errorf("%w: bad character in remove_headers", errInvalidMutation)
		}
		name = strings.ToLower(name)
		// Pseudo-headers and host can never be removed.
		if strings.HasPrefix(name, ":") || name == "host" {
			rejected()
			continue
		}
		switch c.check(name) {
		case checkOK:
			s.h.Del(name)
		case checkIgnore:
			rejected()
		case checkFail:
			rejected()
			return fmt.Errorf("%w: may not remove %s", errInvalidMutation, name)
		}
	}
	for _, opt := range m.GetSetHeaders() {
		hv := opt.GetHeader()
		if hv == nil {
			continue
		}
		if hv.GetValue() != "" && len(hv.GetRawValue()) != 0 {
			rejected()
			return fmt.Errorf("%w: only one of value or raw_value may be set", errInvalidMutation)
		}
		// Envoy reads raw_value only: a server that sets just `value` sets
		// the header to "" (envoy-facts §1.3).
		val := string(hv.GetRawValue())
		name := strings.ToLower(hv.GetKey())
		if !httpguts.ValidHeaderFieldName(strings.TrimPrefix(name, ":")) || !httpguts.ValidHeaderFieldValue(val) {
			rejected()
			return fmt.Errorf("%w: bad character in set_headers", errInvalidMutation)
		}
		switch c.check(name) {
		case checkIgnore:
			rejected()
			continue
		case checkFail:
			rejected()
			return fmt.Errorf("%w: may not set %s", errInvalidMutation, name)
		}
		// append_action is ignored by ext_proc; only the deprecated
		// `append` counts, default false (overwrite).
		//lint:ignore SA1019 ext_proc reads only the deprecated append field (envoy-facts §1.3).
		appendMode := opt.GetAppend().GetValue()
		if strings.HasPrefix(name, ":") {
			if _, ok := s.pseudo[name]; !ok && name != ":path" && name != ":authority" && name != ":method" {
				rejected()
				continue
			}
			s.pseudo[name] = val
			continue
		}
		key := canonicalName(name)
		if appendMode {
			s.h[key] = append(s.h[key], val)
		} else {
			s.h[key] = []string{val}
		}
	}
	return nil
}

// canonicalNames maps lowerNames back: the http.Header key of a lower-case
// name the decision service sets on every request.
var canonicalNames = func() map[string]string {
	m := make(map[string]string, len(lowerNames))
	for k, l := range lowerNames {
		m[l] = k
	}
	return m
}()

// canonicalName is http.CanonicalHeaderKey(name) for a lower-case name,
// without allocating for the names in lowerNames.
func canonicalName(name string) string {
	if k, ok := canonicalNames[name]; ok {
		return k
	}
	return http.CanonicalHeaderKey(name)
}
