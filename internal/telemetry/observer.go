package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/pve-migration/router/internal/outcome"
	"github.com/pve-migration/router/routing"
)

// Span attribute keys of the contract, and the router's own additions.
// Operators search Jaeger by these, so they are fixed names.
const (
	AttrPhase      = "pve.migration.phase"
	AttrBackend    = "pve.migration.backend"
	AttrReason     = "pve.migration.reason"
	AttrCategory   = "pve.migration.category"
	AttrServedBy   = "pve.migration.served_by"
	AttrAttempts   = "pve.migration.attempts"
	AttrFallback   = "pve.migration.fallback"
	AttrMethod     = "http.request.method"
	AttrRoute      = "http.route"
	AttrStatusCode = "http.response.status_code"

	// AttrOutcome is the outcome label's value, so a trace search and a
	// PromQL query use the same words.
	AttrOutcome = "pve.migration.outcome"
	// AttrRequestID is Envoy's x-request-id, to find the access log line.
	AttrRequestID = "pve.migration.request_id"
	// AttrFallbackAllowed says whether a failed Rust attempt could be
	// retried on Perl, which explains a 5xx that did not fall back.
	AttrFallbackAllowed = "pve.migration.fallback_allowed"
	AttrIfaceType       = "pve.migration.iface_type"
	AttrTypeSource      = "pve.migration.type_source"
	AttrTypeError       = "pve.migration.type_error"
	AttrAbandonReason   = "pve.migration.abandon_reason"
	AttrMethodOriginal  = "http.request.method_original"
	AttrURLPath         = "url.path"
)

// Span event names.
const (
	// EventClassified marks when a write's interface type was found in the
	// body or through a lookup, or found missing: the part of a decision
	// that can take time and that decides basic versus advanced.
	EventClassified = "classified"
	// EventAbandoned marks a request whose response the router never saw.
	EventAbandoned = "abandoned"
)

// SpanNamePrefix starts every decision span's name. The rest is the method
// and the catalogue template, never the path, so that span names stay a
// small set that Jaeger's operation list can show.
const SpanNamePrefix = "pve-migration"

// knownMethods are the methods semantic conventions name; anything else is
// reported as _OTHER so a client cannot create span names at will.
var knownMethods = map[string]bool{
	"GET": true, "HEAD": true, "POST": true, "PUT": true, "DELETE": true,
	"CONNECT": true, "OPTIONS": true, "TRACE": true, "PATCH": true,
}

type nameKey struct{ method, template string }

// spanNames holds every name a decision span can get, built once: the
// catalogue is fixed, so the request path never formats a name.
var spanNames = func() map[nameKey]string {
	m := map[nameKey]string{}
	for meth := range knownMethods {
		m[nameKey{meth, ""}] = SpanNamePrefix + " " + meth
		for _, tmpl := range routing.Templates() {
			m[nameKey{meth, tmpl}] = SpanNamePrefix + " " + meth + " " + tmpl
		}
	}
	m[nameKey{"_OTHER", ""}] = SpanNamePrefix + " _OTHER"
	return m
}()

func normMethod(m string) string {
	if knownMethods[m] {
		return m
	}
	return "_OTHER"
}

func spanName(method, template string) string {
	if n, ok := spanNames[nameKey{method, template}]; ok {
		return n
	}
	// A template outside the catalogue cannot come from routing.Decide;
	// still, a name is better than a panic.
	return SpanNamePrefix + " " + method + " " + template
}

// observer implements outcome.Observer on top of a Telemetry.
type observer struct{ t *Telemetry }

func newObserver(t *Telemetry) *observer { return &observer{t: t} }

var _ outcome.Observer = (*observer)(nil)

var serverKind = trace.WithSpanKind(trace.SpanKindServer)

// Decided starts the request's span as a SERVER span: it is the router's
// side of Envoy's ext_proc call, and its parent is the span Envoy sent in
// the gRPC metadata. It starts at Decision.Start so the span covers the
// whole request, not just the moment of the decision. The attributes are
// set once, when the span ends: the SDK copies and de-duplicates the
// attribute list on every call, so one call is the cheapest, and only
// ended spans are exported anyway.
func (o *observer) Decided(ctx context.Context, d *outcome.Decision) context.Context {
	t := o.t
	if t.tracing {
		var span trace.Span
		ctx, span = t.tracer.Start(ctx, spanName(normMethod(d.Method), d.Decision.Template), serverKind, trace.WithTimestamp(d.Start))
		if span.IsRecording() {
			classifiedEvent(span, d)
		}
	}
	if t.metricsOn() {
		t.m.recordDecision(ctx, d.Decision.Category, d.DecideDuration.Seconds())
	}
	if t.logOn() {
		o.logDecision(ctx, d)
	}
	return ctx
}

// attrBufs recycles attribute lists: SetAttributes copies them, and a
// fresh list per request would be the largest allocation on the path.
var attrBufs = sync.Pool{New: func() any { b := make([]attribute.KeyValue, 0, 24); return &b }}

// decisionAttrs appends the decision's attributes to a.
func decisionAttrs(a []attribute.KeyValue, d *outcome.Decision) []attribute.KeyValue {
	method := normMethod(d.Method)
	a = append(a,
		attribute.String(AttrPhase, d.Phase.String()),
		attribute.String(AttrBackend, d.Decision.Backend.String()),
		attribute.String(AttrReason, d.Decision.Reason.String()),
		attribute.String(AttrCategory, d.Decision.Category.String()),
		attribute.String(AttrMethod, method),
		attribute.String(AttrURLPath, d.Path),
		attribute.String(AttrRequestID, d.RequestID),
		attribute.Bool(AttrFallbackAllowed, d.Decision.Fallback),
	)
	if method != d.Method {
		a = append(a, attribute.String(AttrMethodOriginal, d.Method))
	}
	if d.Decision.Template != "" {
		a = append(a, attribute.String(AttrRoute, d.Decision.Template))
	}
	if d.TypeSource != outcome.TypeNone {
		a = append(a, attribute.String(AttrTypeSource, string(d.TypeSource)))
		if d.IfaceType != "" {
			a = append(a, attribute.String(AttrIfaceType, d.IfaceType))
		}
	}
	return a
}

// classifiedEvent records how a write's interface type was found, when
// finding it took a body read or a lookup, or failed.
func classifiedEvent(span trace.Span, d *outcome.Decision) {
	switch d.TypeSource {
	case outcome.TypeBody, outcome.TypeLookup, outcome.TypeAbsent:
	default:
		return
	}
	ev := []attribute.KeyValue{attribute.String(AttrTypeSource, string(d.TypeSource))}
	if d.IfaceType != "" {
		ev = append(ev, attribute.String(AttrIfaceType, d.IfaceType))
	}
	if d.TypeError != "" {
		ev = append(ev, attribute.String(AttrTypeError, d.TypeError))
	}
	opts := []trace.EventOption{trace.WithAttributes(ev...)}
	if !d.Start.IsZero() {
		opts = append(opts, trace.WithTimestamp(d.Start.Add(d.DecideDuration)))
	}
	span.AddEvent(EventClassified, opts...)
}

// Finished completes the span with who served and how, counts the request
// and its duration, and ends the span at Start+Duration so its length is
// the request's as Envoy saw it.
func (o *observer) Finished(ctx context.Context, d *outcome.Decision, r outcome.Result) {
	t := o.t
	served := servedByIndex(r.ServedBy)
	oc := classify(served, r.Status)
	if t.tracing {
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			bp := attrBufs.Get().(*[]attribute.KeyValue)
			a := append(decisionAttrs((*bp)[:0], d),
				attribute.String(AttrServedBy, servedByNames[served]),
				attribute.Int(AttrAttempts, r.Attempts),
				attribute.Bool(AttrFallback, r.Fallback),
				attribute.Int(AttrStatusCode, r.Status),
				attribute.String(AttrOutcome, outcomeNames[oc]),
			)
			span.SetAttributes(a...)
			*bp = a[:0]
			attrBufs.Put(bp)
			switch oc {
			case ocServerError:
				span.SetStatus(codes.Error, fmt.Sprintf("HTTP %d from %s", r.Status, servedByNames[served]))
			case ocNoResponse:
				span.SetStatus(codes.Error, fmt.Sprintf("no backend answered (HTTP %d)", r.Status))
			}
			end := time.Now()
			if !d.Start.IsZero() {
				end = d.Start.Add(r.Duration)
			}
			span.End(trace.WithTimestamp(end))
		}
	}
	if t.metricsOn() {
		t.m.addRequest(ctx, d.Decision.Backend, served, d.Decision.Category, oc)
		if r.Fallback {
			t.m.addFallback(ctx, d.Decision.Category)
		}
		t.m.upstream.Record(ctx, r.Duration.Seconds(), t.m.upstreamOpts[served]...)
	}
}

// Abandoned ends the span with the reason and counts the request as
// abandoned. It is not an error status: a client that hangs up is not a
// backend failure, and the trace still shows where the request was going.
func (o *observer) Abandoned(ctx context.Context, d *outcome.Decision, reason string) {
	t := o.t
	if t.tracing {
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			bp := attrBufs.Get().(*[]attribute.KeyValue)
			a := append(decisionAttrs((*bp)[:0], d), attribute.String(AttrOutcome, OutcomeAbandoned))
			span.SetAttributes(a...)
			*bp = a[:0]
			attrBufs.Put(bp)
			span.AddEvent(EventAbandoned, trace.WithAttributes(attribute.String(AttrAbandonReason, reason)))
			span.End()
		}
	}
	if t.metricsOn() {
		t.m.addRequest(ctx, d.Decision.Backend, servedNone, d.Decision.Category, ocAbandoned)
	}
}

// logDecision writes the audit line. It takes its fields from the
// Decision only, which has no headers, so no credential can reach it.
func (o *observer) logDecision(ctx context.Context, d *outcome.Decision) {
	log := o.t.log
	if !log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	var buf [14]slog.Attr
	a := append(buf[:0],
		slog.String("request_id", d.RequestID),
		slog.String("method", d.Method),
		slog.String("path", d.Path),
		slog.String("template", d.Decision.Template),
		slog.String("backend", d.Decision.Backend.String()),
		slog.String("reason", d.Decision.Reason.String()),
		slog.String("category", d.Decision.Category.String()),
		slog.String("phase", d.Phase.String()),
	)
	if d.TypeSource != outcome.TypeNone {
		a = append(a, slog.String("type_source", string(d.TypeSource)))
		if d.IfaceType != "" {
			a = append(a, slog.String("iface_type", d.IfaceType))
		}
		if d.TypeError != "" {
			a = append(a, slog.String("type_error", d.TypeError))
		}
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		a = append(a, slog.String("trace_id", sc.TraceID().String()))
	}
	log.LogAttrs(ctx, slog.LevelInfo, "decision", a...)
}
