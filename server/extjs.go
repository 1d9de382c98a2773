package server

import (
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pve-migration/router/routing"
)

// The upstream ext_proc stage: envoy.yaml puts a second ext_proc filter
// into the upstream filter chain of the rust_then_perl_extjs cluster, which
// runs once per attempt and sees each backend's answer before the router's
// retry check. Its streams carry the gRPC initial metadata
// StageMetadataKey: StageUpstreamExtjs, and start with response_headers
// (request_header_mode SKIP). pveproxy's web UI format answers errors with
// HTTP 200 and the real status in the body; for a rust answer to an extjs
// GET the stage asks for the body (mode_override BUFFERED) and, when it
// reports a server failure (success 0, status ≥ 500), sets :status to that
// status so the route's 5xx retry sends the request to Perl.
const (
	// StageMetadataKey names the ext_proc stage of a stream.
	StageMetadataKey = "x-pve-ext-proc-stage"
	// StageUpstreamExtjs is the upstream stage that reads rust's extjs
	// answers.
	StageUpstreamExtjs = "upstream-extjs"
	// HeaderFallback is the response header a rust daemon may set on a
	// failed extjs answer (value: the status); the route retries on it
	// (retriable_headers) and removes it before the client sees it.
	HeaderFallback = "x-pve-fallback"
)

// attributesKey is where Envoy puts the filter's attributes in a
// ProcessingRequest.
const attributesKey = "envoy.filters.http.ext_proc"

var (
	// bufferResponseBody answers rust's response headers of an extjs GET:
	// send the whole body. It equals envoy.yaml's allowed_override_modes
	// entry of the upstream filter (Envoy compares every field but
	// request_header_mode).
	bufferResponseBody = &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}},
		ModeOverride: &extprocfilterv3.ProcessingMode{
			ResponseHeaderMode: extprocfilterv3.ProcessingMode_SEND,
			ResponseBodyMode:   extprocfilterv3.ProcessingMode_BUFFERED,
		},
	}
	// hostIsRust matches the xds.upstream_host_metadata attribute of a
	// rust endpoint (metadata pve.backend = rust), in the protobuf text
	// form Envoy prints.
	hostIsRust = regexp.MustCompile(`key:\s*"backend"\s*value\s*\{\s*string_value:\s*"rust"`)
)

// isUpstreamExtjsStage reports whether the stream belongs to the upstream
// stage (by its initial metadata, which Envoy sets from the bootstrap, never
// a client).
func isUpstreamExtjsStage(md metadata.MD) bool {
	v := md.Get(StageMetadataKey)
	return len(v) == 1 && v[0] == StageUpstreamExtjs
}

// extjsStream is one stream of the upstream stage, i.e. one attempt.
type extjsStream struct {
	p   *Processor
	srv grpc.BidiStreamingServer[extprocv3.ProcessingRequest, extprocv3.ProcessingResponse]

	state    uint8 // 0: await response headers, 1: await body, 2: done
	method   string
	path     string
	encoding string // the answer's Content-Encoding, "" for none
}

// processUpstreamExtjs serves one stream of the upstream stage.
func (p *Processor) processUpstreamExtjs(srv grpc.BidiStreamingServer[extprocv3.ProcessingRequest, extprocv3.ProcessingResponse]) error {
	s := extjsStream{p: p, srv: srv}
	err := s.run()
	if err != nil && statusError(err) != nil {
		p.logger.LogAttrs(srv.Context(), slog.LevelWarn, "upstream ext_proc stream failed", slog.String("error", err.Error()))
	}
	return err
}

func (s *extjsStream) run() error { return serveStream(s.srv, s.handle) }

func (s *extjsStream) handle(req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	switch m := req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		if s.state != 0 {
			return nil, fmt.Errorf("upstream stage: second response_headers: %w", errOutOfOrder)
		}
		s.state = 2
		if s.wantsBody(m.ResponseHeaders, req.GetAttributes()[attributesKey]) {
			s.state = 1
			return bufferResponseBody, nil
		}
		return continueResponseHeaders, nil
	case *extprocv3.ProcessingRequest_ResponseBody:
		if s.state != 1 {
			// A body nobody asked for changes nothing.
			return continueResponseBody, nil
		}
		if !m.ResponseBody.GetEndOfStream() {
			return nil, fmt.Errorf("upstream stage: a partial response body, want BUFFERED: %w", errOutOfOrder)
		}
		s.state = 2
		body, ok := decodeExtjsBody(s.encoding, m.ResponseBody.GetBody())
		if !ok {
			return continueResponseBody, nil
		}
		status, failed := routing.ExtjsFailureStatus(body)
		if !failed {
			return continueResponseBody, nil
		}
		s.p.logger.LogAttrs(s.srv.Context(), slog.LevelInfo, "rust extjs answer failed: retrying on perl",
			slog.String("request_id", metadataRequestID(s.srv.Context())),
			slog.String("method", s.method), slog.String("path", s.path), slog.Int("status", status))
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{
			Response: &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{
				SetHeaders: []*corev3.HeaderValueOption{setHeader(":status", []byte(strconv.Itoa(status)))},
			}},
		}}}, nil
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return continueResponseTrailers, nil
	case *extprocv3.ProcessingRequest_RequestHeaders:
		// request_header_mode is SKIP for this stage; answering would let
		// the stage route requests, which it must never do.
		return nil, fmt.Errorf("upstream stage: request_headers: %w", errOutOfOrder)
	case *extprocv3.ProcessingRequest_RequestBody, *extprocv3.ProcessingRequest_RequestTrailers:
		return nil, fmt.Errorf("upstream stage: request message %T: %w", m, errOutOfOrder)
	}
	return nil, fmt.Errorf("message of type %T: %w", req.GetRequest(), errEmptyMessage)
}

// wantsBody decides on the response headers whether the body is worth
// reading: a 200 JSON answer from rust to an extjs GET with fallback on,
// which rust did not already mark with x-pve-fallback (the route retries
// on that header by itself).
func (s *extjsStream) wantsBody(h *extprocv3.HttpHeaders, attrs *structpb.Struct) bool {
	if h.GetEndOfStream() {
		return false
	}
	var status int
	var json, marked bool
	readable := true
	for _, hv := range h.GetHeaders().GetHeaders() {
		switch hv.GetKey() {
		case ":status":
			status = atoi(headerBytes(hv))
		case "content-type":
			ct := strings.ToLower(strings.TrimSpace(string(headerBytes(hv))))
			json = strings.HasPrefix(ct, "application/json")
		case HeaderFallback:
			marked = true
		case "content-encoding":
			s.encoding, readable = extjsEncoding(string(headerBytes(hv)))
		}
	}
	if status != 200 || !json || marked || !readable {
		return false
	}
	fields := attrs.GetFields()
	if !hostIsRust.MatchString(fields["xds.upstream_host_metadata"].GetStringValue()) {
		return false // perl's answers are what they are
	}
	s.method = methodString([]byte(fields["request.method"].GetStringValue()))
	path := fields["request.path"].GetStringValue()
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	clean, ok := routing.NormalizePath(path)
	if !ok {
		return false
	}
	s.path = clean
	policy := &zeroPolicy
	if snap := s.p.config(); snap != nil {
		policy = &snap.Policy
	}
	return routing.ExtjsRetriable(policy, s.method, clean)
}
