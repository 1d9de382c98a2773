package dataplane

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/pve-migration/router/envoy"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	ext_procv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	upstreamcodecv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/upstream_codec/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// httpProtocolOptionsKey is where a cluster keeps its HttpProtocolOptions,
// and with them its upstream HTTP filter chain.
const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// upstreamExtProc is an ext_proc filter in a cluster's upstream HTTP filter
// chain (HttpProtocolOptions.http_filters): Envoy runs it on every attempt
// to that cluster, and the response passes it before the router's retry
// check (envoy-facts §9). envoy.yaml's rust_then_perl_extjs uses it to turn
// rust's failed web UI answers into a retriable status. The data plane
// implements the response side only (request_header_mode SKIP), with
// response bodies NONE or BUFFERED, and fails open.
type upstreamExtProc struct {
	mode             processingMode
	allowOverride    bool
	allowedOverrides []processingMode
	checker          *mutationChecker
	responseAttrs    []string
	initialMetadata  [][2]string
	messageTimeout   time.Duration
}

// readUpstreamFilters reads c's upstream HTTP filter chain. It refuses a
// chain the data plane cannot run exactly as Envoy would.
func readUpstreamFilters(c *clusterv3.Cluster) (*upstreamExtProc, error) {
	a, ok := c.GetTypedExtensionProtocolOptions()[httpProtocolOptionsKey]
	if !ok {
		return nil, nil
	}
	po, ok := envoy.UnpackAny[*upstreamhttpv3.HttpProtocolOptions](a)
	if !ok {
		return nil, fmt.Errorf("cluster %q: %s does not unpack", c.GetName(), httpProtocolOptionsKey)
	}
	fs := po.GetHttpFilters()
	if len(fs) == 0 {
		return nil, nil
	}
	var out *upstreamExtProc
	for i, f := range fs {
		where := fmt.Sprintf("cluster %q upstream http_filters[%d] %q", c.GetName(), i, f.GetName())
		if _, ok := envoy.UnpackAny[*upstreamcodecv3.UpstreamCodec](f.GetTypedConfig()); ok {
			if i != len(fs)-1 {
				return nil, fmt.Errorf("%s: the codec filter must be last", where)
			}
			continue
		}
		ep, ok := envoy.UnpackAny[*ext_procv3.ExternalProcessor](f.GetTypedConfig())
		if !ok || out != nil {
			return nil, fmt.Errorf("%s: only one ext_proc filter and the upstream codec are implemented by the data plane", where)
		}
		u, err := newUpstreamExtProc(where, ep)
		if err != nil {
			return nil, err
		}
		out = u
	}
	return out, nil
}

func newUpstreamExtProc(where string, ep *ext_procv3.ExternalProcessor) (*upstreamExtProc, error) {
	u := &upstreamExtProc{
		allowOverride:  ep.GetAllowModeOverride(),
		responseAttrs:  ep.GetResponseAttributes(),
		messageTimeout: 200 * time.Millisecond, // ext_proc.proto default
	}
	if d := ep.GetMessageTimeout(); d != nil {
		u.messageTimeout = d.AsDuration()
	}
	var err error
	if u.checker, err = newMutationChecker(ep.GetMutationRules()); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	for _, md := range ep.GetGrpcService().GetInitialMetadata() {
		u.initialMetadata = append(u.initialMetadata, [2]string{strings.ToLower(md.GetKey()), md.GetValue()})
	}
	pm := ep.GetProcessingMode()
	u.mode = modeFrom(pm)
	for _, m := range ep.GetAllowedOverrideModes() {
		u.allowedOverrides = append(u.allowedOverrides, modeFrom(m))
	}
	var errs []error
	if !ep.GetFailureModeAllow() {
		errs = append(errs, errors.New("failure_mode_allow must be true (a failing upstream stage leaves the answer as it is)"))
	}
	if pm.GetRequestHeaderMode() != ext_procv3.ProcessingMode_SKIP {
		errs = append(errs, errors.New("request_header_mode must be SKIP (only the response side is implemented upstream)"))
	}
	for _, m := range append([]processingMode{u.mode}, u.allowedOverrides...) {
		if m.requestBody != ext_procv3.ProcessingMode_NONE {
			errs = append(errs, errors.New("request bodies are not implemented upstream"))
		}
		if m.responseBody != ext_procv3.ProcessingMode_NONE && m.responseBody != ext_procv3.ProcessingMode_BUFFERED {
			errs = append(errs, fmt.Errorf("response body mode %v is not implemented", m.responseBody))
		}
	}
	if u.mode.responseBody != ext_procv3.ProcessingMode_NONE {
		errs = append(errs, errors.New("response_body_mode must be NONE (BUFFERED only as a mode_override)"))
	}
	if ep.GetObservabilityMode() || ep.GetGrpcService() == nil {
		errs = append(errs, errors.New("only a gRPC service without observability mode is implemented"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return u, nil
}

func (u *upstreamExtProc) overrideAllowed(ov *ext_procv3.ProcessingMode) bool {
	if !u.allowOverride || ov == nil {
		return false
	}
	if len(u.allowedOverrides) == 0 {
		return true
	}
	m := modeFrom(ov)
	for _, a := range u.allowedOverrides {
		if a.responseHeaders == m.responseHeaders && a.requestBody == m.requestBody && a.responseBody == m.responseBody {
			return true
		}
	}
	return false
}

// upstreamStage runs the cluster's upstream ext_proc filter on one
// attempt's response, before the retry check, as Envoy's UpstreamRequest
// does: response headers to the service, the body too when the service
// asks for it (mode_override BUFFERED), and the service's header mutation
// (:status) applied to the response the router then judges. Any failure
// leaves the response as it came (failure_mode_allow), with its body
// intact.
//
// perTryLeft is what is left of the attempt's per_try_timeout (0: none)
// and cancelAttempt ends the attempt. Envoy's per-try timeout runs until
// the response is complete; while the stage holds the body no byte has
// gone downstream, so a body that stalls past it is a per-try timeout,
// retried like one (perl answers), which upstreamStage reports as true.
// Without this a rust answer that sent its headers and then stalled held
// the browser until the route timeout and then gave it a broken 200.
func (q *request) upstreamStage(u *upstreamExtProc, be *backend, attempt int, resp *http.Response, perTryLeft time.Duration, cancelAttempt func()) (perTryExpired bool) {
	if !u.mode.responseHeaders || q.upgrade || resp.StatusCode == http.StatusSwitchingProtocols {
		return false
	}
	st := newExtProcStream(q.r.Context(), q.p.opts.ExtProc, u.messageTimeout, initialMetadata(u.initialMetadata, q.hs))
	defer st.finish(remoteCloseTimeout)
	hs := &headerSet{h: resp.Header, pseudo: map[string]string{":status": strconv.Itoa(resp.StatusCode)}}
	eos := q.hs.pseudo[":method"] == http.MethodHead || resp.ContentLength == 0
	req := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: hs.proto(), EndOfStream: eos},
	}}
	ur := &upstreamResponse{resp: resp, backend: be, attempts: attempt}
	if len(u.responseAttrs) > 0 {
		attrs := &structpb.Struct{Fields: map[string]*structpb.Value{}}
		for _, a := range u.responseAttrs {
			if v := q.attribute(a, ur, resp.StatusCode); v != nil {
				attrs.Fields[a] = v
			}
		}
		req.Attributes = map[string]*structpb.Struct{"envoy.filters.http.ext_proc": attrs}
	}
	ans, err := st.exchange(req)
	if err != nil {
		q.upstreamStageFailed(err)
		return false
	}
	hr, ok := ans.GetResponse().(*extprocv3.ProcessingResponse_ResponseHeaders)
	if !ok {
		st.fail()
		q.upstreamStageFailed(errExtProcSpurious)
		return false
	}
	// Envoy applies the header mutation of a headers answer, but with a
	// BUFFERED body it holds the headers until the body answer; either
	// way they reach the router only after both.
	if err := applyMutation(hr.ResponseHeaders.GetResponse().GetHeaderMutation(), hs, u.checker, q.rejected); err != nil {
		st.fail()
		q.upstreamStageFailed(err)
		return false
	}
	if !eos && u.overrideAllowed(ans.GetModeOverride()) && ans.GetModeOverride().GetResponseBodyMode() == ext_procv3.ProcessingMode_BUFFERED {
		ok, expired := q.upstreamBody(u, st, hs, resp, perTryLeft, cancelAttempt)
		if !ok {
			return expired
		}
	}
	setUpstreamStatus(hs, resp)
	return false
}

// upstreamBody buffers the response body, sends it and applies the body
// answer. It reports false when the stage failed open, and expired when
// the body did not arrive within perTryLeft (then the attempt is
// cancelled and the response must be dropped).
func (q *request) upstreamBody(u *upstreamExtProc, st *extProcStream, hs *headerSet, resp *http.Response, perTryLeft time.Duration, cancelAttempt func()) (ok, expired bool) {
	orig := resp.Body
	var fired atomic.Bool
	if perTryLeft > 0 && cancelAttempt != nil {
		t := time.AfterFunc(perTryLeft, func() { fired.Store(true); cancelAttempt() })
		defer t.Stop()
	} else if perTryLeft < 0 && cancelAttempt != nil {
		fired.Store(true)
		cancelAttempt()
	}
	buf, err := io.ReadAll(io.LimitReader(orig, q.p.cfg.bufferLimit+1))
	if fired.Load() {
		st.fail()
		q.upstreamStageFailed(fmt.Errorf("response body not complete within the per-try timeout: %w", errPerTryBody))
		return false, true
	}
	if err != nil || int64(len(buf)) > q.p.cfg.bufferLimit {
		// A body that broke off or does not fit: hand on what was read
		// plus the rest (or the error), unjudged.
		resp.Body = readCloser{io.MultiReader(bytes.NewReader(buf), orig), orig}
		st.fail()
		if err == nil {
			err = fmt.Errorf("response body over the buffer limit of %d bytes", q.p.cfg.bufferLimit)
		}
		q.upstreamStageFailed(err)
		return false, false
	}
	closeQuietly(orig)
	resp.Body = io.NopCloser(bytes.NewReader(buf))
	ans, err := st.exchange(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
		ResponseBody: &extprocv3.HttpBody{Body: buf, EndOfStream: true},
	}})
	if err != nil {
		q.upstreamStageFailed(err)
		return false, false
	}
	br, ok := ans.GetResponse().(*extprocv3.ProcessingResponse_ResponseBody)
	if !ok {
		st.fail()
		q.upstreamStageFailed(errExtProcSpurious)
		return false, false
	}
	common := br.ResponseBody.GetResponse()
	if err := applyMutation(common.GetHeaderMutation(), hs, u.checker, q.rejected); err != nil {
		st.fail()
		q.upstreamStageFailed(err)
		return false, false
	}
	if bm := common.GetBodyMutation(); bm != nil {
		switch {
		case bm.GetClearBody():
			buf = nil
		case bm.GetBody() != nil:
			buf = bm.GetBody()
		}
		resp.Body = io.NopCloser(bytes.NewReader(buf))
		resp.ContentLength = int64(len(buf))
		resp.Header.Set("Content-Length", strconv.Itoa(len(buf)))
	}
	return true, false
}

// setUpstreamStatus applies a :status the service set. Envoy accepts only
// an integer of at least 200 (mutation_rules.cc); anything else is
// ignored here, as a rejected mutation.
func setUpstreamStatus(hs *headerSet, resp *http.Response) {
	n, err := strconv.Atoi(hs.pseudo[":status"])
	if err != nil || n < 200 || n > 999 || n == resp.StatusCode {
		return
	}
	resp.StatusCode, resp.Status = n, ""
}

// errPerTryBody marks a body the upstream stage waited for past the
// attempt's per-try timeout.
var errPerTryBody = errors.New("per-try timeout")

func (q *request) upstreamStageFailed(err error) {
	q.p.log.Warn("upstream ext_proc failed, the answer stands", "error", err.Error(), "request_id", q.rec.RequestID)
}
