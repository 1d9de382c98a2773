package dataplane

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	ext_procv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pve-migration/router/envoy"
)

// externalOnlyHeaders are the x-envoy-* request headers Envoy removes from
// external requests before any filter runs (header_sanitizing.rst,
// conn_manager_utility.cc cleanInternalHeaders; envoy-facts §3). A client
// must not be able to set its own retry or timeout policy.
var externalOnlyHeaders = []string{
	"x-envoy-decorator-operation", "x-envoy-downstream-service-cluster",
	"x-envoy-downstream-service-node", "x-envoy-expected-rq-timeout-ms",
	"x-envoy-external-address", "x-envoy-force-trace", "x-envoy-internal",
	"x-envoy-ip-tags", "x-envoy-max-retries", "x-envoy-retry-grpc-on",
	"x-envoy-retry-on", "x-envoy-upstream-alt-stat-name",
	"x-envoy-upstream-rq-per-try-timeout-ms", "x-envoy-upstream-rq-timeout-alt-response",
	"x-envoy-upstream-rq-timeout-ms", "x-envoy-retriable-status-codes",
	"x-envoy-retriable-header-names", "x-envoy-original-url",
	"x-envoy-hedge-on-per-try-timeout",
}

// routerConsumedHeaders are the request headers Envoy's router reads and
// then removes before forwarding (router.cc), plus x-pve-backend, which
// every route in envoy.yaml lists in request_headers_to_remove.
var routerConsumedHeaders = []string{
	"x-envoy-retry-on", "x-envoy-retry-grpc-on", "x-envoy-max-retries",
	"x-envoy-retriable-status-codes", "x-envoy-retriable-header-names",
	"x-envoy-upstream-rq-timeout-ms", "x-envoy-upstream-rq-per-try-timeout-ms",
	"x-envoy-upstream-rq-timeout-alt-response", "x-envoy-hedge-on-per-try-timeout",
	"x-pve-backend",
}

// hopByHop are the connection-level headers an HTTP/1.1 proxy never forwards
// (RFC 9110 7.6.1); Envoy's codec drops them too.
var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// remoteCloseTimeout is Envoy's ext_proc remote_close_timeout_milliseconds
// default: how long a finished stream waits for the server to return.
const remoteCloseTimeout = time.Second

// request is one downstream request on its way through the data plane.
type request struct {
	p     *Proxy
	w     http.ResponseWriter
	r     *http.Request
	start time.Time
	rec   AccessRecord

	hs       *headerSet // the request headers as Envoy's filters see them
	upgrade  bool       // a websocket upgrade
	hasBody  bool
	body     []byte // the whole body, once buffered
	buffered bool

	ep       *extProcStream
	epActive bool // the ext_proc stream is in use for this request
}

// ServeHTTP handles one request in Envoy's order: sanitise, ext_proc request
// headers (and body, if the service asks), route, upstream attempts with
// retries, ext_proc response headers, then stream the response.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.m.requests.Add(1)
	p.m.active.Add(1)
	defer p.m.active.Add(-1)
	q := &request{p: p, w: w, r: r, start: p.now()}
	defer q.finish()
	q.serve()
}

func (q *request) finish() {
	if q.ep != nil {
		q.ep.finish(remoteCloseTimeout)
	}
	q.rec.Duration = q.p.now().Sub(q.start)
	lvl := slog.LevelDebug
	if q.rec.LocalReply && q.rec.Status >= 500 || q.rec.FailOpen {
		lvl = slog.LevelWarn
	}
	// Ask first: building the attributes boxes a dozen values per request
	// even when the handler then drops the record (the usual Debug case).
	if ctx := context.Background(); q.p.log.Enabled(ctx, lvl) {
		q.p.log.LogAttrs(ctx, lvl, "dataplane request", slog.String("method", q.rec.Method), slog.String("path", q.rec.Path),
			slog.Int("status", q.rec.Status), slog.String("route", q.rec.Route), slog.String("decision", q.rec.Decision),
			slog.String("served_by", q.rec.ServedBy), slog.Int("attempts", q.rec.Attempts), slog.Bool("local_reply", q.rec.LocalReply),
			slog.String("details", q.rec.Details), slog.Bool("fail_open", q.rec.FailOpen), slog.String("request_id", q.rec.RequestID),
			slog.Duration("duration", q.rec.Duration))
	}
	if q.p.opts.AccessLog != nil {
		q.p.opts.AccessLog(q.rec)
	}
}

func (q *request) serve() {
	p, r := q.p, q.r
	// (a) What Envoy's HCM does before any filter: codec hop-by-hop
	// handling, early header mutation (x-pve-backend), sanitising of
	// external requests (x-envoy-*), x-forwarded-*, x-request-id and path
	// normalisation.
	q.upgrade = p.cfg.websocket && isWebsocketUpgrade(r)
	h := r.Header.Clone()
	for _, name := range connectionHeaders(h) {
		h.Del(name)
	}
	// The hop-by-hop headers; Expect, because Envoy answers
	// "Expect: 100-continue" itself and does not forward it
	// (proxy_100_continue off; Go's server sends the 100 when the body is
	// first read); the early header mutation; the x-envoy-* headers of
	// external requests; internal_only_headers. p.sanitize holds them as
	// canonical keys, because h.Del canonicalises (and allocates for) each
	// lower-case name on every request.
	for _, key := range p.sanitize {
		delete(h, key)
	}
	if q.upgrade {
		// Envoy keeps Upgrade and Connection on a request it upgrades:
		// route matchers (envoy.yaml's rust routes exclude upgrades) and
		// ext_proc see them.
		h.Set("Upgrade", r.Header.Get("Upgrade"))
		h.Set("Connection", "Upgrade")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p.cfg.useRemoteAddress {
		if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			if prior := h.Values("X-Forwarded-For"); len(prior) > 0 {
				h.Set("X-Forwarded-For", strings.Join(prior, ", ")+", "+ip)
			} else {
				h.Set("X-Forwarded-For", ip)
			}
			h.Set("X-Envoy-External-Address", ip)
		}
		h.Set("X-Forwarded-Proto", scheme)
	}
	// At the edge (use_remote_address) Envoy replaces a client's
	// x-request-id unless preserve_external_request_id is set.
	if h.Get("X-Request-Id") == "" || (p.cfg.useRemoteAddress && !p.cfg.preserveRequestID) {
		h.Set("X-Request-Id", newRequestID())
	}
	path := r.RequestURI
	if r.URL.IsAbs() || path == "" {
		path = r.URL.RequestURI()
	}
	if p.cfg.normalizePath || p.cfg.mergeSlashes {
		path = normalizeRequestPath(path, p.cfg.normalizePath, p.cfg.mergeSlashes)
	}
	q.hs = &headerSet{h: h, pseudo: map[string]string{
		":method": r.Method, ":path": path, ":authority": r.Host, ":scheme": scheme,
	}}
	q.hasBody = requestHasBody(r)
	q.rec = AccessRecord{Start: q.start, Method: r.Method, Path: pathOnly(path), RequestID: h.Get("X-Request-Id")}
	if max := p.cfg.maxHeadersCount; max > 0 && requestHeaderCount(r) > max {
		// Envoy's HTTP/1 codec refuses a request with more than
		// max_headers_count headers (default 100) before any filter
		// runs. pveproxy itself accepts at most 64 header lines.
		q.writeLocal(http.StatusRequestHeaderFieldsTooLarge, "", "http1.too_many_headers")
		return
	}
	if strings.IndexByte(path, '#') >= 0 {
		// Envoy rejects a fragment in the request target. Forwarding it
		// would let the decision service and the backend cut the target
		// at different places ("#?type=eth" is a query to one, a fragment
		// to the other).
		q.writeLocal(http.StatusBadRequest, "", "http1.invalid_url")
		return
	}

	// Envoy selects (and caches) the route before any filter runs; with
	// the client's x-pve-backend gone that is the perl route, which is
	// where a request stays if ext_proc fails open.
	plan, planOK := p.match(q.hs)

	// (b) ext_proc: request headers, and the body if the service asks.
	if p.cfg.mode.requestHeaders {
		q.ep = newExtProcStream(r.Context(), p.opts.ExtProc, p.ep.MessageTimeout, initialMetadata(p.cfg.initialMetadata, q.hs))
		stop := context.AfterFunc(r.Context(), q.ep.cancel)
		defer stop()
		q.epActive = true
		clear, mode, done := q.requestHeadersPhase()
		if done {
			return
		}
		if clear {
			plan, planOK = p.match(q.hs)
		}
		if q.epActive && mode.requestBody == ext_procv3.ProcessingMode_BUFFERED && q.hasBody && !q.upgrade {
			clear, done := q.requestBodyPhase()
			if done {
				return
			}
			if clear {
				plan, planOK = p.match(q.hs)
			}
		}
		if q.epActive && !mode.responseHeaders {
			q.ep.finish(remoteCloseTimeout)
			q.epActive = false
		}
	}
	q.rec.Decision, _ = q.hs.get("x-pve-backend")

	// (c) route on the mutated headers, (d) upstream attempts.
	if !planOK {
		q.respond(q.localResponse(http.StatusNotFound, "", "route_not_found"))
		return
	}
	q.rec.Route = plan.Name
	// (e) response: ext_proc response headers, then stream to the client.
	q.respond(q.route(plan))
}

// match runs the route table on the current headers.
func (p *Proxy) match(hs *headerSet) (envoy.RoutePlan, bool) {
	return p.routes.Match(hs.pseudo[":method"], hs.pseudo[":path"], hs.routeMap(p.routeHeaders))
}

// failExtProc applies failure_mode_allow to an ext_proc error: it reports
// whether the request must end with a local reply (written here).
func (q *request) failExtProc(err error) (done bool) {
	p := q.p
	q.epActive = false
	switch {
	case errors.Is(err, errExtProcClosed):
		// The server ended the stream with OK: carry on without ext_proc.
		return false
	case errors.Is(err, errExtProcTimeout):
		p.m.extProcTimeouts.Add(1)
	default:
		p.m.extProcErrors.Add(1)
	}
	if p.ep.FailureModeAllow && !errors.Is(err, errInvalidMutation) {
		p.m.failOpen.Add(1)
		q.rec.FailOpen = true
		p.log.Warn("ext_proc failed, continuing without a decision (failure_mode_allow)",
			"reason", extProcReason(err), "request_id", q.rec.RequestID)
		return false
	}
	status := p.cfg.statusOnError
	if errors.Is(err, errExtProcTimeout) {
		status = http.StatusGatewayTimeout // hard-coded in Envoy since 1.31
	}
	q.writeLocal(status, "", "ext_proc_error_"+extProcReason(err))
	return true
}

func extProcReason(err error) string {
	switch {
	case errors.Is(err, errExtProcTimeout):
		return "per-message_timeout_exceeded"
	case errors.Is(err, errExtProcSpurious):
		return "spurious_message"
	case errors.Is(err, errInvalidMutation):
		return "invalid_mutation"
	default:
		return "gRPC_error"
	}
}

// requestHeadersPhase sends request_headers and applies the answer. clear
// says the route must be chosen again; mode is the processing mode from now
// on; done says a local reply was written.
func (q *request) requestHeadersPhase() (clear bool, mode processingMode, done bool) {
	p := q.p
	mode = p.cfg.mode
	req := &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers:     q.hs.proto(),
			EndOfStream: !q.hasBody,
		}},
		ProtocolConfig: &extprocv3.ProtocolConfiguration{RequestBodyMode: mode.requestBody, ResponseBodyMode: mode.responseBody},
	}
	if attrs := q.requestAttributes(); attrs != nil {
		req.Attributes = map[string]*structpb.Struct{"envoy.filters.http.ext_proc": attrs}
	}
	resp, err := q.ep.exchange(req)
	if err != nil {
		return false, mode, q.failExtProc(err)
	}
	switch rr := resp.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders:
		common := rr.RequestHeaders.GetResponse()
		if err := applyMutation(common.GetHeaderMutation(), q.hs, p.cfg.checker, q.rejected); err != nil {
			return false, mode, q.failExtProc(err)
		}
		if bm := common.GetBodyMutation(); bm != nil && common.GetStatus() == extprocv3.CommonResponse_CONTINUE_AND_REPLACE {
			q.replaceBody(bm)
		}
		clear = q.clearsRoute(common)
		if ov := resp.GetModeOverride(); ov != nil && p.ep.AllowModeOverride && q.overrideAllowed(ov) {
			mode = modeFrom(ov)
			// request_header_mode cannot be overridden (it already ran).
			mode.requestHeaders = true
		}
		if common.GetStatus() == extprocv3.CommonResponse_CONTINUE_AND_REPLACE {
			mode.requestBody = ext_procv3.ProcessingMode_NONE
		}
		return clear, mode, false
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		if p.cfg.disableImmediate {
			return false, mode, q.failExtProc(errExtProcSpurious)
		}
		q.immediate(rr.ImmediateResponse)
		return false, mode, true
	default:
		q.ep.fail()
		return false, mode, q.failExtProc(errExtProcSpurious)
	}
}

// overrideAllowed implements allowed_override_modes: an empty list allows
// any override; otherwise the override must equal one entry in every field
// but request_header_mode.
func (q *request) overrideAllowed(ov *ext_procv3.ProcessingMode) bool {
	if len(q.p.cfg.allowedOverrides) == 0 {
		return true
	}
	m := modeFrom(ov)
	for _, a := range q.p.cfg.allowedOverrides {
		if a.responseHeaders == m.responseHeaders && a.requestBody == m.requestBody && a.responseBody == m.responseBody {
			return true
		}
	}
	return false
}

// clearsRoute is processor_state.cc clearRouteCache: only a response with a
// header mutation can clear the route cache; route_cache_action CLEAR
// always clears then, DEFAULT only with clear_route_cache.
func (q *request) clearsRoute(c *extprocv3.CommonResponse) bool {
	if c.GetHeaderMutation() == nil || q.p.cfg.routeCacheRetain {
		return false
	}
	return q.p.cfg.routeCacheClear || c.GetClearRouteCache()
}

func (q *request) rejected() { q.p.m.rejected.Add(1) }

// requestBodyPhase buffers the body (413 past the limit, as Envoy) and
// sends it as one request_body message with end_of_stream.
func (q *request) requestBodyPhase() (clear, done bool) {
	p := q.p
	if !q.buffered {
		if q.r.ContentLength > p.maxBody {
			q.writeLocal(http.StatusRequestEntityTooLarge, "Payload Too Large", "request_payload_too_large")
			return false, true
		}
		b, err := io.ReadAll(io.LimitReader(q.r.Body, p.maxBody+1))
		if err != nil {
			q.writeLocal(http.StatusBadRequest, "", "downstream_body_read_error")
			return false, true
		}
		if int64(len(b)) > p.maxBody {
			q.writeLocal(http.StatusRequestEntityTooLarge, "Payload Too Large", "request_payload_too_large")
			return false, true
		}
		q.body, q.buffered = b, true
	}
	resp, err := q.ep.exchange(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: q.body, EndOfStream: true},
	}})
	if err != nil {
		return false, q.failExtProc(err)
	}
	switch rr := resp.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_RequestBody:
		common := rr.RequestBody.GetResponse()
		if err := applyMutation(common.GetHeaderMutation(), q.hs, p.cfg.checker, q.rejected); err != nil {
			return false, q.failExtProc(err)
		}
		if bm := common.GetBodyMutation(); bm != nil {
			q.replaceBody(bm)
		}
		return q.clearsRoute(common), false
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		if p.cfg.disableImmediate {
			return false, q.failExtProc(errExtProcSpurious)
		}
		q.immediate(rr.ImmediateResponse)
		return false, true
	default:
		q.ep.fail()
		return false, q.failExtProc(errExtProcSpurious)
	}
}

func (q *request) replaceBody(bm *extprocv3.BodyMutation) {
	switch m := bm.GetMutation().(type) {
	case *extprocv3.BodyMutation_Body:
		q.body, q.buffered = m.Body, true
	case *extprocv3.BodyMutation_ClearBody:
		if m.ClearBody {
			q.body, q.buffered = nil, true
		}
	default:
		return
	}
	q.hasBody = len(q.body) > 0
	q.hs.h.Set("Content-Length", strconv.Itoa(len(q.body)))
}

// immediate writes an ext_proc immediate_response as Envoy's local reply.
func (q *request) immediate(ir *extprocv3.ImmediateResponse) {
	status := int(ir.GetStatus().GetCode())
	if status < 200 || status > 599 {
		status = http.StatusOK
	}
	hs := &headerSet{h: http.Header{}, pseudo: map[string]string{}}
	if err := applyMutation(ir.GetHeaders(), hs, q.p.cfg.checker, q.rejected); err != nil {
		q.writeLocal(q.p.cfg.statusOnError, "", "ext_proc_error_invalid_mutation")
		return
	}
	q.epActive = false
	for k, vs := range hs.h {
		q.w.Header()[k] = vs
	}
	q.writeLocal(status, string(ir.GetBody()), "ext_proc_immediate_response")
}

// writeLocal writes a local reply straight to the client: for answers that
// Envoy gives before the router (ext_proc failures, 413) and that do not
// pass ext_proc's response path.
func (q *request) writeLocal(status int, body, details string) {
	q.p.m.localReply(status)
	q.rec.Status, q.rec.LocalReply, q.rec.Details = status, true, details
	h := q.w.Header()
	if body != "" {
		h.Set("Content-Type", "text/plain")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	q.w.WriteHeader(status)
	if q.r.Method != http.MethodHead {
		_, _ = io.WriteString(q.w, body)
	}
}

// upstreamResponse is the final response of the router: from a backend, or
// a local reply (404, 503, 504) that still passes response_headers_to_add
// and ext_proc's response path, as Envoy's router local replies do.
type upstreamResponse struct {
	resp     *http.Response
	backend  *backend // the backend of the last attempt, nil if none
	attempts int
	local    bool
	details  string
	cancel   context.CancelFunc // ends the attempt context after the body
	// upstreamTime is x-envoy-upstream-service-time.
	upstreamTime time.Duration
	// clientGone: the client went away; nothing is written.
	clientGone bool
}

func (q *request) localResponse(status int, body, details string) *upstreamResponse {
	h := http.Header{}
	if body != "" {
		h.Set("Content-Type", "text/plain")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	return &upstreamResponse{
		resp:    &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body))},
		local:   true,
		details: details,
	}
}

// respond finishes the response: response_headers_to_add and the attempt
// count, the ext_proc response_headers exchange, then headers and a
// streamed body to the client.
func (q *request) respond(u *upstreamResponse) {
	p := q.p
	defer func() {
		if u.cancel != nil {
			u.cancel()
		}
	}()
	if u.clientGone {
		q.rec.Details = u.details
		return
	}
	resp := u.resp
	defer closeQuietly(resp.Body)
	rh := resp.Header
	for _, name := range connectionHeaders(rh) {
		rh.Del(name)
	}
	isUpgrade := resp.StatusCode == http.StatusSwitchingProtocols
	for _, name := range hopByHop {
		if isUpgrade && (name == "Connection" || name == "Upgrade") {
			continue
		}
		rh.Del(name)
	}
	for _, name := range p.cfg.respHeadersToRemove {
		rh.Del(name)
	}
	if !u.local && u.upstreamTime > 0 {
		rh.Set("X-Envoy-Upstream-Service-Time", strconv.FormatInt(u.upstreamTime.Milliseconds(), 10))
	}
	for _, ha := range p.cfg.respHeadersToAdd {
		v := ha.value
		if ha.metaKey != "" {
			v = ""
			if u.backend != nil && ha.metaNS == "pve" && ha.metaKey == "backend" {
				v = u.backend.name
			}
		}
		if v == "" {
			continue // keep_empty_value false
		}
		if ha.overwrite {
			rh.Set(ha.name, v)
		} else {
			rh.Add(ha.name, v)
		}
	}
	if p.cfg.attemptCountResp && u.attempts > 0 {
		rh.Set("X-Envoy-Attempt-Count", strconv.Itoa(u.attempts))
	}
	q.rec.Attempts = u.attempts
	q.rec.LocalReply, q.rec.Details = u.local, u.details
	if u.backend != nil {
		q.rec.ServedBy = u.backend.name
	}

	status := resp.StatusCode
	if q.epActive {
		hs := &headerSet{h: rh, pseudo: map[string]string{":status": strconv.Itoa(status)}}
		req := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
			ResponseHeaders: &extprocv3.HttpHeaders{Headers: hs.proto(), EndOfStream: q.r.Method == http.MethodHead || resp.ContentLength == 0},
		}}
		if attrs := q.responseAttributes(u, status); attrs != nil {
			req.Attributes = map[string]*structpb.Struct{"envoy.filters.http.ext_proc": attrs}
		}
		ans, err := q.ep.exchange(req)
		if err == nil {
			switch rr := ans.GetResponse().(type) {
			case *extprocv3.ProcessingResponse_ResponseHeaders:
				err = applyMutation(rr.ResponseHeaders.GetResponse().GetHeaderMutation(), hs, p.cfg.checker, q.rejected)
			case *extprocv3.ProcessingResponse_ImmediateResponse:
				if !p.cfg.disableImmediate {
					q.immediate(rr.ImmediateResponse)
					return
				}
				err = errExtProcSpurious
			default:
				q.ep.fail()
				err = errExtProcSpurious
			}
		}
		if err != nil && q.failExtProc(err) {
			return
		}
		q.ep.finish(remoteCloseTimeout)
		q.epActive = false
	}

	if u.backend != nil && !u.local {
		p.m.served(u.backend.name)
	}
	if u.local {
		p.m.localReply(status)
	}
	if isUpgrade {
		q.switchProtocols(resp)
		return
	}
	dst := q.w.Header()
	for k, vs := range rh {
		dst[k] = vs
	}
	q.rec.Status = status
	q.w.WriteHeader(status)
	if q.r.Method == http.MethodHead {
		return
	}
	if err := copyFlushing(q.w, resp.Body); err != nil {
		if errors.Is(err, errClientWrite) {
			return // the client went away; nothing to tell it
		}
		// The backend broke off (or the route timeout fired) mid-body:
		// reset the client connection like Envoy, instead of ending the
		// response cleanly and truncated.
		q.rec.Details = "upstream_reset_after_response_started"
		panic(http.ErrAbortHandler)
	}
}

var errClientWrite = errors.New("client write failed")

// copyBufs recycles copyFlushing's buffers: a fresh 32 KiB per request was
// a third of all the bytes the data plane allocated, and the GC work that
// came with it. A buffer never leaves copyFlushing, so reuse is safe.
var copyBufs = sync.Pool{New: func() any { return new([32 << 10]byte) }}

// copyFlushing streams src to w, flushing after every read so long-polling
// (task logs, /cluster/tasks) reaches the client as it is produced.
func copyFlushing(w http.ResponseWriter, src io.Reader) error {
	rc := http.NewResponseController(w)
	bp := copyBufs.Get().(*[32 << 10]byte)
	defer copyBufs.Put(bp)
	buf := bp[:]
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return errClientWrite
			}
			if ferr := rc.Flush(); ferr != nil && !errors.Is(ferr, http.ErrNotSupported) {
				return errClientWrite
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// requestAttributes evaluates the ext_proc filter's request_attributes.
func (q *request) requestAttributes() *structpb.Struct {
	if len(q.p.cfg.requestAttrs) == 0 {
		return nil
	}
	s := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for _, a := range q.p.cfg.requestAttrs {
		if v := q.attribute(a, nil, 0); v != nil {
			s.Fields[a] = v
		}
	}
	return s
}

// responseAttributes evaluates response_attributes for the final response.
func (q *request) responseAttributes(u *upstreamResponse, status int) *structpb.Struct {
	if len(q.p.cfg.responseAttrs) == 0 {
		return nil
	}
	s := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for _, a := range q.p.cfg.responseAttrs {
		if v := q.attribute(a, u, status); v != nil {
			s.Fields[a] = v
		}
	}
	return s
}

// attribute evaluates one Envoy attribute the way ext_proc serialises CEL
// values (matching_utils.cc evaluateAttributes): integers as numbers,
// messages as their text form, everything else as strings. An attribute
// Envoy could not evaluate is left out.
func (q *request) attribute(name string, u *upstreamResponse, status int) *structpb.Value {
	switch name {
	case "source.address":
		return structpb.NewStringValue(q.r.RemoteAddr)
	case "source.port":
		if _, port, err := net.SplitHostPort(q.r.RemoteAddr); err == nil {
			if n, err := strconv.Atoi(port); err == nil {
				return structpb.NewNumberValue(float64(n))
			}
		}
	case "request.path":
		return structpb.NewStringValue(q.hs.pseudo[":path"])
	case "request.url_path":
		return structpb.NewStringValue(pathOnly(q.hs.pseudo[":path"]))
	case "request.method":
		return structpb.NewStringValue(q.hs.pseudo[":method"])
	case "request.host":
		return structpb.NewStringValue(q.hs.pseudo[":authority"])
	case "request.scheme":
		return structpb.NewStringValue(q.hs.pseudo[":scheme"])
	case "request.id":
		return structpb.NewStringValue(q.rec.RequestID)
	case "xds.route_name":
		if q.rec.Route != "" {
			return configString(q.rec.Route)
		}
	}
	if u == nil {
		return nil
	}
	switch name {
	case "response.code":
		return numberValue(status)
	case "upstream.address":
		if u.backend != nil {
			return configString(u.backend.base.Host)
		}
	case "upstream.request_attempt_count":
		return numberValue(u.attempts)
	case "xds.upstream_host_metadata":
		if u.backend != nil {
			return configString(u.backend.hostMetadata)
		}
	case "xds.cluster_name":
		if u.backend != nil {
			return configString(u.backend.cluster)
		}
	}
	return nil
}

// connectionHeaders lists the headers named in Connection, which are
// hop-by-hop for this connection only.
func connectionHeaders(h http.Header) []string {
	var out []string
	for _, v := range h["Connection"] {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out = append(out, f)
			}
		}
	}
	return out
}

func isWebsocketUpgrade(r *http.Request) bool {
	return httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade") &&
		strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// requestHeaderCount counts the request's header lines as Envoy's codec
// does: Host plus every other header value.
func requestHeaderCount(r *http.Request) int {
	n := 1 // Host
	for _, vs := range r.Header {
		n += len(vs)
	}
	return n
}

// requestHasBody reports whether the request carries a body (Envoy's
// end_of_stream on the request headers is its negation).
func requestHasBody(r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return false
	}
	return r.ContentLength != 0
}

func pathOnly(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		return p[:i]
	}
	return p
}

// newRequestID returns a random UUID v4, the form Envoy's x-request-id has.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	const hexdig = "0123456789abcdef"
	var out bytes.Buffer
	out.Grow(36)
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out.WriteByte('-')
		}
		out.WriteByte(hexdig[c>>4])
		out.WriteByte(hexdig[c&0xf])
	}
	return out.String()
}

// normalizeRequestPath does what Envoy's normalize_path (RFC 3986 dot
// segments, percent-encoded unreserved characters decoded, escapes
// upper-cased) and merge_slashes do to :path. The query is kept as is, and
// so are encoded slashes (path_with_escaped_slashes_action KEEP_UNCHANGED).
// A path Envoy would reject (not starting with "/") is returned unchanged,
// and so is a path with an invalid percent-escape: decoding around a bad
// escape can create a new one ("/%%370" would become "/%70"), which the
// decision service and the backend would then decode a second time, each
// in its own way. Unchanged, the service refuses to classify it
// (routing.NormalizePath) and it goes to perl.
func normalizeRequestPath(p string, normalize, merge bool) string {
	path, query, hasQuery := strings.Cut(p, "?")
	if path == "" || path[0] != '/' {
		return p
	}
	if normalize && !validEscapes(path) {
		return p
	}
	if normalize {
		var b strings.Builder
		for i := 0; i < len(path); i++ {
			c := path[i]
			if c == '%' && i+2 < len(path) && isHex(path[i+1]) && isHex(path[i+2]) {
				d := unhex(path[i+1])<<4 | unhex(path[i+2])
				if isUnreservedByte(d) {
					b.WriteByte(d)
				} else {
					b.WriteByte('%')
					b.WriteString(strings.ToUpper(path[i+1 : i+3]))
				}
				i += 2
				continue
			}
			b.WriteByte(c)
		}
		path = b.String()
	}
	if merge {
		for strings.Contains(path, "//") {
			path = strings.ReplaceAll(path, "//", "/")
		}
	}
	if normalize {
		path = removeDotSegments(path)
	}
	if hasQuery {
		return path + "?" + query
	}
	return path
}

// validEscapes reports whether every "%" in p starts a %XX escape.
func validEscapes(p string) bool {
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			continue
		}
		if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
			return false
		}
		i += 2
	}
	return true
}

// removeDotSegments is RFC 3986 5.2.4; a trailing slash is kept.
func removeDotSegments(p string) string {
	segs := strings.Split(p[1:], "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	return "/" + strings.Join(out, "/")
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func isUnreservedByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// sanitizeKeys is every name serve removes from a client request before
// ext_proc, as http.Header keys, computed once in New.
func sanitizeKeys(cfg *envoyConfig) []string {
	var keys []string
	for _, list := range [][]string{hopByHop, {"Expect"}, cfg.earlyRemove, externalOnlyHeaders, cfg.internalOnly} {
		for _, name := range list {
			if k := http.CanonicalHeaderKey(name); !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	return keys
}
