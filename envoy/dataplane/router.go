package dataplane

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pve-migration/router/envoy"
)

// failKind is how an attempt failed before response headers, in the terms
// of Envoy's retry conditions.
type failKind int

const (
	failNone               failKind = iota
	failConnect                     // no connection (refused, unreachable, TLS): nothing was sent
	failResetBeforeRequest          // a connection, but the request headers never left
	failReset                       // the request may have reached the backend, then no response
	failPerTryTimeout               // per_try_timeout before response headers
	failGlobalTimeout               // the route timeout
	failClientGone                  // the downstream client went away
)

// routerConsumedKeys is routerConsumedHeaders as http.Header keys.
// http.Header.Del canonicalises its argument on every call, which for
// these lower-case names cost an allocation per name per request; the
// list is fixed, so that is done once.
var routerConsumedKeys = func() []string {
	keys := make([]string, len(routerConsumedHeaders))
	for i, name := range routerConsumedHeaders {
		keys[i] = http.CanonicalHeaderKey(name)
	}
	return keys
}()

// retryPolicy is the route's retry_policy plus the per-request x-envoy-*
// overrides the decision service may set (retry_state_impl.cc).
type retryPolicy struct {
	on          map[string]bool
	codes       []uint32
	headers     []string // retriable_headers names, plus x-envoy-retriable-header-names
	maxAttempts int
}

// headerRetry is Envoy's retriable-headers condition: a response header
// named in retriable_headers is present.
func (rp retryPolicy) headerRetry(resp *http.Response) bool {
	if resp == nil || !rp.on["retriable-headers"] {
		return false
	}
	for _, name := range rp.headers {
		if _, ok := resp.Header[http.CanonicalHeaderKey(name)]; ok {
			return true
		}
	}
	return false
}

func newRetryPolicy(plan envoy.RoutePlan, h http.Header) retryPolicy {
	rp := retryPolicy{on: map[string]bool{}, codes: plan.RetriableStatusCodes, headers: plan.RetriableHeaders}
	for n := range strings.SplitSeq(h.Get("X-Envoy-Retriable-Header-Names"), ",") {
		if n = strings.TrimSpace(n); n != "" {
			rp.headers = append(rp.headers, n)
		}
	}
	for _, t := range plan.RetryOn {
		rp.on[t] = true
	}
	// retry_on is the union of the route's and x-envoy-retry-on.
	if on := h.Get("X-Envoy-Retry-On"); on != "" {
		for t := range strings.SplitSeq(on, ",") {
			if t = strings.TrimSpace(t); t != "" {
				rp.on[t] = true
			}
		}
	}
	// The headers are checked for presence first: a failed ParseUint of
	// an absent header allocated its error on every request.
	if codes := h.Get("X-Envoy-Retriable-Status-Codes"); codes != "" {
		for c := range strings.SplitSeq(codes, ",") {
			if n, err := strconv.ParseUint(strings.TrimSpace(c), 10, 32); err == nil {
				rp.codes = append(rp.codes, uint32(n))
			}
		}
	}
	retries := int(plan.NumRetries)
	// x-envoy-max-retries takes precedence, but only where retries are on.
	if mr := h.Get("X-Envoy-Max-Retries"); mr != "" {
		if v, err := strconv.ParseUint(mr, 10, 32); err == nil && len(rp.on) > 0 {
			retries = int(v)
		}
	}
	if len(rp.on) == 0 {
		retries = 0
	}
	rp.maxAttempts = 1 + retries
	return rp
}

// retryReason says whether the attempt's outcome may be retried under the
// policy, and by which condition. These are Envoy's rules
// (retry_state_impl.cc wouldRetryFromHeaders / wouldRetryFromReset); what
// keeps a write from ever being replayed after rust may have applied it is
// that envoy.yaml's write route lists only connect-failure, refused-stream,
// reset-before-request and retriable-status-codes (501).
func (rp retryPolicy) retryReason(kind failKind, started bool, status int) (string, bool) {
	on := rp.on
	first := func(names ...string) (string, bool) {
		for _, n := range names {
			if on[n] {
				return n, true
			}
		}
		return "", false
	}
	switch kind {
	case failNone:
		switch {
		case on["retriable-status-codes"] && slices.Contains(rp.codes, uint32(status)):
			return "retriable-status-codes", true
		case on["5xx"] && status >= 500:
			return "5xx", true
		case on["gateway-error"] && status >= 502 && status <= 504:
			return "gateway-error", true
		case on["retriable-4xx"] && status == http.StatusConflict:
			return "retriable-4xx", true
		}
		return "", false
	case failConnect:
		return first("connect-failure", "reset-before-request", "reset", "5xx", "gateway-error")
	case failResetBeforeRequest:
		return first("reset-before-request", "reset", "5xx", "gateway-error")
	case failReset:
		return first("reset", "5xx", "gateway-error")
	case failPerTryTimeout:
		if !started && on["reset-before-request"] {
			return "reset-before-request", true
		}
		if _, ok := first("5xx", "gateway-error", "reset"); ok {
			return "per-try-timeout", true
		}
	}
	return "", false
}

// attemptResult is one upstream attempt.
type attemptResult struct {
	resp    *http.Response
	cancel  context.CancelFunc
	kind    failKind
	started bool // the request headers were handed to the connection
	errText string
	took    time.Duration
}

// route executes the plan: attempt 1 to the first available upstream
// (rust), retries under the retry policy to the next (perl).
func (q *request) route(plan envoy.RoutePlan) *upstreamResponse {
	p := q.p
	h := q.hs.h
	rp := newRetryPolicy(plan, h)
	timeout, perTry := plan.Timeout, plan.PerTryTimeout
	if d, ok := msHeader(h, "X-Envoy-Upstream-Rq-Timeout-Ms"); ok {
		timeout = d
	}
	if d, ok := msHeader(h, "X-Envoy-Upstream-Rq-Per-Try-Timeout-Ms"); ok {
		perTry = d
	}
	// Envoy ignores a per-try timeout that is not below the route timeout.
	if timeout > 0 && perTry >= timeout {
		perTry = 0
	}
	for _, key := range routerConsumedKeys {
		delete(h, key) // what h.Del would delete
	}
	if expected := cmpOr(perTry, timeout); expected > 0 {
		h.Set("X-Envoy-Expected-Rq-Timeout-Ms", strconv.FormatInt(expected.Milliseconds(), 10))
	}
	if q.upgrade {
		rp.maxAttempts = 1
	}
	body, canRetry := q.prepareBody(rp.maxAttempts > 1)
	if !canRetry {
		rp.maxAttempts = 1
	}

	var (
		ctx       context.Context
		cancelAll context.CancelFunc
	)
	if timeout > 0 && !q.upgrade {
		ctx, cancelAll = context.WithTimeout(q.r.Context(), timeout)
	} else {
		ctx, cancelAll = context.WithCancel(q.r.Context())
	}
	var last *backend
	for attempt := 1; ; attempt++ {
		be := q.pick(plan.Upstreams, attempt-1)
		if be == nil {
			cancelAll()
			lr := q.localResponse(http.StatusServiceUnavailable, "no healthy upstream", "no_healthy_upstream")
			lr.backend, lr.attempts = last, attempt
			return lr
		}
		last = be
		p.m.attempts.Add(1)
		res := q.attempt(ctx, be, perTry, body)
		if uf := p.cfg.clusters[plan.Cluster].upstreamExtProc; uf != nil && res.resp != nil {
			// The cluster's upstream filter chain sees the answer before
			// outlier detection and the retry check (envoy-facts §9).
			var left time.Duration
			if perTry > 0 {
				if left = perTry - res.took; left == 0 {
					left = -1 // already over
				}
			}
			if q.upstreamStage(uf, be, attempt, res.resp, left, res.cancel) {
				// The body stalled past the per-try timeout while the
				// stage held it: a per-try timeout, as in Envoy.
				closeQuietly(res.resp.Body)
				res.resp, res.kind, res.errText = nil, failPerTryTimeout, "per-try timeout"
			}
		}
		q.observe(be, res)
		reason, retry := rp.retryReason(res.kind, res.started, statusOf(res.resp))
		if !retry && res.kind == failNone && rp.headerRetry(res.resp) {
			reason, retry = "retriable-headers", true
		}
		if retry && attempt < rp.maxAttempts && ctx.Err() == nil {
			if res.resp != nil {
				// Envoy resets the upstream stream of a retried response.
				closeQuietly(res.resp.Body)
			}
			if res.cancel != nil {
				res.cancel()
			}
			p.m.retry(reason)
			if !retryBackoff(ctx) {
				res = attemptResult{kind: failGlobalTimeout}
				if q.r.Context().Err() != nil {
					res.kind = failClientGone
				}
			} else {
				continue
			}
		}
		if res.resp != nil {
			return &upstreamResponse{resp: res.resp, backend: be, attempts: attempt, upstreamTime: res.took,
				cancel: func() { res.cancel(); cancelAll() }}
		}
		if res.cancel != nil {
			res.cancel()
		}
		cancelAll()
		var lr *upstreamResponse
		switch res.kind {
		case failClientGone:
			lr = q.localResponse(499, "", "downstream_remote_disconnect")
			lr.clientGone = true
		case failPerTryTimeout:
			lr = q.localResponse(http.StatusGatewayTimeout, "upstream request timeout", "upstream_per_try_timeout")
		case failGlobalTimeout:
			lr = q.localResponse(http.StatusGatewayTimeout, "upstream request timeout", "upstream_response_timeout")
		case failConnect:
			lr = q.localResponse(http.StatusServiceUnavailable,
				"upstream connect error or disconnect/reset before headers. reset reason: connection failure",
				"upstream_reset_before_response_started{connection_failure}")
		default:
			lr = q.localResponse(http.StatusServiceUnavailable,
				"upstream connect error or disconnect/reset before headers. reset reason: connection termination",
				"upstream_reset_before_response_started{connection_termination}")
		}
		// Like Envoy, the local reply names the host of the last attempt
		// (%UPSTREAM_METADATA% of the selected host).
		lr.backend, lr.attempts = be, attempt
		return lr
	}
}

func statusOf(r *http.Response) int {
	if r == nil {
		return 0
	}
	return r.StatusCode
}

func cmpOr(a, b time.Duration) time.Duration {
	if a > 0 {
		return a
	}
	return b
}

// retryBackoff waits Envoy's default retry back-off before the first retry: a
// random time below base_interval (25 ms). It reports false if ctx ended.
func retryBackoff(ctx context.Context) bool {
	t := time.NewTimer(time.Duration(rand.Int64N(int64(25 * time.Millisecond))))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// msHeader parses an x-envoy-*-ms header; an invalid value is ignored, as
// in Envoy.
func msHeader(h http.Header, name string) (time.Duration, bool) {
	v := h.Get(name)
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 63)
	if err != nil {
		return 0, false
	}
	return time.Duration(n) * time.Millisecond, true
}

// pick is the composite cluster's choice for attempt idx: Upstreams[idx],
// or, when that cluster has no available host, the next one within the
// same attempt (composite_cluster_skip_clusters_without_hosts).
func (q *request) pick(upstreams []string, idx int) *backend {
	now := q.p.now()
	for j := idx; j < len(upstreams); j++ {
		if be := q.p.backends[upstreams[j]]; be != nil && be.available(now) {
			return be
		}
	}
	return nil
}

// observe feeds passive outlier detection.
func (q *request) observe(be *backend, res attemptResult) {
	now := q.p.now()
	var kind outcomeKind
	switch {
	case res.kind == failClientGone:
		return
	case res.kind != failNone:
		kind = outcomeGatewayError
	case res.resp.StatusCode >= 502 && res.resp.StatusCode <= 504:
		kind = outcomeGatewayError
		res.errText = fmt.Sprintf("HTTP %d", res.resp.StatusCode)
	case res.resp.StatusCode >= 500:
		kind = outcome5xx
		res.errText = fmt.Sprintf("HTTP %d", res.resp.StatusCode)
	default:
		kind = outcomeOK
	}
	if be.observe(kind, now, res.errText) {
		q.p.m.ejections.Add(1)
		q.p.log.Warn("backend ejected by outlier detection", "backend", be.name, "last_error", res.errText)
	}
}

// bodySource gives each attempt its request body.
type bodySource struct {
	buf    []byte // the whole body, replayable
	stream io.ReadCloser
	length int64 // -1: unknown (chunked)
}

func (b *bodySource) next() (io.ReadCloser, int64, func() (io.ReadCloser, error)) {
	if b == nil {
		return nil, 0, nil
	}
	if b.buf != nil || b.stream == nil {
		buf := b.buf
		getBody := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
		if len(buf) == 0 {
			return http.NoBody, 0, getBody
		}
		return io.NopCloser(bytes.NewReader(buf)), int64(len(buf)), getBody
	}
	s := b.stream
	b.stream = nil
	return s, b.length, nil
}

// prepareBody decides how the request body travels: already buffered (the
// decision service asked for it), buffered now because a retry may need it
// (up to RetryBufferBytes), or streamed with no retry (Envoy: "exceeds
// buffer limit. Give up on the retry").
func (q *request) prepareBody(retries bool) (*bodySource, bool) {
	if q.buffered {
		return &bodySource{buf: q.body}, true
	}
	if !q.hasBody {
		return nil, true
	}
	r := q.r
	if !retries || q.p.retryBuf < 0 || r.ContentLength > q.p.retryBuf {
		_ = http.NewResponseController(q.w).EnableFullDuplex()
		return &bodySource{stream: r.Body, length: r.ContentLength}, !retries
	}
	prefix, err := io.ReadAll(io.LimitReader(r.Body, q.p.retryBuf+1))
	if err != nil {
		// The client's body broke off: stream what is left so the
		// backend sees the same truncated request, and never retry.
		return &bodySource{stream: readCloser{io.MultiReader(bytes.NewReader(prefix), r.Body), r.Body}, length: r.ContentLength}, false
	}
	if int64(len(prefix)) > q.p.retryBuf {
		_ = http.NewResponseController(q.w).EnableFullDuplex()
		return &bodySource{stream: readCloser{io.MultiReader(bytes.NewReader(prefix), r.Body), r.Body}, length: r.ContentLength}, false
	}
	q.body, q.buffered = prefix, true
	return &bodySource{buf: prefix}, true
}

type readCloser struct {
	io.Reader
	io.Closer
}

// attempt sends the request to be once. httptrace tells how far it got,
// which is what makes retrying a write safe: a failure without a
// connection, or with a connection but before the request headers were
// written, cannot have changed anything on the backend.
func (q *request) attempt(ctx context.Context, be *backend, perTry time.Duration, body *bodySource) attemptResult {
	actx, acancel := context.WithCancel(ctx)
	var perTryFired, gotConn, wroteHeaders atomic.Bool
	trace := &httptrace.ClientTrace{
		// Once headers were written on any connection, the attempt has
		// started for good: never reset it, or a hidden transport retry
		// that failed early would make a received write look unsent.
		GotConn:      func(httptrace.GotConnInfo) { gotConn.Store(true) },
		WroteHeaders: func() { wroteHeaders.Store(true) },
	}
	target, err := url.Parse(be.base.Scheme + "://" + be.base.Host + q.hs.pseudo[":path"])
	if err != nil {
		acancel()
		return attemptResult{kind: failResetBeforeRequest, errText: "invalid request path"}
	}
	out := (&http.Request{
		Method:     q.hs.pseudo[":method"],
		URL:        target,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     q.hs.h.Clone(),
		Host:       q.hs.pseudo[":authority"],
	}).WithContext(httptrace.WithClientTrace(actx, trace))
	out.Header.Del("Content-Length")
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // no Go default User-Agent
	}
	if q.upgrade {
		out.Header.Set("Connection", "Upgrade")
		out.Header.Set("Upgrade", q.r.Header.Get("Upgrade"))
	}
	if b, n, getBody := body.next(); b != nil {
		out.Body, out.ContentLength, out.GetBody = b, n, getBody
	}
	if out.Method != http.MethodGet && out.Method != http.MethodHead {
		// net/http replays a request on a fresh connection when a reused
		// one dies, if it thinks the request is idempotent, and a client's
		// Idempotency-Key makes it think so even for a DELETE without a
		// body. Only this code may decide to send a write again: without
		// GetBody the transport cannot rewind a body, and
		// be.roundTripper sends a write on a connection that was never
		// used before, where the transport never retries at all.
		out.GetBody = nil
	}
	var timer *time.Timer
	if perTry > 0 {
		timer = time.AfterFunc(perTry, func() {
			perTryFired.Store(true)
			acancel()
		})
	}
	start := q.p.now()
	resp, err := be.roundTripper(out.Method).RoundTrip(out)
	if timer != nil {
		timer.Stop()
	}
	res := attemptResult{cancel: acancel, started: wroteHeaders.Load(), took: q.p.now().Sub(start)}
	if err == nil && !perTryFired.Load() {
		res.resp = resp
		return res
	}
	if resp != nil {
		closeQuietly(resp.Body)
	}
	switch {
	case perTryFired.Load():
		res.kind, res.errText = failPerTryTimeout, "per-try timeout"
	case q.r.Context().Err() != nil:
		res.kind, res.errText = failClientGone, "client went away"
	case ctx.Err() != nil:
		res.kind, res.errText = failGlobalTimeout, "route timeout"
	case !gotConn.Load():
		res.kind, res.errText = failConnect, transportErrorText(err)
	case !res.started:
		res.kind, res.errText = failResetBeforeRequest, transportErrorText(err)
	default:
		res.kind, res.errText = failReset, transportErrorText(err)
	}
	return res
}

// switchProtocols finishes a websocket upgrade: the 101 goes to the client
// on the hijacked connection and bytes are copied both ways until either
// side closes.
func (q *request) switchProtocols(resp *http.Response) {
	up, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		q.writeLocal(http.StatusBadGateway, "", "upgrade_failed")
		return
	}
	defer closeQuietly(up)
	conn, brw, err := http.NewResponseController(q.w).Hijack()
	if err != nil {
		q.writeLocal(http.StatusInternalServerError, "", "upgrade_hijack_failed")
		return
	}
	defer closeQuietly(conn)
	_ = conn.SetDeadline(time.Time{})
	q.p.trackConn(conn, true)
	defer q.p.trackConn(conn, false)
	q.p.m.upgrades.Add(1)
	q.rec.Status = http.StatusSwitchingProtocols
	if err := writeSwitching(brw.Writer, resp.Header); err != nil {
		return
	}
	errc := make(chan error, 2)
	go func() {
		_, err := io.Copy(up, brw.Reader)
		errc <- err
	}()
	go func() {
		_, err := io.Copy(conn, up)
		errc <- err
	}()
	<-errc
	// One side is done: closing both (deferred) ends the other copy.
	_ = conn.Close()
	_ = up.Close()
	<-errc
}

func writeSwitching(w *bufio.Writer, h http.Header) error {
	if _, err := io.WriteString(w, "HTTP/1.1 101 Switching Protocols\r\n"); err != nil {
		return err
	}
	if err := h.Write(w); err != nil {
		return err
	}
	if _, err := io.WriteString(w, "\r\n"); err != nil {
		return err
	}
	return w.Flush()
}
