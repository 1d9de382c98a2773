package server

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/pve-migration/router/routing"
)

// The request headers the service sets. Envoy's mutation_rules must allow
// exactly these (see server/README.md); anything else the service tried to
// set would be dropped silently and counted as a rejected mutation.
const (
	// HeaderBackend carries the decision; Envoy's routes match on it.
	HeaderBackend = "x-pve-backend"
	// HeaderPerTryTimeout bounds the Rust attempt, so that a slow Rust
	// still leaves time for the Perl retry.
	HeaderPerTryTimeout = "x-envoy-upstream-rq-per-try-timeout-ms"
	// HeaderTimeout bounds the whole request, both attempts included.
	HeaderTimeout = "x-envoy-upstream-rq-timeout-ms"
	// HeaderMaxRetries is set to 0 when fallback is off for the request,
	// overriding the route's retry policy.
	HeaderMaxRetries = "x-envoy-max-retries"
)

// The response headers the service reads to learn how a request was
// served. Envoy's router adds both before ext_proc sees the response.
const (
	// HeaderServedBy is set by each backend ("rust" or "perl").
	HeaderServedBy = "x-pve-served-by"
	// HeaderAttemptCount is Envoy's include_attempt_count_in_response.
	HeaderAttemptCount = "x-envoy-attempt-count"
	// HeaderRequestID is Envoy's request id, also sent as gRPC metadata.
	HeaderRequestID = "x-request-id"
)

// defaultPerlTimeout is the contract's perl_api_timeout, used for the
// fallback budget when a snapshot has none.
const defaultPerlTimeout = 60 * time.Second

// Responses are immutable once built and shared by every stream: gRPC
// marshals a message before SendMsg returns and never keeps it, and
// concurrent marshalling of an unmodified message is safe. Sharing them
// keeps the hot path free of per-request proto allocations.
var (
	rawPerl = []byte("perl")
	rawRust = []byte("rust")
	rawZero = []byte("0")

	perlMutation = &extprocv3.CommonResponse{
		HeaderMutation:  &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader(HeaderBackend, rawPerl)}},
		ClearRouteCache: true,
	}
	perlResponses = responsePair{
		headers: headersResponse(perlMutation),
		body:    bodyResponse(perlMutation),
	}

	// bodyRequest answers request headers whose routing depends on a body
	// parameter: route to Perl for now (the safe default if the body never
	// arrives, or if Envoy does not re-route after the body answer), and
	// ask Envoy to buffer the body and send it. The mode equals the first
	// entry of envoy.yaml's allowed_override_modes (Envoy compares every
	// field but request_header_mode); responses stay SEND so the outcome
	// is still reported.
	bodyRequest = &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{Response: perlMutation}},
		ModeOverride: &extprocfilterv3.ProcessingMode{
			RequestHeaderMode:  extprocfilterv3.ProcessingMode_SEND,
			ResponseHeaderMode: extprocfilterv3.ProcessingMode_SEND,
			RequestBodyMode:    extprocfilterv3.ProcessingMode_BUFFERED,
		},
	}

	// Answers that change nothing, for the messages the service only
	// observes or does not use. Each has the oneof type of the message it
	// answers; anything else would be a "spurious" reply to Envoy.
	continueResponseHeaders  = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}}
	continueRequestBody      = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}}}
	continueResponseBody     = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}
	continueRequestTrailers  = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}
	continueResponseTrailers = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}
)

// setHeader overwrites one request header. raw_value only: Envoy reads
// nothing else since 1.27, and value plus raw_value is a 500. append=false
// is explicit because ext_proc ignores append_action.
func setHeader(key string, raw []byte) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header: &corev3.HeaderValue{Key: key, RawValue: raw},
		//lint:ignore SA1019 ext_proc reads only the deprecated append field (envoy-facts §1.3).
		Append: wrapperspb.Bool(false),
	}
}

func headersResponse(c *extprocv3.CommonResponse) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{Response: c}}}
}

func bodyResponse(c *extprocv3.CommonResponse) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{Response: c}}}
}

// responsePair is one decision's mutation in both places it can be sent:
// the request-headers answer and the request-body answer.
type responsePair struct {
	headers, body *extprocv3.ProcessingResponse
}

// rustKey identifies a Rust decision's mutation. Timeouts come from a
// handful of config values, so the set of keys in use is tiny.
type rustKey struct {
	perTryMS, overallMS int64
	noRetry             bool
}

// maxCachedResponses bounds the response cache; past it responses are
// built per request (correct, only slower), so no config can grow memory.
const maxCachedResponses = 256

// responseCache holds the prebuilt Rust responses.
type responseCache struct {
	m sync.Map // rustKey -> responsePair
	n atomic.Int32
}

// forDecision returns the responses that carry decision d. perlTimeout is
// the snapshot's perl_api_timeout, the budget of the fallback attempt.
func (rc *responseCache) forDecision(d *routing.Decision, perlTimeout time.Duration) responsePair {
	if d.Backend != routing.Rust {
		return perlResponses
	}
	k := rustKey{noRetry: !d.Fallback}
	if d.RustTimeout > 0 {
		k.perTryMS = millis(d.RustTimeout)
		k.overallMS = k.perTryMS
		if d.Fallback {
			if perlTimeout <= 0 {
				perlTimeout = defaultPerlTimeout
			}
			k.overallMS = millis(d.RustTimeout + perlTimeout)
		}
	}
	if v, ok := rc.m.Load(k); ok {
		return v.(responsePair)
	}
	pair := buildRust(k)
	if rc.n.Load() < maxCachedResponses {
		if _, loaded := rc.m.LoadOrStore(k, pair); !loaded {
			rc.n.Add(1)
		}
	}
	return pair
}

func buildRust(k rustKey) responsePair {
	set := []*corev3.HeaderValueOption{setHeader(HeaderBackend, rawRust)}
	if k.perTryMS > 0 {
		set = append(set,
			setHeader(HeaderPerTryTimeout, strconv.AppendInt(nil, k.perTryMS, 10)),
			setHeader(HeaderTimeout, strconv.AppendInt(nil, k.overallMS, 10)))
	}
	if k.noRetry {
		set = append(set, setHeader(HeaderMaxRetries, rawZero))
	}
	c := &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: set}, ClearRouteCache: true}
	return responsePair{headers: headersResponse(c), body: bodyResponse(c)}
}

// millis rounds up, so a sub-millisecond timeout never becomes 0, which
// Envoy reads as "no timeout".
func millis(d time.Duration) int64 {
	ms := int64(d / time.Millisecond)
	if d%time.Millisecond != 0 {
		ms++
	}
	return ms
}
