package dataplane

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ext_procv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	earlyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"

	"github.com/pve-migration/router/envoy"
)

// envoyConfig is what the data plane reads from the Envoy bootstrap besides
// the route table and envoy.ExtProcSettings: the HTTP connection manager's
// header sanitising, the ext_proc filter's mutation rules, processing mode
// and attributes, and per cluster the connect timeout, health check,
// outlier detection and endpoint metadata. Reading them from the same file
// Envoy reads is what keeps the two data planes from drifting apart; a
// setting the data plane cannot honour is an error in New, never silently
// ignored.
type envoyConfig struct {
	// HCM.
	earlyRemove       []string // early_header_mutation_extensions: remove
	internalOnly      []string // route_config.internal_only_headers
	useRemoteAddress  bool
	preserveRequestID bool
	normalizePath     bool
	mergeSlashes      bool
	websocket         bool // upgrade_configs has websocket
	attemptCountResp  bool // virtual host include_attempt_count_in_response
	respHeadersToAdd  []headerToAdd
	reqHeadersTimeout time.Duration
	streamIdleTimeout time.Duration
	bufferLimit       int64 // listener per_connection_buffer_limit_bytes
	maxHeadersCount   int   // common_http_protocol_options.max_headers_count

	// respHeadersToRemove: the virtual host's response_headers_to_remove
	// (x-pve-fallback), lower case.
	respHeadersToRemove []string

	// ext_proc filter.
	checker           *mutationChecker
	statusOnError     int
	mode              processingMode
	allowedOverrides  []processingMode
	routeCacheClear   bool // route_cache_action: CLEAR
	routeCacheRetain  bool // RETAIN or disable_clear_route_cache
	requestAttrs      []string
	responseAttrs     []string
	initialMetadata   [][2]string
	disableImmediate  bool
	observabilityMode bool

	clusters map[string]clusterConfig
}

// headerToAdd is one response_headers_to_add entry of the virtual host.
type headerToAdd struct {
	name string
	// value is a literal, or "" when metaKey is set.
	value string
	// metaNS/metaKey name %UPSTREAM_METADATA(ns:key)%.
	metaNS, metaKey string
	overwrite       bool
}

// clusterConfig is what the data plane needs of one Envoy cluster.
type clusterConfig struct {
	backend        string // endpoint metadata pve.backend, else the cluster name
	connectTimeout time.Duration
	health         *healthCheckConfig
	outlier        *outlierConfig

	// upstreamExtProc is the ext_proc filter of the cluster's upstream
	// filter chain (rust_then_perl_extjs), nil if none.
	upstreamExtProc *upstreamExtProc
}

type healthCheckConfig struct {
	path               string
	interval           time.Duration
	timeout            time.Duration
	unhealthyThreshold int
	healthyThreshold   int
	expected           [][2]int // [start, end) ranges
}

type outlierConfig struct {
	consecutiveGatewayFailure int // 0: detector off (enforcing 0)
	consecutive5xx            int
	baseEjection              time.Duration
	maxEjection               time.Duration
}

// processingMode is ext_proc's ProcessingMode reduced to what the data plane
// implements: header SEND/SKIP, request body NONE/BUFFERED.
type processingMode struct {
	requestHeaders  bool
	responseHeaders bool
	requestBody     ext_procv3.ProcessingMode_BodySendMode
	responseBody    ext_procv3.ProcessingMode_BodySendMode
}

func modeFrom(m *ext_procv3.ProcessingMode) processingMode {
	return processingMode{
		// DEFAULT means SEND for headers.
		requestHeaders:  m.GetRequestHeaderMode() != ext_procv3.ProcessingMode_SKIP,
		responseHeaders: m.GetResponseHeaderMode() != ext_procv3.ProcessingMode_SKIP,
		requestBody:     m.GetRequestBodyMode(),
		responseBody:    m.GetResponseBodyMode(),
	}
}

// readEnvoyConfig extracts envoyConfig from b. It refuses what the data plane
// does not implement (a body mode other than NONE/BUFFERED, a response
// header formatter it cannot evaluate), so that it never disagrees with
// Envoy without saying so.
func readEnvoyConfig(b *bootstrapv3.Bootstrap) (*envoyConfig, error) {
	cfg := &envoyConfig{statusOnError: 500, clusters: map[string]clusterConfig{}, bufferLimit: 1 << 20}
	var hcm *hcmv3.HttpConnectionManager
	for _, l := range b.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				if h, ok := envoy.UnpackAny[*hcmv3.HttpConnectionManager](f.GetTypedConfig()); ok {
					if hcm != nil {
						return nil, errors.New("more than one HTTP connection manager")
					}
					hcm = h
					if v := l.GetPerConnectionBufferLimitBytes(); v != nil {
						cfg.bufferLimit = int64(v.GetValue())
					}
				}
			}
		}
	}
	if hcm == nil {
		return nil, errors.New("no HTTP connection manager")
	}
	cfg.maxHeadersCount = 100 // Envoy's default
	if v := hcm.GetCommonHttpProtocolOptions().GetMaxHeadersCount(); v != nil {
		cfg.maxHeadersCount = int(v.GetValue())
	}
	for _, ext := range hcm.GetEarlyHeaderMutationExtensions() {
		hm, ok := envoy.UnpackAny[*earlyv3.HeaderMutation](ext.GetTypedConfig())
		if !ok {
			return nil, fmt.Errorf("early header mutation %q is not implemented", ext.GetName())
		}
		for _, m := range hm.GetMutations() {
			if m.GetRemove() == "" {
				return nil, fmt.Errorf("early header mutation %q: only `remove` is implemented", ext.GetName())
			}
			cfg.earlyRemove = append(cfg.earlyRemove, strings.ToLower(m.GetRemove()))
		}
	}
	cfg.useRemoteAddress = hcm.GetUseRemoteAddress().GetValue()
	cfg.preserveRequestID = hcm.GetPreserveExternalRequestId()
	cfg.normalizePath = hcm.GetNormalizePath().GetValue()
	cfg.mergeSlashes = hcm.GetMergeSlashes()
	cfg.reqHeadersTimeout = hcm.GetRequestHeadersTimeout().AsDuration()
	cfg.streamIdleTimeout = 5 * time.Minute // Envoy's default
	if d := hcm.GetStreamIdleTimeout(); d != nil {
		cfg.streamIdleTimeout = d.AsDuration()
	}
	for _, u := range hcm.GetUpgradeConfigs() {
		if strings.EqualFold(u.GetUpgradeType(), "websocket") && (u.GetEnabled() == nil || u.GetEnabled().GetValue()) {
			cfg.websocket = true
		}
	}
	if rc := hcm.GetRouteConfig(); rc != nil {
		for _, h := range rc.GetInternalOnlyHeaders() {
			cfg.internalOnly = append(cfg.internalOnly, strings.ToLower(h))
		}
		for _, vh := range rc.GetVirtualHosts() {
			cfg.attemptCountResp = vh.GetIncludeAttemptCountInResponse()
			for _, h := range vh.GetResponseHeadersToRemove() {
				cfg.respHeadersToRemove = append(cfg.respHeadersToRemove, strings.ToLower(h))
			}
			for _, h := range vh.GetResponseHeadersToAdd() {
				ha, err := parseHeaderToAdd(h)
				if err != nil {
					return nil, err
				}
				cfg.respHeadersToAdd = append(cfg.respHeadersToAdd, ha)
			}
		}
	}
	var ep *ext_procv3.ExternalProcessor
	for _, f := range hcm.GetHttpFilters() {
		if e, ok := envoy.UnpackAny[*ext_procv3.ExternalProcessor](f.GetTypedConfig()); ok {
			ep = e
			break
		}
	}
	if ep == nil {
		return nil, errors.New("no ext_proc filter")
	}
	if err := cfg.readExtProc(ep); err != nil {
		return nil, err
	}
	for _, c := range b.GetStaticResources().GetClusters() {
		cc, err := readCluster(c)
		if err != nil {
			return nil, err
		}
		cfg.clusters[c.GetName()] = cc
	}
	return cfg, nil
}

var upstreamMetadataFormatter = regexp.MustCompile(`^%UPSTREAM_METADATA\(([^:()]+):([^:()]+)\)%$`)

func parseHeaderToAdd(h *corev3.HeaderValueOption) (headerToAdd, error) {
	name := strings.ToLower(h.GetHeader().GetKey())
	val := h.GetHeader().GetValue()
	ha := headerToAdd{name: name}
	switch h.GetAppendAction() {
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
		ha.overwrite = true
	case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
		ha.overwrite = false
	default:
		return ha, fmt.Errorf("response_headers_to_add %s: append_action %v is not implemented", name, h.GetAppendAction())
	}
	if m := upstreamMetadataFormatter.FindStringSubmatch(val); m != nil {
		ha.metaNS, ha.metaKey = m[1], m[2]
		return ha, nil
	}
	if strings.Contains(val, "%") {
		return ha, fmt.Errorf("response_headers_to_add %s: formatter %q is not implemented by the data plane", name, val)
	}
	ha.value = val
	return ha, nil
}

func (cfg *envoyConfig) readExtProc(ep *ext_procv3.ExternalProcessor) error {
	var err error
	if cfg.checker, err = newMutationChecker(ep.GetMutationRules()); err != nil {
		return err
	}
	if s := ep.GetStatusOnError(); s != nil && s.GetCode() != 0 {
		cfg.statusOnError = int(s.GetCode())
	}
	cfg.mode = modeFrom(ep.GetProcessingMode())
	if ep.GetProcessingMode() == nil {
		cfg.mode = processingMode{requestHeaders: true, responseHeaders: true}
	}
	for _, m := range ep.GetAllowedOverrideModes() {
		cfg.allowedOverrides = append(cfg.allowedOverrides, modeFrom(m))
	}
	for _, mode := range append([]processingMode{cfg.mode}, cfg.allowedOverrides...) {
		for _, bm := range []ext_procv3.ProcessingMode_BodySendMode{mode.requestBody, mode.responseBody} {
			if bm != ext_procv3.ProcessingMode_NONE && bm != ext_procv3.ProcessingMode_BUFFERED {
				return fmt.Errorf("ext_proc body mode %v is not implemented by the data plane", bm)
			}
		}
		if mode.responseBody != ext_procv3.ProcessingMode_NONE {
			return errors.New("ext_proc response_body_mode other than NONE is not implemented by the data plane")
		}
	}
	if mode := cfg.mode; mode.requestBody != ext_procv3.ProcessingMode_NONE {
		return errors.New("ext_proc request_body_mode must be NONE (BUFFERED only as a mode_override)")
	}
	switch ep.GetRouteCacheAction() {
	case ext_procv3.ExternalProcessor_CLEAR:
		cfg.routeCacheClear = true
	case ext_procv3.ExternalProcessor_RETAIN:
		cfg.routeCacheRetain = true
	}
	if ep.GetDisableClearRouteCache() {
		cfg.routeCacheRetain = true
	}
	cfg.requestAttrs = ep.GetRequestAttributes()
	cfg.responseAttrs = ep.GetResponseAttributes()
	for _, md := range ep.GetGrpcService().GetInitialMetadata() {
		cfg.initialMetadata = append(cfg.initialMetadata, [2]string{strings.ToLower(md.GetKey()), md.GetValue()})
	}
	cfg.disableImmediate = ep.GetDisableImmediateResponse()
	cfg.observabilityMode = ep.GetObservabilityMode()
	if cfg.observabilityMode {
		return errors.New("ext_proc observability_mode is not implemented by the data plane")
	}
	return nil
}

func readCluster(c *clusterv3.Cluster) (clusterConfig, error) {
	cc := clusterConfig{backend: c.GetName(), connectTimeout: 5 * time.Second}
	if d := c.GetConnectTimeout(); d != nil {
		cc.connectTimeout = d.AsDuration()
	}
	uf, err := readUpstreamFilters(c)
	if err != nil {
		return cc, err
	}
	cc.upstreamExtProc = uf
	for _, lle := range c.GetLoadAssignment().GetEndpoints() {
		for _, le := range lle.GetLbEndpoints() {
			if v := le.GetMetadata().GetFilterMetadata()["pve"].GetFields()["backend"].GetStringValue(); v != "" {
				cc.backend = v
			}
		}
	}
	for _, hc := range c.GetHealthChecks() {
		h := hc.GetHttpHealthCheck()
		if h == nil {
			continue // gRPC health of the ext_proc cluster: not an HTTP upstream
		}
		cfg := &healthCheckConfig{
			path:               h.GetPath(),
			interval:           hc.GetInterval().AsDuration(),
			timeout:            hc.GetTimeout().AsDuration(),
			unhealthyThreshold: int(hc.GetUnhealthyThreshold().GetValue()),
			healthyThreshold:   int(hc.GetHealthyThreshold().GetValue()),
		}
		for _, r := range h.GetExpectedStatuses() {
			cfg.expected = append(cfg.expected, [2]int{int(r.GetStart()), int(r.GetEnd())})
		}
		if len(cfg.expected) == 0 {
			cfg.expected = [][2]int{{200, 201}}
		}
		cfg.unhealthyThreshold = max(cfg.unhealthyThreshold, 1)
		cfg.healthyThreshold = max(cfg.healthyThreshold, 1)
		cc.health = cfg
	}
	if od := c.GetOutlierDetection(); od != nil {
		o := &outlierConfig{
			consecutiveGatewayFailure: uintOr(od.GetConsecutiveGatewayFailure().GetValue(), od.GetConsecutiveGatewayFailure() != nil, 5),
			consecutive5xx:            uintOr(od.GetConsecutive_5Xx().GetValue(), od.GetConsecutive_5Xx() != nil, 5),
			baseEjection:              30 * time.Second,
			maxEjection:               300 * time.Second,
		}
		// Envoy's enforcing_* defaults: 0 % for gateway failures, 100 % for 5xx.
		if uintOr(od.GetEnforcingConsecutiveGatewayFailure().GetValue(), od.GetEnforcingConsecutiveGatewayFailure() != nil, 0) == 0 {
			o.consecutiveGatewayFailure = 0
		}
		if uintOr(od.GetEnforcingConsecutive_5Xx().GetValue(), od.GetEnforcingConsecutive_5Xx() != nil, 100) == 0 {
			o.consecutive5xx = 0
		}
		if d := od.GetBaseEjectionTime(); d != nil {
			o.baseEjection = d.AsDuration()
		}
		if d := od.GetMaxEjectionTime(); d != nil {
			o.maxEjection = d.AsDuration()
		}
		cc.outlier = o
	}
	return cc, nil
}

func uintOr(v uint32, set bool, def int) int {
	if !set {
		return def
	}
	return int(v)
}

// defaultBootstrap parses envoy.DemoConfig once per New; it is small.
func defaultBootstrap() (*bootstrapv3.Bootstrap, error) {
	return envoy.LoadBootstrap(envoy.DemoConfig())
}
