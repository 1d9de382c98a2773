package envoy

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	aggregatev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/aggregate/v3"
	compositev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/composite/v3"
	ext_procv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	upstreamcodecv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/upstream_codec/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// retryOnTokens are the retry_on conditions Envoy's router accepts for HTTP
// routes (router_filter.rst, retry_state_impl.cc parseRetryOn and
// parseRetryGrpcOn). Envoy ignores unknown tokens silently, which would turn
// a typo into "never retries"; LoadBootstrap rejects them instead.
var retryOnTokens = []string{
	"5xx", "gateway-error", "reset", "reset-before-request", "connect-failure",
	"envoy-ratelimited", "retriable-4xx", "refused-stream", "retriable-status-codes",
	"retriable-headers", "http3-post-connect-failure",
	"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
}

// clusterRef is a place in the configuration that names a cluster.
type clusterRef struct{ path, what, name string }

// checker collects, during the walk, what Envoy checks at load time and PGV
// does not.
type checker struct {
	clusters map[string]bool
	refs     []clusterRef
	errs     []error
}

func newChecker(b *bootstrapv3.Bootstrap) *checker {
	c := &checker{clusters: map[string]bool{}}
	for i, cl := range b.GetStaticResources().GetClusters() {
		if c.clusters[cl.GetName()] {
			c.errs = append(c.errs, fmt.Errorf("static_resources.clusters[%d]: duplicate cluster name %q", i, cl.GetName()))
		}
		c.clusters[cl.GetName()] = true
	}
	return c
}

func (c *checker) fail(path, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%s: %s", orRoot(path), fmt.Sprintf(format, args...)))
}

func (c *checker) visit(path string, m protoreflect.Message) error {
	switch v := m.Interface().(type) {
	case *routev3.Route:
		what := fmt.Sprintf("route %q", v.GetName())
		if ra := v.GetRoute(); ra != nil {
			if name := ra.GetCluster(); name != "" {
				c.refs = append(c.refs, clusterRef{path + ".route.cluster", what, name})
			}
			for i, wc := range ra.GetWeightedClusters().GetClusters() {
				c.refs = append(c.refs, clusterRef{fmt.Sprintf("%s.route.weighted_clusters.clusters[%d]", path, i), what, wc.GetName()})
			}
		}
		// The deprecated field is looked up by name, not through its
		// deprecated getter.
		rm := v.ProtoReflect()
		if rm.Has(rm.Descriptor().Fields().ByName("per_request_buffer_limit_bytes")) && v.GetRequestBodyBufferLimit() != nil {
			c.fail(path, "%s sets both per_request_buffer_limit_bytes and request_body_buffer_limit; Envoy accepts only one", what)
		}
	case *routev3.RetryPolicy:
		for tok := range strings.SplitSeq(v.GetRetryOn(), ",") {
			tok = strings.TrimSpace(tok)
			if tok != "" && !slices.Contains(retryOnTokens, tok) {
				c.fail(path+".retry_on", "unknown retry_on condition %q (known: %s)", tok, strings.Join(retryOnTokens, ", "))
			}
		}
	case *corev3.GrpcService_EnvoyGrpc:
		c.refs = append(c.refs, clusterRef{path + ".cluster_name", "gRPC service", v.GetClusterName()})
	case *clusterv3.Cluster:
		if ct := v.GetClusterType(); ct != nil {
			switch ct.GetName() {
			case "envoy.clusters.aggregate", "envoy.clusters.composite":
				if v.GetLbPolicy() != clusterv3.Cluster_CLUSTER_PROVIDED {
					c.fail(path+".lb_policy", "cluster %q is %s and needs lb_policy: CLUSTER_PROVIDED, not %s", v.GetName(), ct.GetName(), v.GetLbPolicy())
				}
			}
		}
	case *compositev3.ClusterConfig:
		for i, e := range v.GetClusters() {
			c.refs = append(c.refs, clusterRef{fmt.Sprintf("%s.clusters[%d].name", path, i), "composite cluster", e.GetName()})
		}
	case *aggregatev3.ClusterConfig:
		for i, name := range v.GetClusters() {
			c.refs = append(c.refs, clusterRef{fmt.Sprintf("%s.clusters[%d]", path, i), "aggregate cluster", name})
		}
	case *upstreamhttpv3.HttpProtocolOptions:
		// An upstream filter chain ends in the codec filter, which sends
		// the request; Envoy refuses a chain without it last.
		if fs := v.GetHttpFilters(); len(fs) > 0 {
			last := fs[len(fs)-1]
			if _, ok := UnpackAny[*upstreamcodecv3.UpstreamCodec](last.GetTypedConfig()); !ok {
				c.fail(fmt.Sprintf("%s.http_filters[%d]", path, len(fs)-1), "the last upstream HTTP filter must be envoy.filters.http.upstream_codec, not %q", last.GetName())
			}
		}
	case *matcherv3.RegexMatcher:
		if _, err := regexp.Compile(v.GetRegex()); err != nil {
			c.fail(path+".regex", "regex does not compile: %v", err)
		}
	case *ext_procv3.ExternalProcessor:
		if (v.GetGrpcService() == nil) == (v.GetHttpService() == nil) {
			c.fail(path, "ext_proc needs exactly one of grpc_service and http_service")
		}
		if v.GetDisableClearRouteCache() && v.GetRouteCacheAction() != ext_procv3.ExternalProcessor_DEFAULT {
			c.fail(path, "ext_proc sets both disable_clear_route_cache and route_cache_action; Envoy accepts only one")
		}
	}
	return nil
}

// finish reports every problem found, cluster references last (they can only
// be judged once the whole tree has been walked).
func (c *checker) finish() error {
	defined := make([]string, 0, len(c.clusters))
	for name := range c.clusters {
		defined = append(defined, name)
	}
	slices.Sort(defined)
	for _, r := range c.refs {
		if !c.clusters[r.name] {
			c.fail(r.path, "%s names cluster %q, which is not defined in static_resources.clusters (defined: %s)",
				r.what, r.name, strings.Join(defined, ", "))
		}
	}
	return errors.Join(c.errs...)
}

// UnpackAny unpacks a typed_config into T, reporting only whether it
// worked; the embedded data plane reads its bootstrap with it too, so the
// validator and the data plane agree on what a typed_config holds.
func UnpackAny[T proto.Message](a *anypb.Any) (T, bool) {
	var zero T
	if a == nil {
		return zero, false
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		return zero, false
	}
	t, ok := m.(T)
	return t, ok
}
