package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/internal/outcome"
	"github.com/pve-migration/router/routing"
)

// TypeLookup finds the current type of a node's network interface. A
// DELETE of an interface does not carry its type, yet the type decides
// whether the DELETE is a basic or an advanced write.
//
// LookupType returns "" when the type cannot be determined; the request is
// then classified advanced, the cautious side. The Processor calls it on
// the request path, so it must answer well inside Envoy's ext_proc
// message_timeout.
type TypeLookup interface {
	LookupType(ctx context.Context, node, iface string) (string, error)
}

// CacheInvalidator is implemented by a TypeLookup that caches. The
// Processor calls Invalidate after a write that may change a type: iface
// "" means every interface of the node (apply and revert replace the
// whole pending configuration).
type CacheInvalidator interface {
	Invalidate(node, iface string)
}

// Options configures a Processor. Only Config is required.
type Options struct {
	// Config returns the snapshot in force (config.Store.Current). Each
	// request uses one snapshot throughout, so a reload never changes the
	// policy in the middle of a request. A nil snapshot routes everything
	// to Perl.
	Config func() *config.Snapshot
	// Observer records decisions and outcomes (traces, metrics); nil
	// records nothing.
	Observer outcome.Observer
	// Lookup finds interface types for DELETE; nil means the type of a
	// deleted interface is unknown, so such a DELETE counts as advanced.
	Lookup TypeLookup
	// Logger receives stream errors; nil means slog.Default(). The
	// decision audit log (log_migration_decisions) is the Observer's job,
	// so that each line carries the trace id.
	Logger *slog.Logger
	// Now is the clock for durations; nil means time.Now.
	Now func() time.Time
	// Local returns this router's run-time decision inputs (node name,
	// kill switch, gate trips: localstate.State.Local). Nil means none:
	// no node awareness, no kill switch, no trips.
	Local func() routing.Local
	// Shadow receives sampled GETs and writes for the shadow comparison;
	// nil compares nothing.
	Shadow Shadower
}

// Processor is the ext_proc service (envoy.service.ext_proc.v3.
// ExternalProcessor). Envoy opens one Process stream per HTTP request; the
// Processor answers the request headers with x-pve-backend (plus Envoy
// timeout and retry overrides for Rust), asks for the body when the
// interface type decides the category, and reports the outcome seen in
// the response headers to the Observer. It is safe for concurrent use and
// holds no per-request state outside the stream.
type Processor struct {
	config    func() *config.Snapshot
	obs       outcome.Observer
	lookup    TypeLookup
	logger    *slog.Logger
	now       func() time.Time
	local     func() routing.Local
	responses responseCache
	shadow    Shadower
}

var _ extprocv3.ExternalProcessorServer = (*Processor)(nil)

// NewProcessor returns a Processor. It does no I/O; register it on a
// grpc.Server with extprocv3.RegisterExternalProcessorServer (Serve does).
func NewProcessor(opts Options) *Processor {
	p := &Processor{config: opts.Config, obs: opts.Observer, lookup: opts.Lookup, logger: opts.Logger, now: opts.Now, local: opts.Local, shadow: opts.Shadow}
	if p.config == nil {
		p.config = func() *config.Snapshot { return nil }
	}
	if p.obs == nil {
		p.obs = outcome.Nop{}
	}
	if p.logger == nil {
		p.logger = slog.Default()
	}
	if p.now == nil {
		p.now = time.Now
	}
	return p
}

// Errors of the ext_proc exchange. They reach Envoy as gRPC status codes
// (errOutOfOrder → FailedPrecondition, errEmptyMessage → InvalidArgument),
// which with failure_mode_allow sends the request on its pre-ext_proc
// route, i.e. to Perl.
var (
	errOutOfOrder   = errors.New("ext_proc message out of order")
	errEmptyMessage = errors.New("ProcessingRequest carries no message")
)

// Process serves one stream, i.e. one HTTP request. A stream that ends
// with io.EOF or a cancellation is a normal end: Envoy closes streams as
// soon as it needs nothing more, and resets them when the client goes away.
func (p *Processor) Process(srv grpc.BidiStreamingServer[extprocv3.ProcessingRequest, extprocv3.ProcessingResponse]) error {
	if md, ok := metadata.FromIncomingContext(srv.Context()); ok && isUpstreamExtjsStage(md) {
		return statusError(p.processUpstreamExtjs(srv))
	}
	s := stream{p: p, srv: srv, ctx: srv.Context()}
	err := s.run()
	s.finish(err)
	return statusError(err)
}

// statusError turns an internal error chain into what the gRPC edge
// returns: nil for the normal ends, the code of a protocol violation, and
// the status of a failed Send or Recv as is.
func statusError(err error) error {
	switch {
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, context.Canceled):
		return nil
	case errors.Is(err, errOutOfOrder):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, errEmptyMessage):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	if st, ok := status.FromError(err); ok {
		if st.Code() == codes.Canceled {
			return nil
		}
		return status.Error(st.Code(), err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// streamState is where a stream is in Envoy's message sequence.
type streamState uint8

const (
	// awaitHeaders: nothing received yet.
	awaitHeaders streamState = iota
	// awaitBody: answered the request headers provisionally (Perl) and
	// asked for the body; the decision follows it.
	awaitBody
	// decided: the decision is final and was sent.
	decided
	// finished: the response headers were seen and reported.
	finished
)

// stream is the state of one Process call. It lives on the stack of
// Process, except that the Observer sees a pointer to dec.
type stream struct {
	p   *Processor
	srv grpc.BidiStreamingServer[extprocv3.ProcessingRequest, extprocv3.ProcessingResponse]
	ctx context.Context
	log *slog.Logger // request-scoped, built on first use

	state  streamState
	snap   *config.Snapshot
	policy *routing.Policy
	// pol is the snapshot's policy with this router's Local inputs; policy
	// points at it (or at zeroPolicy). Kept by value so that a request
	// costs no allocation for it.
	pol    routing.Policy
	dec    outcome.Decision
	obsCtx context.Context

	// Request facts kept for later phases.
	rawQuery    string
	contentType string
	// contentTypeConflict: the request carried two different Content-Type
	// headers. Backends read the first, a careless parser the last; a
	// body that parses differently as form and as JSON could then name
	// two types, so its type is unknown (advanced).
	contentTypeConflict bool
	class               routing.Classification
	provisional         routing.Decision
	body                []byte
	bodyTooBig          bool

	// user is the id the request claims, read only when a canary could
	// change the decision (canaryUser); never the secret. authz and
	// cookies point into the request headers until the headers are
	// answered, then are dropped.
	user         string
	userResolved bool
	authz        []byte
	cookies      [2][]byte
	nCookies     int
	// currentTypeErr: the lookup of a PUT's interface failed (its type
	// then counts as unknown: advanced).
	currentTypeErr error
	sh             shadowState
}

// zeroPolicy routes everything to Perl (its phase is perl-only); it
// stands in for a missing snapshot.
var zeroPolicy routing.Policy

func (s *stream) run() error { return serveStream(s.srv, s.handle) }

// serveStream answers each message of an ext_proc stream with handle until
// the stream or handle ends it; both stages (the request's and the extjs
// upstream one) share it.
func serveStream(srv grpc.BidiStreamingServer[extprocv3.ProcessingRequest, extprocv3.ProcessingResponse],
	handle func(*extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error)) error {
	for {
		req, err := srv.Recv()
		if err == io.EOF {
			return err // the normal end of every stream: no wrapping to pay for
		}
		if err != nil {
			return fmt.Errorf("recv: %w", err)
		}
		resp, err := handle(req)
		if err != nil {
			return err
		}
		if err := srv.Send(resp); err != nil {
			return fmt.Errorf("send: %w", err)
		}
	}
}

func (s *stream) handle(req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	switch m := req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		if s.state != awaitHeaders {
			return nil, fmt.Errorf("second request_headers on one stream: %w", errOutOfOrder)
		}
		return s.onRequestHeaders(m.RequestHeaders), nil
	case *extprocv3.ProcessingRequest_RequestBody:
		switch s.state {
		case awaitHeaders:
			return nil, fmt.Errorf("request_body before request_headers: %w", errOutOfOrder)
		case awaitBody:
			return s.onRequestBody(m.RequestBody), nil
		case finished:
			return nil, fmt.Errorf("request_body after response_headers: %w", errOutOfOrder)
		}
		// A body nobody asked for (Envoy configured to stream bodies):
		// the decision is made, let it pass.
		return continueRequestBody, nil
	case *extprocv3.ProcessingRequest_RequestTrailers:
		if s.state == awaitHeaders {
			return nil, fmt.Errorf("request_trailers before request_headers: %w", errOutOfOrder)
		}
		if s.state == awaitBody {
			// Trailers end the body, but a trailers answer cannot change
			// request headers any more: the provisional Perl route stands.
			s.decideProvisional("request ended with trailers before the body was complete")
		}
		return continueRequestTrailers, nil
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		switch s.state {
		case awaitHeaders:
			return nil, fmt.Errorf("response_headers before request_headers: %w", errOutOfOrder)
		case finished:
			return nil, fmt.Errorf("second response_headers on one stream: %w", errOutOfOrder)
		case awaitBody:
			// Envoy answered without sending the body we asked for
			// (override refused, or a local reply): the provisional Perl
			// route stood.
			s.decideProvisional("body was not sent")
		}
		s.onResponseHeaders(m.ResponseHeaders)
		return continueResponseHeaders, nil
	case *extprocv3.ProcessingRequest_ResponseBody:
		if s.state == awaitHeaders {
			return nil, fmt.Errorf("response_body before request_headers: %w", errOutOfOrder)
		}
		return continueResponseBody, nil
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		if s.state == awaitHeaders {
			return nil, fmt.Errorf("response_trailers before request_headers: %w", errOutOfOrder)
		}
		return continueResponseTrailers, nil
	}
	return nil, fmt.Errorf("message of type %T: %w", req.GetRequest(), errEmptyMessage)
}

// onRequestHeaders makes the decision, or asks for the body when the
// interface type in it decides the category.
func (s *stream) onRequestHeaders(h *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	s.dec.Start = s.p.now()
	s.snap = s.p.config()
	s.policy = &zeroPolicy
	if s.snap != nil {
		s.pol = s.snap.Policy
		if s.p.local != nil {
			s.pol.Local = s.p.local()
		}
		s.policy = &s.pol
	}
	s.dec.Phase = s.policy.EffectivePhase()
	canary := s.policy.Canary.Enabled()
	defer s.dropCredentials()

	var method, path string
	upgrade := false
	for _, hv := range h.GetHeaders().GetHeaders() {
		// x-pve-backend from the client is deliberately not read: Envoy
		// strips it, and even where it does not, it must never influence
		// the decision.
		switch hv.GetKey() {
		case ":method":
			method = methodString(headerBytes(hv))
		case ":path":
			path = string(headerBytes(hv))
		case HeaderRequestID:
			s.dec.RequestID = string(headerBytes(hv))
		case "authorization", "cookie":
			if canary {
				s.noteCredential(hv.GetKey(), headerBytes(hv))
			}
			if s.p.shadow != nil {
				s.shadowHeader(hv.GetKey(), headerBytes(hv))
			}
		case "upgrade":
			upgrade = true
		case "content-type":
			ct := string(headerBytes(hv))
			if s.contentType != "" && s.contentType != ct {
				s.contentTypeConflict = true
			}
			if s.contentType == "" {
				s.contentType = ct
			}
		}
	}
	if s.dec.RequestID == "" {
		s.dec.RequestID = metadataRequestID(s.ctx)
	}
	s.dec.Method = method
	if i := strings.IndexByte(path, '?'); i >= 0 {
		s.rawQuery = path[i+1:]
		path = path[:i]
	}
	if clean, ok := routing.NormalizePath(path); ok {
		s.dec.Path = clean
	} else {
		s.dec.Path = path
	}

	c := routing.Classify(method, s.dec.Path, "")
	if upgrade {
		// A websocket is a console or terminal proxy, never network API
		// (envoy.yaml's rust routes do not match one either): perl.
		c = routing.Classification{}
	}
	s.class = c
	if !c.NeedsType {
		d := routing.DecideClassified(s.policy, method, "", c)
		if s.canaryUser(d) {
			d = routing.DecideClassified(s.policy, method, s.user, c)
		}
		return s.decide(d, "", outcome.TypeNone, nil).headers
	}

	// The category depends on the interface type. Find out whether that
	// changes the backend before paying for a body or a lookup.
	basic, advanced := c, c
	basic.Category, advanced.Category = routing.NodeNetworkBasicWrite, routing.NodeNetworkAdvancedWrite
	dBasic := routing.DecideClassified(s.policy, method, "", basic)
	dAdvanced := routing.DecideClassified(s.policy, method, "", advanced)
	if s.canaryUser(dBasic) || s.canaryUser(dAdvanced) {
		dBasic = routing.DecideClassified(s.policy, method, s.user, basic)
		dAdvanced = routing.DecideClassified(s.policy, method, s.user, advanced)
	}

	// Query parameters win over body parameters in pveproxy, so a type in
	// the query of a POST/PUT is the type, whatever the body says. It is
	// free to read, so it is used even when it does not change the
	// backend (metrics then show the right category). A DELETE takes no
	// type: one in its query is the client's claim, never the truth.
	if method != "DELETE" {
		if t, found, err := queryType(s.rawQuery); found && (h.GetEndOfStream() || err != nil || dBasic.Backend == dAdvanced.Backend) {
			return s.decide(s.decideType(method, t), t, sourceOf(t, outcome.TypeQuery), err).headers
		}
		// A type in the query of a request that also has a body, where
		// the type matters, is checked against the body: backends differ
		// on which one wins, so the two must agree (routing.IfaceType
		// treats a disagreement as ambiguous: advanced).
	}
	if dBasic.Backend == dAdvanced.Backend {
		// Not worth a body read or a lookup: the request is reported
		// under the category of an unknown type.
		return s.decide(dAdvanced, "", outcome.TypeNone, nil).headers
	}

	switch method {
	case "POST", "PUT":
		if h.GetEndOfStream() {
			return s.decide(dAdvanced, "", outcome.TypeAbsent, errors.New("request has no body and no type in the query")).headers
		}
		// Answer Perl now and decide when the body arrives. Routing
		// cannot prefer Rust here: with the type unknown, one of the two
		// decisions is Perl, and that one is the safe default.
		s.provisional = dAdvanced
		if dAdvanced.Backend != routing.Perl {
			s.provisional = dBasic
		}
		s.state = awaitBody
		return bodyRequest
	case "DELETE":
		t, err := s.lookupType()
		return s.decide(s.decideType(method, t), t, sourceOf(t, outcome.TypeLookup), err).headers
	}
	return s.decide(dAdvanced, "", outcome.TypeAbsent, nil).headers
}

// decideType decides the classified request with interface type t.
func (s *stream) decideType(method, t string) routing.Decision {
	c := s.class
	if (t == "eth" || t == "alias") && s.currentTypeBasic(method) {
		c.Category = routing.NodeNetworkBasicWrite
	} else {
		c.Category = routing.NodeNetworkAdvancedWrite
	}
	return routing.DecideClassified(s.policy, method, s.user, c)
}

func sourceOf(t string, src outcome.TypeSource) outcome.TypeSource {
	if t == "" {
		return outcome.TypeAbsent
	}
	return src
}

// lookupType asks the TypeLookup for the type of the interface a DELETE
// names.
func (s *stream) lookupType() (string, error) {
	if s.p.lookup == nil {
		return "", errors.New("no interface type lookup configured")
	}
	node, iface, ok := nodeIface(s.dec.Path)
	if !ok || iface == "" {
		return "", errors.New("no interface in path")
	}
	t, err := s.p.lookup.LookupType(s.ctx, node, iface)
	if err != nil {
		return "", fmt.Errorf("interface type lookup: %w", err)
	}
	return t, nil
}

// onRequestBody collects the buffered body and decides once it is whole.
func (s *stream) onRequestBody(b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	if !s.bodyTooBig {
		if len(s.body)+len(b.GetBody()) > routing.MaxBodyBytes {
			// pveproxy rejects it anyway; no need to keep or parse it.
			s.bodyTooBig, s.body = true, nil
		} else if s.body == nil && b.GetEndOfStream() {
			s.body = b.GetBody() // the common case: one message, no copy
		} else {
			s.body = append(s.body, b.GetBody()...)
		}
	}
	if !b.GetEndOfStream() {
		return continueRequestBody
	}
	return s.decideFromBody().body
}

// decideFromBody decides on the collected body. Anything unreadable,
// ambiguous or too large leaves the type unknown: advanced.
func (s *stream) decideFromBody() responsePair {
	var (
		t   string
		err error
	)
	if s.bodyTooBig {
		err = fmt.Errorf("body over PVE's limit of %d bytes", routing.MaxBodyBytes)
	} else if s.contentTypeConflict {
		err = errors.New("conflicting Content-Type headers")
	} else {
		t, err = routing.IfaceType(s.contentType, s.body, s.rawQuery)
	}
	s.body = nil
	return s.decide(s.decideType(s.dec.Method, t), t, sourceOf(t, outcome.TypeBody), err)
}

// decideProvisional makes the provisional Perl answer the decision, for a
// stream whose body never came.
func (s *stream) decideProvisional(why string) {
	s.decide(s.provisional, "", outcome.TypeAbsent, errors.New(why))
}

// decide records the final decision and returns its responses.
func (s *stream) decide(d routing.Decision, ifaceType string, src outcome.TypeSource, typeErr error) responsePair {
	s.state = decided
	s.dec.Decision = d
	s.dec.IfaceType = ifaceType
	s.dec.TypeSource = src
	if typeErr == nil {
		typeErr = s.currentTypeErr
	}
	if typeErr != nil {
		s.dec.TypeError = typeErr.Error()
	}
	s.dec.DecideDuration = s.p.now().Sub(s.dec.Start)
	s.obsCtx = s.p.obs.Decided(s.ctx, &s.dec)
	s.shadowDecided()
	var perlTimeout time.Duration
	if s.snap != nil {
		perlTimeout = s.snap.PerlAPITimeout
	}
	return s.p.responses.forDecision(&s.dec.Decision, perlTimeout)
}

// logger is the request-scoped logger, built on first use so that
// requests that log nothing pay nothing.
func (s *stream) logger() *slog.Logger {
	if s.log == nil {
		s.log = s.p.logger.With(slog.String("request_id", s.dec.RequestID))
	}
	return s.log
}

// onResponseHeaders reports how the request was served.
func (s *stream) onResponseHeaders(h *extprocv3.HttpHeaders) {
	var r outcome.Result
	for _, hv := range h.GetHeaders().GetHeaders() {
		switch hv.GetKey() {
		case HeaderServedBy:
			r.ServedBy = servedBy(headerBytes(hv))
		case HeaderAttemptCount:
			r.Attempts = atoi(headerBytes(hv))
		case ":status":
			r.Status = atoi(headerBytes(hv))
		}
	}
	r.Fallback = s.dec.Decision.Backend == routing.Rust && r.ServedBy == "perl"
	r.Duration = s.p.now().Sub(s.dec.Start)
	s.state = finished
	s.p.obs.Finished(s.obsCtx, &s.dec, r)
	s.invalidate()
	s.shadowFinished(r.Status, r.ServedBy)
}

// invalidate drops cached interface types a write may have changed. It
// runs after the response, i.e. after the backend applied the write.
func (s *stream) invalidate() {
	inv, ok := s.p.lookup.(CacheInvalidator)
	if !ok {
		return
	}
	switch s.dec.Method {
	case "PUT", "DELETE", "POST":
	default:
		return
	}
	switch s.dec.Decision.Template {
	case "/nodes/{node}/network/{iface}", "/nodes/{node}/network":
		if node, iface, ok := nodeIface(s.dec.Path); ok {
			inv.Invalidate(node, iface)
		}
	}
}

// finish reports a stream that ended before its response headers.
func (s *stream) finish(err error) {
	if s.state == awaitHeaders || s.state == finished {
		if err != nil && statusError(err) != nil {
			s.p.logger.LogAttrs(s.ctx, slog.LevelWarn, "ext_proc stream failed", slog.String("error", err.Error()))
		}
		return
	}
	reason := "stream closed before response headers"
	switch {
	case err == nil, errors.Is(err, io.EOF):
	case errors.Is(err, context.Canceled), status.Code(err) == codes.Canceled:
		reason = "stream canceled before response headers"
	default:
		reason = "stream failed before response headers: " + err.Error()
		s.logger().LogAttrs(s.ctx, slog.LevelWarn, "ext_proc stream failed", slog.String("error", err.Error()))
	}
	if s.state == awaitBody {
		s.decideProvisional("stream ended before the body")
	}
	s.p.obs.Abandoned(s.obsCtx, &s.dec, reason)
	s.shadowFinished(0, "")
}

// headerBytes reads a header value the way Envoy sends it: raw_value,
// falling back to value for older Envoys.
func headerBytes(h *corev3.HeaderValue) []byte {
	if len(h.GetRawValue()) > 0 {
		return h.GetRawValue()
	}
	return []byte(h.GetValue())
}

// methodString returns PVE's methods as constants, so the common case
// does not allocate.
func methodString(b []byte) string {
	switch string(b) {
	case "GET":
		return "GET"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "HEAD":
		return "HEAD"
	}
	return string(b)
}

// servedBy accepts only the two backend names, so a misbehaving upstream
// cannot create arbitrary metric label values.
func servedBy(b []byte) string {
	switch string(b) {
	case "rust":
		return "rust"
	case "perl":
		return "perl"
	}
	return ""
}

// atoi parses a small non-negative decimal; anything else is 0.
func atoi(b []byte) int {
	if len(b) == 0 || len(b) > 9 {
		return 0
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// metadataRequestID reads the x-request-id that envoy.yaml sends as gRPC
// initial metadata, for data planes that do not forward the header.
func metadataRequestID(ctx context.Context) string {
	if v := metadata.ValueFromIncomingContext(ctx, HeaderRequestID); len(v) > 0 {
		return v[0]
	}
	return ""
}

// queryType reports the `type` query parameter. found is true when the
// query names a type at all, even unusably (repeated, malformed): since
// the query wins over the body in pveproxy, no body read can do better.
func queryType(rawQuery string) (t string, found bool, err error) {
	if rawQuery == "" {
		return "", false, nil
	}
	// No substring shortcut: "%74ype" is "type" to pveproxy too.
	q, perr := url.ParseQuery(rawQuery)
	v, ok := q["type"]
	switch {
	case perr != nil:
		// A malformed query is unknown ground: do not guess.
		return "", true, fmt.Errorf("query string: %w", perr)
	case !ok:
		return "", false, nil
	case len(v) > 1:
		return "", true, fmt.Errorf("query string: %w", routing.ErrAmbiguousType)
	}
	return v[0], true, nil
}

// nodeIface extracts {node} and {iface} from a normalised
// /api2/<format>/nodes/{node}/network[/{iface}] path, unescaped.
func nodeIface(clean string) (node, iface string, ok bool) {
	seg := strings.Split(strings.TrimPrefix(clean, "/"), "/")
	if len(seg) < 5 || len(seg) > 6 || seg[0] != "api2" || seg[2] != "nodes" || seg[4] != "network" {
		return "", "", false
	}
	node, err := url.PathUnescape(seg[3])
	if err != nil || node == "" {
		return "", "", false
	}
	if len(seg) == 6 {
		if iface, err = url.PathUnescape(seg[5]); err != nil {
			return "", "", false
		}
	}
	return node, iface, true
}
