package telemetry_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/pve-migration/router/internal/telemetry"
	"github.com/pve-migration/router/internal/telemetry/jaegertest"
	"github.com/pve-migration/router/server/extproctest"
)

// TestJaegerEndToEnd exports the router's decision spans over OTLP/gRPC to
// a real Jaeger and reads them back through Jaeger's query API, the way an
// operator looks at them. It runs only with JAEGER_BIN set:
//
//	scripts/jaeger.sh test     (or: make test-jaeger)
func TestJaegerEndToEnd(t *testing.T) {
	bin := jaegertest.Binary(t)
	began := time.Now()
	j := jaegertest.Start(t, bin)
	t.Logf("jaeger ready in %v (OTLP gRPC %s, query %s)", time.Since(began).Round(time.Millisecond), j.OTLPGRPC, j.QueryURL)

	// Configured purely through the standard variables, as the router is.
	env := map[string]string{
		telemetry.EnvOTLPEndpoint: "http://" + j.OTLPGRPC,
		telemetry.EnvOTLPProtocol: telemetry.ProtocolGRPC,
	}
	discard := slog.New(slog.DiscardHandler)
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{
		Version: "e2e-test", Env: func(k string) string { return env[k] }, Logger: discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	shutdown := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tel.Shutdown(ctx); err != nil {
			t.Errorf("telemetry Shutdown: %v", err)
		}
	}
	r := startRouter(t, tel, routerOptions{snap: snapshot(t, `phase = "rust-basic-write"`, nil), log: discard})

	// Envoy's ext_proc client span, as Envoy puts it in the gRPC metadata.
	const (
		envoyTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
		envoySpan  = "00f067aa0ba902b7"
	)
	withParent := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+envoyTrace+"-"+envoySpan+"-01")
	form := func(id string) map[string]string {
		return map[string]string{"x-request-id": id, "content-type": "application/x-www-form-urlencoded"}
	}
	id := func(id string) map[string]string { return map[string]string{"x-request-id": id} }
	requests := []struct {
		ctx context.Context
		req extproctest.Request
	}{
		{withParent, extproctest.Request{Method: "GET", Path: "/api2/json/nodes/pve1/network", Headers: id("req-parent"),
			Upstream: extproctest.Upstream{Status: 200, ServedBy: "rust", Attempts: 1}}},
		{context.Background(), extproctest.Request{Method: "GET", Path: "/api2/json/nodes/pve1/network/eno1", Headers: id("req-fallback"),
			Upstream: extproctest.Upstream{Status: 200, ServedBy: "perl", Attempts: 2}}},
		{context.Background(), extproctest.Request{Method: "PUT", Path: "/api2/json/nodes/pve1/network/vmbr0", Headers: form("req-bridge"),
			Body: []byte("type=bridge&autostart=1"), Upstream: extproctest.Upstream{Status: 200, ServedBy: "perl", Attempts: 1}}},
		{context.Background(), extproctest.Request{Method: "GET", Path: "/api2/json/nodes/pve1/network/eno2", Headers: id("req-5xx"),
			Upstream: extproctest.Upstream{Status: 503, ServedBy: "rust", Attempts: 1}}},
		{context.Background(), extproctest.Request{Method: "GET", Path: "/api2/json/cluster/resources", Headers: id("req-other"),
			Upstream: extproctest.Upstream{Status: 200, ServedBy: "perl", Attempts: 1}}},
	}
	for _, q := range requests {
		if res := r.do(t, q.ctx, q.req); res.FailedOpen {
			t.Fatalf("%s %s failed open: %v", q.req.Method, q.req.Path, res.FailReason)
		}
	}
	r.stop()
	shutdown() // flushes the batch processor: every span is at Jaeger now

	spans := j.Spans(t, telemetry.DefaultServiceName, telemetry.SpanNamePrefix, len(requests), 15*time.Second)
	byReq := map[string]jaegertest.Span{}
	for _, s := range spans {
		if v, ok := s.Tag(telemetry.AttrRequestID); ok {
			byReq[fmt.Sprint(v)] = s
		}
	}

	// The request with Envoy's traceparent is a child of Envoy's span.
	p, ok := byReq["req-parent"]
	if !ok {
		t.Fatalf("no span for req-parent among %d spans", len(spans))
	}
	if hexID(p.TraceID) != hexID(envoyTrace) {
		t.Errorf("trace id %s, want Envoy's %s", p.TraceID, envoyTrace)
	}
	if hexID(p.Parent()) != hexID(envoySpan) {
		t.Errorf("parent span %q, want Envoy's %s (references %+v)", p.Parent(), envoySpan, p.References)
	}
	if p.OperationName != "pve-migration GET /nodes/{node}/network" {
		t.Errorf("operation %q", p.OperationName)
	}
	wantTags(t, p, map[string]any{
		telemetry.AttrPhase: "rust-basic-write", telemetry.AttrBackend: "rust", telemetry.AttrReason: "phase",
		telemetry.AttrCategory: "node-network-read", telemetry.AttrMethod: "GET", telemetry.AttrRoute: "/nodes/{node}/network",
		telemetry.AttrServedBy: "rust", telemetry.AttrAttempts: 1.0, telemetry.AttrFallback: false,
		telemetry.AttrStatusCode: 200.0, "span.kind": "server",
	})
	tr, err := j.Trace(context.Background(), p.TraceID)
	if err != nil {
		t.Fatal(err)
	}
	proc := tr.Processes[p.ProcessID]
	if proc.ServiceName != telemetry.DefaultServiceName || !hasTag(proc.Tags, "service.version", "e2e-test") {
		t.Errorf("process %+v", proc)
	}

	// A Rust decision that Perl served is visible as a fallback.
	wantTags(t, byReq["req-fallback"], map[string]any{
		telemetry.AttrBackend: "rust", telemetry.AttrServedBy: "perl", telemetry.AttrFallback: true, telemetry.AttrAttempts: 2.0,
	})
	// Requests without a traceparent are roots of their own traces.
	if par := byReq["req-fallback"].Parent(); par != "" {
		t.Errorf("req-fallback has parent %s", par)
	}

	// The body decided the category, and the trace says so.
	b := byReq["req-bridge"]
	wantTags(t, b, map[string]any{telemetry.AttrCategory: "node-network-advanced-write", telemetry.AttrBackend: "perl"})
	if ev, ok := b.Event(telemetry.EventClassified); !ok || !hasTag(ev.Fields, telemetry.AttrIfaceType, "bridge") || !hasTag(ev.Fields, telemetry.AttrTypeSource, "body") {
		t.Errorf("req-bridge: classified event missing or wrong: %+v", b.Logs)
	}

	// A 5xx from the serving backend is an error span.
	wantTags(t, byReq["req-5xx"], map[string]any{"otel.status_code": "ERROR", "error": true, telemetry.AttrStatusCode: 503.0})

	wantTags(t, byReq["req-other"], map[string]any{telemetry.AttrCategory: "not-network", telemetry.AttrReason: "not-network"})
	if _, ok := byReq["req-other"].Tag(telemetry.AttrRoute); ok {
		t.Errorf("not-network span has http.route")
	}
	t.Logf("end to end in %v", time.Since(began).Round(time.Millisecond))
}

// hexID drops leading zeros: Jaeger's v1 JSON may print ids without them.
func hexID(s string) string { return strings.TrimLeft(strings.ToLower(s), "0") }

func hasTag(kvs []jaegertest.KV, key string, want any) bool {
	for _, kv := range kvs {
		if kv.Key == key && kv.Value == want {
			return true
		}
	}
	return false
}

func wantTags(t *testing.T, s jaegertest.Span, want map[string]any) {
	t.Helper()
	for k, v := range want {
		got, ok := s.Tag(k)
		if !ok || got != v {
			t.Errorf("%s (%s): tag %s = %v (%T), want %v (%T)", s.OperationName, s.SpanID, k, got, got, v, v)
		}
	}
}

// TestJaegerOTLPHTTP checks the other protocol, with the variables an
// operator sets for an OTLP/HTTP collector: the endpoint (the base URL,
// /v1/traces is appended) and a service name; the protocol is the
// specification's default.
func TestJaegerOTLPHTTP(t *testing.T) {
	j := jaegertest.Start(t, jaegertest.Binary(t))
	env := map[string]string{
		telemetry.EnvOTLPEndpoint: "http://" + j.OTLPHTTP,
		telemetry.EnvServiceName:  "pve-migration-router-http",
	}
	discard := slog.New(slog.DiscardHandler)
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{Env: func(k string) string { return env[k] }, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	r := startRouter(t, tel, routerOptions{snap: snapshot(t, `phase = "rust-read-only"`, nil), log: discard})
	r.do(t, context.Background(), extproctest.Request{Method: "GET", Path: "/api2/json/nodes/pve1/network", Headers: map[string]string{"x-request-id": "req-http"},
		Upstream: extproctest.Upstream{Status: 200, ServedBy: "rust", Attempts: 1}})
	r.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	s := j.Spans(t, "pve-migration-router-http", telemetry.SpanNamePrefix, 1, 15*time.Second)
	wantTags(t, s[0], map[string]any{telemetry.AttrRequestID: "req-http", telemetry.AttrPhase: "rust-read-only", telemetry.AttrServedBy: "rust"})
}
