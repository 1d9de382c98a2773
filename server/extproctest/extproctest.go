// Package extproctest drives an ext_proc server the way Envoy's ext_proc
// filter does (envoy-facts §1.2), so the router's tests, the embedded data
// plane's tests and the tracing tests check the server against one model
// of Envoy instead of each inventing its own. No Envoy binary can run
// here; this client is the stand-in, and it is deliberately strict: a
// reply Envoy would reject fails the exchange.
//
// One Do call is one HTTP request and one gRPC stream:
//
//  1. request_headers (pseudo-headers and headers in raw_value,
//     end_of_stream = no body), then the server's request_headers answer;
//  2. if the answer's mode_override asks for a BUFFERED request body and
//     Options.AllowedOverrideModes allows it, the whole body as one
//     request_body message (end_of_stream true), then its answer;
//  3. response_headers (":status", x-pve-served-by,
//     x-envoy-attempt-count), then its answer;
//  4. half-close, and wait for the server to end the stream.
//
// Header mutations are applied as Envoy applies them: raw_value only,
// value plus raw_value is an error (Envoy's local 500), append=false
// overwrites, and headers outside the mutation allow-list are dropped and
// counted. Route selection is re-run only when an answer carries a header
// mutation and the route cache may be cleared. When the server errs or
// does not answer within MessageTimeout, the client fails open as
// envoy.yaml configures Envoy (failure_mode_allow: true): the request
// keeps the route it had, and no response_headers are sent.
package extproctest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultMessageTimeout is envoy.yaml's ext_proc message_timeout.
const DefaultMessageTimeout = 500 * time.Millisecond

// DefaultAllowedHeaders is envoy.yaml's mutation_rules allow-list.
var DefaultAllowedHeaders = []string{
	"x-pve-backend",
	"x-envoy-upstream-rq-per-try-timeout-ms",
	"x-envoy-upstream-rq-timeout-ms",
	"x-envoy-max-retries",
}

// DefaultAllowedOverrideModes is envoy.yaml's allowed_override_modes.
var DefaultAllowedOverrideModes = []*extprocfilterv3.ProcessingMode{
	{
		RequestHeaderMode:  extprocfilterv3.ProcessingMode_SEND,
		ResponseHeaderMode: extprocfilterv3.ProcessingMode_SEND,
		RequestBodyMode:    extprocfilterv3.ProcessingMode_BUFFERED,
	},
	{RequestBodyMode: extprocfilterv3.ProcessingMode_BUFFERED},
}

// Options describe the Envoy being modelled. The zero value is envoy.yaml.
type Options struct {
	// MessageTimeout is Envoy's per-message timeout; 0 means
	// DefaultMessageTimeout, negative means none.
	MessageTimeout time.Duration
	// AllowedHeaders is the mutation allow-list; nil means
	// DefaultAllowedHeaders. Use AllowAllHeaders to accept everything.
	AllowedHeaders []string
	// AllowAllHeaders disables the allow-list.
	AllowAllHeaders bool
	// AllowedOverrideModes is allowed_override_modes; nil means
	// DefaultAllowedOverrideModes.
	AllowedOverrideModes []*extprocfilterv3.ProcessingMode
	// DisallowModeOverride models allow_mode_override: false.
	DisallowModeOverride bool
	// RouteCacheRetain models route_cache_action: RETAIN (never re-route);
	// the default models CLEAR, as envoy.yaml configures.
	RouteCacheRetain bool
	// BodyPhaseNoReroute models Envoy issue #43708: a route-cache clear
	// from the request_body answer does not re-route, so the request keeps
	// the route chosen after the request_headers answer.
	BodyPhaseNoReroute bool
	// BufferLimit is the most body Envoy buffers for the server (the
	// listener's per_connection_buffer_limit_bytes); a larger body gets a
	// local 413. 0 means 1 MiB.
	BufferLimit int
}

// Request is one HTTP request as it reaches the ext_proc filter, after
// Envoy's own header sanitising (so a client x-pve-backend that Envoy
// strips should not be in Headers, unless a test wants to check that the
// server ignores one).
type Request struct {
	Method string
	// Path is :path, query string included.
	Path string
	// Headers are further request headers, lower-case names.
	Headers map[string]string
	// Body is the request body; nil or empty means end_of_stream on the
	// request headers.
	Body []byte
	// Upstream is what the backend (or Envoy's router) answered; a zero
	// Status means 200.
	Upstream Upstream
	// Stop ends the exchange early.
	Stop Stop
}

// Upstream is the final response as Envoy's router passes it back.
type Upstream struct {
	Status int
	// ServedBy is x-pve-served-by ("rust" or "perl"; "" omits it).
	ServedBy string
	// Attempts is x-envoy-attempt-count (0 omits it).
	Attempts int
	// Headers are further response headers.
	Headers map[string]string
}

// Stop says where an exchange ends early.
type Stop int

const (
	// StopNever runs the whole exchange.
	StopNever Stop = iota
	// StopAfterRequest half-closes after the request phase, as Envoy does
	// with response_header_mode SKIP.
	StopAfterRequest
	// CancelAfterRequest resets the stream after the request phase, as
	// when the client goes away while the upstream works.
	CancelAfterRequest
	// CancelAfterRequestHeaders resets the stream right after sending the
	// request headers, without waiting for the answer.
	CancelAfterRequestHeaders
)

// Result is what the exchange did to the request.
type Result struct {
	// Backend is the x-pve-backend value the final route was chosen on,
	// "perl" when there is none (envoy.yaml's default route).
	Backend string
	// HeadersPhaseBackend is the routing value right after the
	// request_headers answer.
	HeadersPhaseBackend string
	// RequestHeaders are the request headers after all applied mutations.
	RequestHeaders map[string]string
	// SetHeaders lists every header the server set and Envoy accepted, in
	// order, across all answers.
	SetHeaders []string
	// RejectedMutations counts mutations outside the allow-list.
	RejectedMutations int
	// BodyRequested is true when the server asked for the body and the
	// override was allowed; BodySent when the body was then sent.
	BodyRequested, BodySent bool
	// ModeOverride is the request_headers answer's mode_override.
	ModeOverride *extprocfilterv3.ProcessingMode
	// FailedOpen is true when Envoy would have given up on ext_proc for
	// this request (error, timeout, spurious reply); FailReason says why.
	FailedOpen bool
	FailReason error
	// LocalReply is a status Envoy itself would answer (413 for a body
	// over BufferLimit, 500 for an invalid mutation); 0 otherwise.
	LocalReply int
	// Replies are the server's answers, in order.
	Replies []*extprocv3.ProcessingResponse
	// ServerStatus is the stream's final status as the server ended it.
	ServerStatus error
	// Latency is the time from opening the stream to its end.
	Latency time.Duration
}

// Client is a modelled Envoy talking to one ext_proc server. It is safe
// for concurrent use: each Do opens its own stream.
type Client struct {
	c    extprocv3.ExternalProcessorClient
	opts Options
}

// New returns a Client over conn (a *grpc.ClientConn).
func New(conn grpc.ClientConnInterface, opts Options) *Client {
	return NewClient(extprocv3.NewExternalProcessorClient(conn), opts)
}

// NewClient returns a Client over any ext_proc client, e.g. the in-process
// link of internal/extproclocal, so that the same conformance tests run
// over gRPC and without it.
func NewClient(c extprocv3.ExternalProcessorClient, opts Options) *Client {
	if opts.MessageTimeout == 0 {
		opts.MessageTimeout = DefaultMessageTimeout
	}
	if opts.AllowedHeaders == nil {
		opts.AllowedHeaders = DefaultAllowedHeaders
	}
	if opts.AllowedOverrideModes == nil {
		opts.AllowedOverrideModes = DefaultAllowedOverrideModes
	}
	if opts.BufferLimit == 0 {
		opts.BufferLimit = 1 << 20
	}
	return &Client{c: c, opts: opts}
}

// ErrInvalidMutation marks a mutation Envoy rejects with a local 500.
var ErrInvalidMutation = errors.New("invalid header mutation")

// ErrSpurious marks a reply of the wrong type for the message it answers.
var ErrSpurious = errors.New("spurious ext_proc reply")

// ErrMessageTimeout marks a reply that did not come within MessageTimeout.
var ErrMessageTimeout = errors.New("ext_proc message timeout")

// Do runs one request's exchange. The error is for failures of the
// harness itself (the stream could not open); everything Envoy would
// survive is in Result.
func (c *Client) Do(ctx context.Context, req Request) (Result, error) {
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ex := &exchange{c: c, cancel: cancel, headers: map[string]string{}}
	for k, v := range req.Headers {
		ex.headers[strings.ToLower(k)] = v
	}
	ex.route()
	st, err := c.c.Process(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("open stream: %w", err)
	}
	ex.st = st
	ex.run(req)
	ex.res.Latency = time.Since(start)
	ex.res.RequestHeaders = ex.headers
	return ex.res, nil
}

type exchange struct {
	c       *Client
	st      grpc.BidiStreamingClient[extprocv3.ProcessingRequest, extprocv3.ProcessingResponse]
	cancel  context.CancelFunc
	headers map[string]string
	res     Result
}

// route re-runs route selection: the route matches on x-pve-backend.
func (ex *exchange) route() {
	ex.res.Backend = "perl"
	if v := ex.headers["x-pve-backend"]; v != "" {
		ex.res.Backend = v
	}
}

func (ex *exchange) run(req Request) {
	method := req.Method
	if method == "" {
		method = "GET"
	}
	hasBody := len(req.Body) > 0
	h := RequestHeaders(method, req.Path, !hasBody, ex.headers)
	if req.Stop == CancelAfterRequestHeaders {
		_ = ex.st.Send(h)
		ex.cancel()
		ex.res.ServerStatus = ex.drain()
		return
	}
	resp, ok := ex.exchange(h, "request_headers")
	if !ok {
		return
	}
	rh, isRH := resp.Response.(*extprocv3.ProcessingResponse_RequestHeaders)
	if !isRH {
		ex.failOpen(fmt.Errorf("answer to request_headers is %T: %w", resp.Response, ErrSpurious))
		return
	}
	if !ex.apply(rh.RequestHeaders.GetResponse(), true) {
		return
	}
	ex.res.HeadersPhaseBackend = ex.res.Backend

	sendResponse := true
	if mo := resp.GetModeOverride(); mo != nil {
		ex.res.ModeOverride = mo
		if ex.overrideAllowed(mo) {
			sendResponse = mo.GetResponseHeaderMode() != extprocfilterv3.ProcessingMode_SKIP
			if mo.GetRequestBodyMode() == extprocfilterv3.ProcessingMode_BUFFERED {
				ex.res.BodyRequested = true
			}
		}
	}
	if ex.res.BodyRequested && hasBody {
		if len(req.Body) > ex.c.opts.BufferLimit {
			ex.res.LocalReply = 413
			ex.closeSend()
			return
		}
		ex.res.BodySent = true
		resp, ok := ex.exchange(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
			RequestBody: &extprocv3.HttpBody{Body: req.Body, EndOfStream: true},
		}}, "request_body")
		if !ok {
			return
		}
		rb, isRB := resp.Response.(*extprocv3.ProcessingResponse_RequestBody)
		if !isRB {
			ex.failOpen(fmt.Errorf("answer to request_body is %T: %w", resp.Response, ErrSpurious))
			return
		}
		if !ex.apply(rb.RequestBody.GetResponse(), !ex.c.opts.BodyPhaseNoReroute) {
			return
		}
	}

	switch req.Stop {
	case StopAfterRequest:
		ex.closeSend()
		return
	case CancelAfterRequest:
		ex.cancel()
		ex.res.ServerStatus = ex.drain()
		return
	}
	if !sendResponse {
		ex.closeSend()
		return
	}
	resp, ok = ex.exchange(ResponseHeaders(req.Upstream), "response_headers")
	if !ok {
		return
	}
	if _, isResp := resp.Response.(*extprocv3.ProcessingResponse_ResponseHeaders); !isResp {
		ex.failOpen(fmt.Errorf("answer to response_headers is %T: %w", resp.Response, ErrSpurious))
		return
	}
	ex.closeSend()
}

// exchange sends one message and waits for its answer within the
// message timeout. On failure it records the fail-open and returns false.
func (ex *exchange) exchange(m *extprocv3.ProcessingRequest, what string) (*extprocv3.ProcessingResponse, bool) {
	if err := ex.st.Send(m); err != nil {
		// The real error comes from Recv.
		_, rerr := ex.st.Recv()
		ex.failOpen(fmt.Errorf("send %s: %w", what, errors.Join(err, rerr)))
		return nil, false
	}
	var timer *time.Timer
	timedOut := make(chan struct{})
	if d := ex.c.opts.MessageTimeout; d > 0 {
		timer = time.AfterFunc(d, func() { close(timedOut); ex.cancel() })
	}
	resp, err := ex.st.Recv()
	if timer != nil && !timer.Stop() {
		<-timedOut
		ex.failOpen(fmt.Errorf("%s: no answer within %s: %w", what, ex.c.opts.MessageTimeout, ErrMessageTimeout))
		return nil, false
	}
	if err != nil {
		ex.res.ServerStatus = err
		if errors.Is(err, io.EOF) {
			ex.res.ServerStatus = nil
			// Server closed with OK: Envoy carries on without ext_proc.
			ex.failOpen(fmt.Errorf("%s: server closed the stream", what))
		} else {
			ex.failOpen(fmt.Errorf("%s: %w", what, err))
		}
		return nil, false
	}
	ex.res.Replies = append(ex.res.Replies, resp)
	return resp, true
}

func (ex *exchange) failOpen(err error) {
	ex.res.FailedOpen = true
	ex.res.FailReason = err
	ex.cancel()
}

// closeSend half-closes and waits for the server's end of the stream.
func (ex *exchange) closeSend() {
	_ = ex.st.CloseSend()
	ex.res.ServerStatus = ex.drain()
}

// drain reads until the stream ends and returns its status (nil for OK).
// A server that does not end the stream within 1s (Envoy's
// remote_close_timeout) is cut off.
func (ex *exchange) drain() error {
	fired := make(chan struct{})
	t := time.AfterFunc(time.Second, func() { close(fired); ex.cancel() })
	var err error
	for err == nil {
		_, err = ex.st.Recv()
	}
	if !t.Stop() {
		<-fired
		return fmt.Errorf("server did not end the stream within 1s: %w", err)
	}
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// apply applies a CommonResponse's header mutation. reroute says whether
// a route-cache clear re-runs route selection. It returns false when
// Envoy would reject the answer (local reply).
func (ex *exchange) apply(c *extprocv3.CommonResponse, reroute bool) bool {
	if c == nil {
		return true
	}
	hm := c.GetHeaderMutation()
	for _, o := range hm.GetSetHeaders() {
		h := o.GetHeader()
		key := strings.ToLower(h.GetKey())
		if h.GetValue() != "" && len(h.GetRawValue()) > 0 {
			ex.res.LocalReply = 500
			ex.failOpen(fmt.Errorf("%s: both value and raw_value set: %w", key, ErrInvalidMutation))
			return false
		}
		if !ex.allowed(key) {
			ex.res.RejectedMutations++
			continue
		}
		v := string(h.GetRawValue()) // value alone becomes "" (Envoy >= 1.27)
		//lint:ignore SA1019 ext_proc reads only the deprecated append field, as Envoy does.
		if o.GetAppend().GetValue() {
			if old, ok := ex.headers[key]; ok {
				v = old + "," + v
			}
		}
		ex.headers[key] = v
		ex.res.SetHeaders = append(ex.res.SetHeaders, key)
	}
	for _, key := range hm.GetRemoveHeaders() {
		key = strings.ToLower(key)
		if !ex.allowed(key) || strings.HasPrefix(key, ":") || key == "host" {
			ex.res.RejectedMutations++
			continue
		}
		delete(ex.headers, key)
	}
	// The route cache is cleared only for an answer with a header
	// mutation (envoy-facts §1.4); route_cache_action CLEAR clears it then
	// whatever clear_route_cache says.
	if hm != nil && reroute && !ex.c.opts.RouteCacheRetain {
		ex.route()
	}
	return true
}

func (ex *exchange) allowed(key string) bool {
	if ex.c.opts.AllowAllHeaders {
		return true
	}
	for _, a := range ex.c.opts.AllowedHeaders {
		if a == key {
			return true
		}
	}
	return false
}

// overrideAllowed is Envoy's check of mode_override against
// allowed_override_modes: every field but request_header_mode compared.
func (ex *exchange) overrideAllowed(m *extprocfilterv3.ProcessingMode) bool {
	if ex.c.opts.DisallowModeOverride {
		return false
	}
	if len(ex.c.opts.AllowedOverrideModes) == 0 {
		return true
	}
	for _, a := range ex.c.opts.AllowedOverrideModes {
		if a.GetRequestBodyMode() == m.GetRequestBodyMode() &&
			a.GetRequestTrailerMode() == m.GetRequestTrailerMode() &&
			a.GetResponseHeaderMode() == m.GetResponseHeaderMode() &&
			a.GetResponseBodyMode() == m.GetResponseBodyMode() &&
			a.GetResponseTrailerMode() == m.GetResponseTrailerMode() {
			return true
		}
	}
	return false
}

// RequestHeaders builds a request_headers message as Envoy sends it:
// pseudo-headers first, every value in raw_value.
func RequestHeaders(method, path string, endOfStream bool, headers map[string]string) *extprocv3.ProcessingRequest {
	hs := []*corev3.HeaderValue{
		{Key: ":method", RawValue: []byte(method)},
		{Key: ":path", RawValue: []byte(path)},
		{Key: ":authority", RawValue: []byte("pve.example:8006")},
		{Key: ":scheme", RawValue: []byte("https")},
	}
	for k, v := range headers {
		hs = append(hs, &corev3.HeaderValue{Key: strings.ToLower(k), RawValue: []byte(v)})
	}
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: hs}, EndOfStream: endOfStream},
	}}
}

// ResponseHeaders builds a response_headers message for an upstream
// answer.
func ResponseHeaders(u Upstream) *extprocv3.ProcessingRequest {
	code := u.Status
	if code == 0 {
		code = 200
	}
	hs := []*corev3.HeaderValue{
		{Key: ":status", RawValue: []byte(strconv.Itoa(code))},
		{Key: "content-type", RawValue: []byte("application/json;charset=UTF-8")},
	}
	if u.ServedBy != "" {
		hs = append(hs, &corev3.HeaderValue{Key: "x-pve-served-by", RawValue: []byte(u.ServedBy)})
	}
	if u.Attempts > 0 {
		hs = append(hs, &corev3.HeaderValue{Key: "x-envoy-attempt-count", RawValue: []byte(strconv.Itoa(u.Attempts))})
	}
	for k, v := range u.Headers {
		hs = append(hs, &corev3.HeaderValue{Key: strings.ToLower(k), RawValue: []byte(v)})
	}
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: hs}},
	}}
}

// RequestBody builds a request_body message.
func RequestBody(body []byte, endOfStream bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: body, EndOfStream: endOfStream},
	}}
}

// NoopServer is an ext_proc server that answers every message with an
// empty reply of the matching type (CONTINUE, no mutation). It is the
// baseline the router's benchmarks compare against: the cost of the
// protocol itself.
type NoopServer struct{}

var _ extprocv3.ExternalProcessorServer = NoopServer{}

// Process answers until the stream ends.
func (NoopServer) Process(srv grpc.BidiStreamingServer[extprocv3.ProcessingRequest, extprocv3.ProcessingResponse]) error {
	for {
		req, err := srv.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
				return nil
			}
			return err
		}
		var resp *extprocv3.ProcessingResponse
		switch req.Request.(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			resp = noopRequestHeaders
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			resp = noopResponseHeaders
		case *extprocv3.ProcessingRequest_RequestBody:
			resp = noopRequestBody
		case *extprocv3.ProcessingRequest_ResponseBody:
			resp = noopResponseBody
		case *extprocv3.ProcessingRequest_RequestTrailers:
			resp = noopRequestTrailers
		case *extprocv3.ProcessingRequest_ResponseTrailers:
			resp = noopResponseTrailers
		default:
			return status.Error(codes.InvalidArgument, "empty ProcessingRequest")
		}
		if err := srv.Send(resp); err != nil {
			return err
		}
	}
}

var (
	noopRequestHeaders   = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}}
	noopResponseHeaders  = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}}
	noopRequestBody      = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}}}
	noopResponseBody     = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}
	noopRequestTrailers  = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}
	noopResponseTrailers = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}
)
