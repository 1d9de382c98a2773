package envoy

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	compositev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/composite/v3"
	ext_procv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	earlyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

// The headers the migration router sets through ext_proc (contract.md,
// "Headers", and envoy/README.md). mutation_rules must allow exactly these.
var routerSetHeaders = []string{
	"x-pve-backend",
	"x-envoy-upstream-rq-timeout-ms",
	"x-envoy-upstream-rq-per-try-timeout-ms",
	"x-envoy-max-retries",
}

// Retry conditions that may replay a write rust may already have applied.
var unsafeForWrites = []string{"5xx", "reset", "gateway-error", "retriable-4xx"}

func load(t *testing.T, data []byte) *bootstrapv3.Bootstrap {
	t.Helper()
	b, err := LoadBootstrap(data)
	if err != nil {
		t.Fatalf("LoadBootstrap: %v", err)
	}
	return b
}

func hcmOf(t *testing.T, b *bootstrapv3.Bootstrap) *hcmv3.HttpConnectionManager {
	t.Helper()
	h, _, err := httpConnectionManager(b)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func clusterOf(t *testing.T, b *bootstrapv3.Bootstrap, name string) *clusterv3.Cluster {
	t.Helper()
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == name {
			return c
		}
	}
	t.Fatalf("no cluster %q", name)
	return nil
}

func routeOf(t *testing.T, b *bootstrapv3.Bootstrap, name string) *routev3.Route {
	t.Helper()
	for _, r := range hcmOf(t, b).GetRouteConfig().GetVirtualHosts()[0].GetRoutes() {
		if r.GetName() == name {
			return r
		}
	}
	t.Fatalf("no route %q", name)
	return nil
}

func TestContract(t *testing.T) {
	for _, c := range configs() {
		t.Run(c.name, func(t *testing.T) {
			b := load(t, c.data)
			t.Run("early header mutation strips x-pve-backend", func(t *testing.T) { checkEarlyMutation(t, b) })
			t.Run("HCM edge settings", func(t *testing.T) { checkHCM(t, b) })
			t.Run("ext_proc", func(t *testing.T) { checkExtProc(t, b) })
			t.Run("mutation_rules allow exactly our headers", func(t *testing.T) { checkMutationRules(t, b) })
			t.Run("routes", func(t *testing.T) { checkRoutes(t, b) })
			t.Run("clusters", func(t *testing.T) { checkClusters(t, b) })
			t.Run("tracing", func(t *testing.T) { checkTracing(t, b) })
			t.Run("access log", func(t *testing.T) { checkAccessLog(t, b) })
			t.Run("admin on loopback", func(t *testing.T) {
				sa := b.GetAdmin().GetAddress().GetSocketAddress()
				if sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != 9901 {
					t.Errorf("admin on %s:%d, want 127.0.0.1:9901", sa.GetAddress(), sa.GetPortValue())
				}
			})
		})
	}
}

func checkEarlyMutation(t *testing.T, b *bootstrapv3.Bootstrap) {
	exts := hcmOf(t, b).GetEarlyHeaderMutationExtensions()
	var removed []string
	for i, e := range exts {
		hm, err := unpack[*earlyv3.HeaderMutation]("early_header_mutation_extensions", e.GetTypedConfig())
		if err != nil {
			t.Fatalf("early_header_mutation_extensions[%d]: %v", i, err)
		}
		for _, m := range hm.GetMutations() {
			if r := m.GetRemove(); r != "" {
				removed = append(removed, r)
			}
		}
	}
	if !slices.Contains(removed, "x-pve-backend") {
		t.Errorf("early header mutation removes %q, want x-pve-backend among them", removed)
	}
}

func checkHCM(t *testing.T, b *bootstrapv3.Bootstrap) {
	h := hcmOf(t, b)
	if !h.GetNormalizePath().GetValue() {
		t.Error("normalize_path is not true")
	}
	if !h.GetMergeSlashes() {
		t.Error("merge_slashes is not true")
	}
	if !h.GetUseRemoteAddress().GetValue() {
		t.Error("use_remote_address is not true")
	}
	if got := h.GetPathWithEscapedSlashesAction(); got != hcmv3.HttpConnectionManager_KEEP_UNCHANGED {
		t.Errorf("path_with_escaped_slashes_action = %s, want KEEP_UNCHANGED (PVE volume IDs carry %%2F)", got)
	}
	ws := false
	for _, u := range h.GetUpgradeConfigs() {
		if u.GetUpgradeType() == "websocket" && (u.GetEnabled() == nil || u.GetEnabled().GetValue()) {
			ws = true
		}
	}
	if !ws {
		t.Error("websocket upgrades are not enabled on the HCM")
	}
	if h.GetRequestTimeout() != nil && h.GetRequestTimeout().AsDuration() != 0 {
		t.Errorf("request_timeout = %s, want 0 (uploads)", h.GetRequestTimeout().AsDuration())
	}
	// ext_proc first (it must run before anything that looks at the route),
	// router last (Envoy requires it).
	fs := h.GetHttpFilters()
	if len(fs) < 2 || fs[0].GetName() != "envoy.filters.http.ext_proc" || fs[len(fs)-1].GetName() != "envoy.filters.http.router" {
		var names []string
		for _, f := range fs {
			names = append(names, f.GetName())
		}
		t.Errorf("http_filters = %q, want ext_proc first and router last", names)
	}
}

func checkExtProc(t *testing.T, b *bootstrapv3.Bootstrap) {
	ep, err := extProcFilter(b)
	if err != nil {
		t.Fatal(err)
	}
	if !ep.GetFailureModeAllow() {
		t.Error("failure_mode_allow is false: a router outage would fail every request instead of falling back to perl")
	}
	if got := ep.GetMessageTimeout().AsDuration(); got != 500*time.Millisecond {
		t.Errorf("message_timeout = %s, want 500ms (DELETE type lookups take up to ~300 ms)", got)
	}
	if got := ep.GetGrpcService().GetEnvoyGrpc().GetClusterName(); got != "migration_router" {
		t.Errorf("grpc_service cluster = %q, want migration_router", got)
	}
	if ep.GetGrpcService().GetTimeout() != nil {
		t.Error("grpc_service.timeout is set: it would cut the ext_proc stream of long uploads")
	}
	md := map[string]string{}
	for _, h := range ep.GetGrpcService().GetInitialMetadata() {
		md[h.GetKey()] = h.GetValue()
	}
	if md["x-request-id"] != "%REQ(x-request-id)%" {
		t.Errorf("initial_metadata x-request-id = %q, want %%REQ(x-request-id)%%", md["x-request-id"])
	}
	pm := ep.GetProcessingMode()
	if pm.GetRequestHeaderMode() != ext_procv3.ProcessingMode_SEND || pm.GetResponseHeaderMode() != ext_procv3.ProcessingMode_SEND ||
		pm.GetRequestBodyMode() != ext_procv3.ProcessingMode_NONE || pm.GetResponseBodyMode() != ext_procv3.ProcessingMode_NONE {
		t.Errorf("processing_mode = %v, want headers SEND, bodies NONE", pm)
	}
	if !ep.GetAllowModeOverride() {
		t.Error("allow_mode_override is false: the router cannot ask for POST/PUT bodies")
	}
	if len(ep.GetAllowedOverrideModes()) == 0 {
		t.Error("allowed_override_modes is empty: any mode could be requested")
	}
	for i, m := range ep.GetAllowedOverrideModes() {
		if m.GetRequestBodyMode() != ext_procv3.ProcessingMode_BUFFERED || m.GetResponseBodyMode() != ext_procv3.ProcessingMode_NONE ||
			m.GetResponseHeaderMode() == ext_procv3.ProcessingMode_SKIP ||
			m.GetRequestTrailerMode() != ext_procv3.ProcessingMode_DEFAULT || m.GetResponseTrailerMode() != ext_procv3.ProcessingMode_DEFAULT {
			t.Errorf("allowed_override_modes[%d] = %v, want only request_body_mode BUFFERED", i, m)
		}
	}
	if ep.GetRouteCacheAction() != ext_procv3.ExternalProcessor_CLEAR {
		t.Errorf("route_cache_action = %s, want CLEAR", ep.GetRouteCacheAction())
	}
	if ep.GetObservabilityMode() {
		t.Error("observability_mode would ignore the router's answers")
	}
	attrs := ep.GetResponseAttributes()
	for _, want := range []string{"upstream.address", "xds.upstream_host_metadata"} {
		if !slices.Contains(attrs, want) {
			t.Errorf("response_attributes %q lack %s", attrs, want)
		}
	}

	s, err := ExtProc(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := (ExtProcSettings{FailureModeAllow: true, MessageTimeout: 500 * time.Millisecond, AllowModeOverride: true}); s != want {
		t.Errorf("ExtProc = %+v, want %+v", s, want)
	}
}

func checkMutationRules(t *testing.T, b *bootstrapv3.Bootstrap) {
	ep, err := extProcFilter(b)
	if err != nil {
		t.Fatal(err)
	}
	mr := ep.GetMutationRules()
	if !mr.GetDisallowAll().GetValue() {
		t.Fatal("mutation_rules.disallow_all is not true: it is not an allow-list")
	}
	if mr.GetAllowEnvoy().GetValue() || mr.GetAllowAllRouting().GetValue() || mr.GetDisallowExpression() != nil {
		t.Error("mutation_rules widen the allow-list beyond allow_expression")
	}
	// Envoy's RegexMatcher is an RE2 full match; Go's regexp is RE2 too.
	re, err := regexp.Compile("^(?:" + mr.GetAllowExpression().GetRegex() + ")$")
	if err != nil {
		t.Fatalf("allow_expression: %v", err)
	}
	for _, h := range routerSetHeaders {
		if !re.MatchString(h) {
			t.Errorf("allow_expression rejects %s, which the router sets", h)
		}
	}
	for _, h := range []string{
		"x-envoy-retry-on", "x-envoy-retriable-status-codes", "x-envoy-upstream-rq-timeout-ms-x",
		":authority", ":path", ":method", ":scheme", "host", "x-pve-served-by", "x-pve-backend2",
		"authorization", "cookie", "csrfpreventiontoken", "x-forwarded-for", "", "X-PVE-BACKEND",
	} {
		if re.MatchString(h) {
			t.Errorf("allow_expression accepts %q, which the router must not set", h)
		}
	}
}

func checkRoutes(t *testing.T, b *bootstrapv3.Bootstrap) {
	vhs := hcmOf(t, b).GetRouteConfig().GetVirtualHosts()
	if len(vhs) != 1 || vhs[0].GetName() != "pve" {
		t.Fatalf("want exactly one virtual host named pve")
	}
	vh := vhs[0]
	if !vh.GetIncludeAttemptCountInResponse() {
		t.Error("include_attempt_count_in_response is false: no x-envoy-attempt-count")
	}
	served := false
	for _, h := range vh.GetResponseHeadersToAdd() {
		if h.GetHeader().GetKey() == "x-pve-served-by" && h.GetHeader().GetValue() == "%UPSTREAM_METADATA(pve:backend)%" &&
			h.GetAppendAction() == corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			served = true
		}
	}
	if !served {
		t.Errorf("no x-pve-served-by: %q response header (overwrite)", "%UPSTREAM_METADATA(pve:backend)%")
	}
	routes := vh.GetRoutes()
	for _, r := range routes {
		if !slices.Contains(r.GetRequestHeadersToRemove(), "x-pve-backend") {
			t.Errorf("route %q forwards x-pve-backend to the backend", r.GetName())
		}
	}
	last := routes[len(routes)-1]
	if last.GetName() != "perl_default" || last.GetMatch().GetPrefix() != "/" || len(last.GetMatch().GetHeaders()) != 0 ||
		last.GetRoute().GetCluster() != "perl" {
		t.Errorf("last route is %q, want the catch-all perl_default -> perl", last.GetName())
	}
	if last.GetRoute().GetRetryPolicy() != nil || vh.GetRetryPolicy() != nil {
		t.Error("the perl route retries: there is nothing to fall back to, and uploads cannot be buffered")
	}
	if d := last.GetRoute().GetTimeout(); d == nil || d.AsDuration() != 0 {
		t.Error("the perl route has a timeout: ISO uploads would be cut off")
	}

	for _, name := range []string{"rust_read", "rust_write"} {
		r := routeOf(t, b, name)
		var backendHeader *routev3.HeaderMatcher
		for _, h := range r.GetMatch().GetHeaders() {
			if h.GetName() == "x-pve-backend" {
				backendHeader = h
			}
		}
		if backendHeader.GetStringMatch().GetExact() != "rust" || backendHeader.GetStringMatch().GetIgnoreCase() || backendHeader.GetInvertMatch() {
			t.Errorf("route %s does not match exactly x-pve-backend: rust", name)
		}
		rp := r.GetRoute().GetRetryPolicy()
		if !slices.Contains(rp.GetRetriableStatusCodes(), 501) {
			t.Errorf("route %s: 501 not in retriable_status_codes %v", name, rp.GetRetriableStatusCodes())
		}
		if rp.GetNumRetries().GetValue() != 1 {
			t.Errorf("route %s: num_retries = %d, want 1 (one fallback to perl)", name, rp.GetNumRetries().GetValue())
		}
		if pt, to := rp.GetPerTryTimeout().AsDuration(), r.GetRoute().GetTimeout().AsDuration(); pt <= 0 || pt >= to {
			t.Errorf("route %s: per_try_timeout %s must be > 0 and < timeout %s, or a slow rust is never retried", name, pt, to)
		}
		if r.GetRoute().GetCluster() != "rust_then_perl" {
			t.Errorf("route %s goes to %q, want rust_then_perl", name, r.GetRoute().GetCluster())
		}
		if lim := r.GetRequestBodyBufferLimit().GetValue(); lim < 512*1024 {
			t.Errorf("route %s: request_body_buffer_limit %d < 512 KiB: large PVE bodies could not be retried", name, lim)
		}
	}
	readOn := strings.Split(routeOf(t, b, "rust_read").GetRoute().GetRetryPolicy().GetRetryOn(), ",")
	for _, want := range []string{"5xx", "reset", "connect-failure", "refused-stream", "retriable-status-codes"} {
		if !slices.Contains(readOn, want) {
			t.Errorf("rust_read retry_on %q lacks %s", readOn, want)
		}
	}
	writeOn := strings.Split(routeOf(t, b, "rust_write").GetRoute().GetRetryPolicy().GetRetryOn(), ",")
	for _, bad := range unsafeForWrites {
		if slices.Contains(writeOn, bad) {
			t.Errorf("rust_write retry_on %q contains %s: a write rust applied could be replayed on perl", writeOn, bad)
		}
	}
	for _, want := range []string{"connect-failure", "refused-stream", "reset-before-request", "retriable-status-codes"} {
		if !slices.Contains(writeOn, want) {
			t.Errorf("rust_write retry_on %q lacks %s", writeOn, want)
		}
	}
}

func checkClusters(t *testing.T, b *bootstrapv3.Bootstrap) {
	for _, name := range []string{"perl", "rust"} {
		c := clusterOf(t, b, name)
		for _, ep := range c.GetLoadAssignment().GetEndpoints() {
			for _, lb := range ep.GetLbEndpoints() {
				got := lb.GetMetadata().GetFilterMetadata()["pve"].GetFields()["backend"].GetStringValue()
				if got != name {
					t.Errorf("cluster %s endpoint metadata pve.backend = %q, want %q", name, got, name)
				}
			}
		}
	}
	rust := clusterOf(t, b, "rust")
	if len(rust.GetHealthChecks()) == 0 {
		t.Fatal("rust has no active health check")
	}
	hc := rust.GetHealthChecks()[0].GetHttpHealthCheck()
	if hc.GetPath() != "/api2/json/version" {
		t.Errorf("rust health check path %q", hc.GetPath())
	}
	var codes []int64
	for _, r := range hc.GetExpectedStatuses() {
		for code := r.GetStart(); code < r.GetEnd(); code++ {
			codes = append(codes, code)
		}
	}
	if !slices.Equal(codes, []int64{200, 401}) {
		t.Errorf("rust health check expects %v, want [200 401]", codes)
	}
	od := rust.GetOutlierDetection()
	if od.GetMaxEjectionPercent().GetValue() != 100 {
		t.Errorf("rust outlier_detection.max_ejection_percent = %d, want 100", od.GetMaxEjectionPercent().GetValue())
	}
	if od.GetEnforcingConsecutive_5Xx() == nil || od.GetEnforcingConsecutive_5Xx().GetValue() != 0 {
		t.Error("consecutive 5xx (including rust's deliberate 501s) would eject rust")
	}
	if p := rust.GetCommonLbConfig().GetHealthyPanicThreshold(); p == nil || p.GetValue() != 0 {
		t.Error("rust keeps panic routing: with its only host unhealthy it would still get attempt 1")
	}

	tp := clusterOf(t, b, "rust_then_perl")
	if tp.GetClusterType().GetName() != "envoy.clusters.composite" || tp.GetLbPolicy() != clusterv3.Cluster_CLUSTER_PROVIDED {
		t.Errorf("rust_then_perl is %q / %s, want composite with CLUSTER_PROVIDED", tp.GetClusterType().GetName(), tp.GetLbPolicy())
	}
	cc, err := unpack[*compositev3.ClusterConfig]("rust_then_perl", tp.GetClusterType().GetTypedConfig())
	if err != nil {
		t.Fatal(err)
	}
	var subs []string
	for _, e := range cc.GetClusters() {
		subs = append(subs, e.GetName())
	}
	if !slices.Equal(subs, []string{"rust", "perl"}) {
		t.Errorf("rust_then_perl = %q, want [rust perl]", subs)
	}
	maxRetries := uint32(3) // Envoy's default
	for _, th := range tp.GetCircuitBreakers().GetThresholds() {
		if th.GetPriority() == corev3.RoutingPriority_DEFAULT && th.GetMaxRetries() != nil {
			maxRetries = th.GetMaxRetries().GetValue()
		}
	}
	if maxRetries < 100 {
		t.Errorf("rust_then_perl allows %d concurrent retries: fallbacks would overflow during a rust outage", maxRetries)
	}

	for _, name := range []string{"migration_router", "jaeger_otlp"} {
		c := clusterOf(t, b, name)
		opts := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
		po, err := unpack[*httpv3.HttpProtocolOptions](name, opts)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if po.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
			t.Errorf("cluster %s is not HTTP/2 (gRPC needs it)", name)
		}
	}
}

func checkTracing(t *testing.T, b *bootstrapv3.Bootstrap) {
	tr := hcmOf(t, b).GetTracing()
	if !tr.GetSpawnUpstreamSpan().GetValue() {
		t.Error("spawn_upstream_span is not true: a fallback would not show as a second attempt span")
	}
	if tr.GetProvider().GetName() != "envoy.tracers.opentelemetry" {
		t.Fatalf("tracing provider %q", tr.GetProvider().GetName())
	}
	otel, err := unpack[*tracev3.OpenTelemetryConfig]("tracing.provider", tr.GetProvider().GetTypedConfig())
	if err != nil {
		t.Fatal(err)
	}
	if otel.GetServiceName() != "pve-envoy" || otel.GetGrpcService().GetEnvoyGrpc().GetClusterName() != "jaeger_otlp" {
		t.Errorf("OpenTelemetry tracer: service %q, cluster %q; want pve-envoy, jaeger_otlp",
			otel.GetServiceName(), otel.GetGrpcService().GetEnvoyGrpc().GetClusterName())
	}
}

func checkAccessLog(t *testing.T, b *bootstrapv3.Bootstrap) {
	logs := hcmOf(t, b).GetAccessLog()
	if len(logs) == 0 {
		t.Fatal("no access log")
	}
	var stdout *streamv3.StdoutAccessLog
	for _, l := range logs {
		if s, err := unpack[*streamv3.StdoutAccessLog]("access_log", l.GetTypedConfig()); err == nil {
			stdout = s
		}
		// Whatever the logger, it must not name a credential.
		js, err := protojson.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		lower := strings.ToLower(string(js))
		for _, secret := range []string{"authorization", "cookie", "csrfpreventiontoken", "pveauthcookie"} {
			if strings.Contains(lower, secret) {
				t.Errorf("access log %q mentions %s", l.GetName(), secret)
			}
		}
		for _, withQuery := range []string{"%req(:path)%", "%path%", "%path(wq", "%req(x-envoy-original-path"} {
			if strings.Contains(lower, withQuery) {
				t.Errorf("access log %q logs the query string (%s); vncticket= travels there", l.GetName(), withQuery)
			}
		}
	}
	if stdout == nil {
		t.Fatal("no envoy.access_loggers.stdout access log")
	}
	fields := stdout.GetLogFormat().GetJsonFormat().GetFields()
	if fields == nil {
		t.Fatal("stdout access log is not json_format")
	}
	want := map[string]string{
		"route_name":       "%ROUTE_NAME%",
		"upstream_host":    "%UPSTREAM_HOST%",
		"upstream_cluster": "%UPSTREAM_CLUSTER%",
		"attempt_count":    "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
		"served_by":        "%RESP(X-PVE-SERVED-BY)%",
		"trace_id":         "%TRACE_ID%",
		"response_code":    "%RESPONSE_CODE%",
		"duration_ms":      "%DURATION%",
		"path":             "%PATH(NQ)%",
	}
	for k, v := range want {
		if got := fields[k].GetStringValue(); got != v {
			t.Errorf("access log %s = %q, want %q", k, got, v)
		}
	}
}

func TestPVEHostSpecifics(t *testing.T) {
	b := load(t, PVEHostConfig())
	l := b.GetStaticResources().GetListeners()[0]
	if sa := l.GetAddress().GetSocketAddress(); sa.GetAddress() != "0.0.0.0" || sa.GetPortValue() != 8443 {
		t.Errorf("listener on %s:%d, want 0.0.0.0:8443 (pveproxy keeps 8006)", sa.GetAddress(), sa.GetPortValue())
	}
	down, err := unpack[*tlsv3.DownstreamTlsContext]("listener transport_socket", l.GetFilterChains()[0].GetTransportSocket().GetTypedConfig())
	if err != nil {
		t.Fatal(err)
	}
	certs := down.GetCommonTlsContext().GetTlsCertificates()
	if len(certs) != 1 || certs[0].GetCertificateChain().GetFilename() != "/etc/pve/local/pve-ssl.pem" ||
		certs[0].GetPrivateKey().GetFilename() != "/etc/pve/local/pve-ssl.key" {
		t.Errorf("listener certificate %v, want /etc/pve/local/pve-ssl.{pem,key}", certs)
	}

	perl := clusterOf(t, b, "perl")
	up, err := unpack[*tlsv3.UpstreamTlsContext]("perl transport_socket", perl.GetTransportSocket().GetTypedConfig())
	if err != nil {
		t.Fatalf("perl is not TLS: %v", err)
	}
	vc := up.GetCommonTlsContext().GetValidationContext()
	if up.GetSni() == "" || vc.GetTrustedCa().GetFilename() != "/etc/pve/pve-root-ca.pem" || len(vc.GetMatchTypedSubjectAltNames()) == 0 {
		t.Errorf("perl TLS: sni %q, trusted_ca %q, SAN matchers %d; want SNI, the PVE root CA and a SAN check",
			up.GetSni(), vc.GetTrustedCa().GetFilename(), len(vc.GetMatchTypedSubjectAltNames()))
	}
	addr := func(name string) string {
		a := clusterOf(t, b, name).GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress()
		if p := a.GetPipe(); p != nil {
			return "unix:" + p.GetPath()
		}
		return a.GetSocketAddress().GetAddress() + ":" + strconvU(a.GetSocketAddress().GetPortValue())
	}
	for name, want := range map[string]string{
		"perl":             "127.0.0.1:8006",
		"rust":             "127.0.0.1:8008",
		"migration_router": "unix:/run/pve-migration/extproc.sock",
	} {
		if got := addr(name); got != want {
			t.Errorf("cluster %s at %s, want %s", name, got, want)
		}
	}
}
