package envoy

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	aggregatev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/aggregate/v3"
	compositev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/composite/v3"
	ext_procv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Envoy's documented defaults for fields the configuration leaves unset
// (route_components.proto).
const (
	defaultRouteTimeout   = 15 * time.Second
	defaultNumRetries     = 1
	defaultMessageTimeout = 200 * time.Millisecond // ext_proc.proto message_timeout
)

// RoutePlan is what Envoy does with a request once a route has matched: which
// cluster it goes to and how failures are retried. The embedded data plane
// executes a RoutePlan so that it falls back from rust to perl under exactly
// the conditions Envoy would.
type RoutePlan struct {
	// Name is the route's name (rust_read, rust_write, perl_default), as in
	// Envoy's %ROUTE_NAME% and the access log.
	Name string
	// Cluster is the route's target cluster, e.g. rust_then_perl or perl.
	Cluster string
	// RetryOn holds the retry_on conditions ("5xx", "reset",
	// "connect-failure", ...), in configuration order; nil means the route
	// never retries.
	RetryOn []string
	// RetriableStatusCodes are the upstream status codes retried under
	// "retriable-status-codes" (501: rust does not implement the endpoint).
	RetriableStatusCodes []uint32
	// RetriableHeaders are the response header names retried under
	// "retriable-headers" when present (x-pve-fallback: a rust daemon marks
	// a failed web UI answer). Only name-only (presence) matchers are
	// supported; NewRouteTable refuses others.
	RetriableHeaders []string
	// NumRetries is how many retries Envoy may make (Envoy's default 1 when
	// a retry policy omits it; 0 without a retry policy). The router may
	// lower it per request with x-envoy-max-retries.
	NumRetries uint32
	// PerTryTimeout bounds each attempt until response headers arrive; 0
	// means no per-try limit. Overridden per request by
	// x-envoy-upstream-rq-per-try-timeout-ms.
	PerTryTimeout time.Duration
	// Timeout bounds the whole request across all attempts; 0 means none
	// (uploads on the perl route). Envoy's default is 15 s when unset.
	// Overridden per request by x-envoy-upstream-rq-timeout-ms.
	Timeout time.Duration
	// Upstreams are the clusters tried in order: attempt N goes to
	// Upstreams[N-1] (composite), or the priority order (aggregate). For a
	// plain cluster it is just that cluster, so callers can always iterate.
	Upstreams []string
}

// RouteTable is the route configuration of the bootstrap's HTTP connection
// manager, compiled for matching without Envoy. It exists so that the
// embedded data plane picks the same route as Envoy for the same request.
// It implements only the match features the configurations use (path
// prefix/exact/regex, header exact/prefix/suffix/contains/regex/present with
// ignore_case and invert_match); NewRouteTable refuses a configuration whose
// matching needs anything else, so Match never silently disagrees with Envoy.
type RouteTable struct {
	routes []compiledRoute
}

type compiledRoute struct {
	match *routev3.RouteMatch
	re    *regexp.Regexp            // match.safe_regex, if set
	hre   map[string]*regexp.Regexp // header safe_regex matchers, by regex
	plan  RoutePlan
}

// NewRouteTable compiles the route table of b's single HTTP connection
// manager. It fails if b has no (or more than one) HTTP connection manager,
// routes through RDS, has more than one virtual host or one that is not
// "*", or uses route-matching features RouteTable does not implement.
func NewRouteTable(b *bootstrapv3.Bootstrap) (*RouteTable, error) {
	hcm, at, err := httpConnectionManager(b)
	if err != nil {
		return nil, err
	}
	rc := hcm.GetRouteConfig()
	if rc == nil {
		return nil, fmt.Errorf("%s: no inline route_config (RDS is not supported)", at)
	}
	vhs := rc.GetVirtualHosts()
	if len(vhs) != 1 {
		return nil, fmt.Errorf("%s.route_config: %d virtual hosts, RouteTable supports exactly one", at, len(vhs))
	}
	vh := vhs[0]
	if len(vh.GetDomains()) != 1 || vh.GetDomains()[0] != "*" {
		return nil, fmt.Errorf("%s.route_config.virtual_hosts[0]: domains %q, RouteTable supports only [\"*\"]", at, vh.GetDomains())
	}
	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = c
	}
	t := &RouteTable{}
	for i, r := range vh.GetRoutes() {
		rp := fmt.Sprintf("%s.route_config.virtual_hosts[0].routes[%d]", at, i)
		cr, err := compileRoute(rp, r, vh.GetRetryPolicy(), clusters)
		if err != nil {
			return nil, err
		}
		t.routes = append(t.routes, cr)
	}
	return t, nil
}

// httpConnectionManager returns the one HCM of b and its path.
func httpConnectionManager(b *bootstrapv3.Bootstrap) (*hcmv3.HttpConnectionManager, string, error) {
	var found []*hcmv3.HttpConnectionManager
	var paths []string
	for li, l := range b.GetStaticResources().GetListeners() {
		for ci, fc := range l.GetFilterChains() {
			for fi, f := range fc.GetFilters() {
				p := fmt.Sprintf("static_resources.listeners[%d].filter_chains[%d].filters[%d].typed_config", li, ci, fi)
				if f.GetTypedConfig() == nil {
					continue
				}
				hcm, err := unpack[*hcmv3.HttpConnectionManager](p, f.GetTypedConfig())
				if err != nil {
					continue // another network filter
				}
				found = append(found, hcm)
				paths = append(paths, p)
			}
		}
	}
	if len(found) != 1 {
		return nil, "", fmt.Errorf("envoy config: %d HTTP connection managers, expected exactly one", len(found))
	}
	return found[0], paths[0], nil
}

// allowedFields fails if msg sets a field outside allowed: the route-table
// evaluator would otherwise ignore a match condition Envoy applies.
func allowedFields(path string, msg proto.Message, allowed ...string) error {
	var bad []string
	msg.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		name := string(fd.Name())
		ok := false
		for _, a := range allowed {
			if a == name {
				ok = true
			}
		}
		if !ok {
			bad = append(bad, name)
		}
		return true
	})
	if len(bad) > 0 {
		return fmt.Errorf("%s: uses %s, which RouteTable does not implement", path, strings.Join(bad, ", "))
	}
	return nil
}

func compileRoute(path string, r *routev3.Route, vhRetry *routev3.RetryPolicy, clusters map[string]*clusterv3.Cluster) (compiledRoute, error) {
	m := r.GetMatch()
	cr := compiledRoute{match: m, hre: map[string]*regexp.Regexp{}}
	if err := allowedFields(path+".match", m, "prefix", "path", "safe_regex", "headers", "case_sensitive"); err != nil {
		return cr, err
	}
	if re := m.GetSafeRegex(); re != nil {
		c, err := regexp.Compile(anchor(re.GetRegex()))
		if err != nil {
			return cr, fmt.Errorf("%s.match.safe_regex: %w", path, err)
		}
		cr.re = c
	}
	for hi, h := range m.GetHeaders() {
		hp := fmt.Sprintf("%s.match.headers[%d]", path, hi)
		if err := allowedFields(hp, h, "name", "string_match", "present_match", "invert_match", "treat_missing_header_as_empty"); err != nil {
			return cr, err
		}
		if sm := h.GetStringMatch(); sm != nil {
			if err := allowedFields(hp+".string_match", sm, "exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case"); err != nil {
				return cr, err
			}
			if re := sm.GetSafeRegex(); re != nil {
				expr := anchor(re.GetRegex())
				if sm.GetIgnoreCase() {
					expr = "(?i)" + expr
				}
				c, err := regexp.Compile(expr)
				if err != nil {
					return cr, fmt.Errorf("%s.string_match.safe_regex: %w", hp, err)
				}
				cr.hre[re.GetRegex()] = c
			}
		}
	}
	ra := r.GetRoute()
	if ra == nil || ra.GetCluster() == "" {
		return cr, fmt.Errorf("%s: route %q has no `route.cluster` action; RouteTable supports only single-cluster routes", path, r.GetName())
	}
	plan := RoutePlan{Name: r.GetName(), Cluster: ra.GetCluster(), Timeout: defaultRouteTimeout}
	if ra.GetTimeout() != nil {
		plan.Timeout = ra.GetTimeout().AsDuration()
	}
	rp := ra.GetRetryPolicy()
	if rp == nil {
		rp = vhRetry
	}
	if rp != nil {
		for tok := range strings.SplitSeq(rp.GetRetryOn(), ",") {
			if tok = strings.TrimSpace(tok); tok != "" {
				plan.RetryOn = append(plan.RetryOn, tok)
			}
		}
		plan.RetriableStatusCodes = append([]uint32(nil), rp.GetRetriableStatusCodes()...)
		for hi, h := range rp.GetRetriableHeaders() {
			hp := fmt.Sprintf("%s.route.retry_policy.retriable_headers[%d]", path, hi)
			if err := allowedFields(hp, h, "name"); err != nil {
				return cr, err
			}
			plan.RetriableHeaders = append(plan.RetriableHeaders, strings.ToLower(h.GetName()))
		}
		plan.NumRetries = defaultNumRetries
		if rp.GetNumRetries() != nil {
			plan.NumRetries = rp.GetNumRetries().GetValue()
		}
		if rp.GetPerTryTimeout() != nil {
			plan.PerTryTimeout = rp.GetPerTryTimeout().AsDuration()
		}
	}
	up, err := upstreams(plan.Cluster, clusters)
	if err != nil {
		return cr, fmt.Errorf("%s: %w", path, err)
	}
	plan.Upstreams = up
	cr.plan = plan
	return cr, nil
}

// upstreams lists the clusters behind name: the sub-clusters of a composite
// or aggregate cluster, in order, or name itself.
func upstreams(name string, clusters map[string]*clusterv3.Cluster) ([]string, error) {
	c, ok := clusters[name]
	if !ok {
		return nil, fmt.Errorf("cluster %q: %w", name, errNotFound)
	}
	ct := c.GetClusterType()
	if ct == nil {
		return []string{name}, nil
	}
	p := fmt.Sprintf("cluster %q cluster_type.typed_config", name)
	switch ct.GetName() {
	case "envoy.clusters.composite":
		cfg, err := unpack[*compositev3.ClusterConfig](p, ct.GetTypedConfig())
		if err != nil {
			return nil, err
		}
		var out []string
		for _, e := range cfg.GetClusters() {
			out = append(out, e.GetName())
		}
		return out, nil
	case "envoy.clusters.aggregate":
		cfg, err := unpack[*aggregatev3.ClusterConfig](p, ct.GetTypedConfig())
		if err != nil {
			return nil, err
		}
		return append([]string(nil), cfg.GetClusters()...), nil
	default:
		return nil, fmt.Errorf("cluster %q: cluster_type %q is not supported by RouteTable", name, ct.GetName())
	}
}

// anchor makes a Go regexp match the whole string, as Envoy's safe_regex
// (RE2 FullMatch) does.
func anchor(expr string) string { return "^(?:" + expr + ")$" }

// Match returns the plan of the first route that matches the request, and
// false if none does (Envoy would answer 404). method is the request method
// as sent (":method"), path the normalised request path including any query
// string (":path"), and headers the request headers as the router sees them,
// i.e. after the client's x-pve-backend was removed and the ext_proc
// service's x-pve-backend was set. Header names are matched
// case-insensitively; "host" doubles as ":authority".
func (t *RouteTable) Match(method, path string, headers map[string]string) (RoutePlan, bool) {
	for _, r := range t.routes {
		if r.matches(method, path, headers) {
			p := r.plan
			p.RetryOn = append([]string(nil), p.RetryOn...)
			p.RetriableStatusCodes = append([]uint32(nil), p.RetriableStatusCodes...)
			p.RetriableHeaders = append([]string(nil), p.RetriableHeaders...)
			p.Upstreams = append([]string(nil), p.Upstreams...)
			return p, true
		}
	}
	return RoutePlan{}, false
}

func (r *compiledRoute) matches(method, path string, headers map[string]string) bool {
	m := r.match
	cs := m.GetCaseSensitive() == nil || m.GetCaseSensitive().GetValue()
	noQuery, _, _ := strings.Cut(path, "?")
	switch ps := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		// Envoy matches prefixes against the whole :path, query included.
		if !hasPrefix(path, ps.Prefix, cs) {
			return false
		}
	case *routev3.RouteMatch_Path:
		if !(noQuery == ps.Path || (!cs && strings.EqualFold(noQuery, ps.Path))) {
			return false
		}
	case *routev3.RouteMatch_SafeRegex:
		if r.re == nil || !r.re.MatchString(noQuery) {
			return false
		}
	default:
		return false
	}
	for _, h := range m.GetHeaders() {
		if !r.headerMatches(h, method, path, headers) {
			return false
		}
	}
	return true
}

func hasPrefix(s, prefix string, caseSensitive bool) bool {
	if caseSensitive {
		return strings.HasPrefix(s, prefix)
	}
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// lookup finds a request header, pseudo-headers included.
func lookup(name, method, path string, headers map[string]string) (string, bool) {
	switch strings.ToLower(name) {
	case ":method":
		return method, true
	case ":path":
		return path, true
	case ":authority":
		if v, ok := lookupMap("host", headers); ok {
			return v, true
		}
	}
	return lookupMap(name, headers)
}

func lookupMap(name string, headers map[string]string) (string, bool) {
	if v, ok := headers[name]; ok {
		return v, true
	}
	for k, v := range headers {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

// headerMatches follows Envoy's HeaderUtility::HeaderData::matchesHeaders.
func (r *compiledRoute) headerMatches(h *routev3.HeaderMatcher, method, path string, headers map[string]string) bool {
	v, ok := lookup(h.GetName(), method, path, headers)
	_, isPresent := h.GetHeaderMatchSpecifier().(*routev3.HeaderMatcher_PresentMatch)
	if !ok && !h.GetTreatMissingHeaderAsEmpty() {
		if h.GetInvertMatch() {
			return isPresent && h.GetPresentMatch()
		}
		return isPresent && !h.GetPresentMatch()
	}
	var match bool
	if isPresent {
		match = h.GetPresentMatch()
	} else {
		match = r.stringMatches(h.GetStringMatch(), v)
	}
	return match != h.GetInvertMatch()
}

func (r *compiledRoute) stringMatches(sm *matcherv3.StringMatcher, v string) bool {
	if sm == nil {
		return false
	}
	ic := sm.GetIgnoreCase()
	switch p := sm.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return v == p.Exact || (ic && strings.EqualFold(v, p.Exact))
	case *matcherv3.StringMatcher_Prefix:
		return hasPrefix(v, p.Prefix, !ic)
	case *matcherv3.StringMatcher_Suffix:
		return len(v) >= len(p.Suffix) && (v[len(v)-len(p.Suffix):] == p.Suffix || (ic && strings.EqualFold(v[len(v)-len(p.Suffix):], p.Suffix)))
	case *matcherv3.StringMatcher_Contains:
		if ic {
			return strings.Contains(strings.ToLower(v), strings.ToLower(p.Contains))
		}
		return strings.Contains(v, p.Contains)
	case *matcherv3.StringMatcher_SafeRegex:
		re := r.hre[p.SafeRegex.GetRegex()]
		return re != nil && re.MatchString(v)
	}
	return false
}

// ExtProcSettings are the ext_proc filter settings the embedded data plane
// must honour to behave like Envoy when the router is slow or down.
type ExtProcSettings struct {
	// FailureModeAllow: on a stream error or timeout, continue without the
	// router's decision (the request stays on perl) instead of failing it.
	FailureModeAllow bool
	// MessageTimeout is how long Envoy waits for each answer from the
	// router (Envoy's default 200 ms when unset).
	MessageTimeout time.Duration
	// AllowModeOverride: the router may ask for the request body (BUFFERED)
	// in its answer to the request headers, to classify POST/PUT by `type`.
	AllowModeOverride bool
}

// ExtProc returns the settings of the ext_proc filter in b's HTTP connection
// manager, so that the embedded data plane uses the same timeout and failure
// mode as Envoy. It fails if there is no ext_proc filter.
func ExtProc(b *bootstrapv3.Bootstrap) (ExtProcSettings, error) {
	ep, err := extProcFilter(b)
	if err != nil {
		return ExtProcSettings{}, err
	}
	s := ExtProcSettings{
		FailureModeAllow:  ep.GetFailureModeAllow(),
		MessageTimeout:    defaultMessageTimeout,
		AllowModeOverride: ep.GetAllowModeOverride(),
	}
	if ep.GetMessageTimeout() != nil {
		s.MessageTimeout = ep.GetMessageTimeout().AsDuration()
	}
	return s, nil
}

// extProcFilter returns the (first) ext_proc filter of b's HCM.
func extProcFilter(b *bootstrapv3.Bootstrap) (*ext_procv3.ExternalProcessor, error) {
	hcm, at, err := httpConnectionManager(b)
	if err != nil {
		return nil, err
	}
	for i, f := range hcm.GetHttpFilters() {
		p := fmt.Sprintf("%s.http_filters[%d].typed_config", at, i)
		if ep, err := unpack[*ext_procv3.ExternalProcessor](p, f.GetTypedConfig()); err == nil {
			return ep, nil
		}
	}
	return nil, fmt.Errorf("%s.http_filters: no envoy.filters.http.ext_proc filter: %w", at, errNotFound)
}
