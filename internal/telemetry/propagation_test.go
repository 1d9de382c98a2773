package telemetry_test

import (
	"context"
	"log/slog"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/pve-migration/router/internal/telemetry"
	"github.com/pve-migration/router/server/extproctest"
)

// TestTraceContextFromGRPCMetadata checks envoy-facts §1.6 through the
// real server: the decision span's parent is the span Envoy put in the
// gRPC metadata, not the client's traceparent among the HTTP headers;
// Envoy's "not sampled" is respected; and the stream gets no second span.
// It holds over gRPC and over the embedded data plane's in-process link.
func TestTraceContextFromGRPCMetadata(t *testing.T) {
	t.Run("grpc", func(t *testing.T) { testTraceContext(t, false) })
	t.Run("in-process", func(t *testing.T) { testTraceContext(t, true) })
}

func testTraceContext(t *testing.T, inProcess bool) {
	spans := tracetest.NewSpanRecorder()
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{
		Env: func(string) string { return "" }, Logger: slog.New(slog.DiscardHandler),
		SpanProcessors: []sdktrace.SpanProcessor{spans},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	r := startRouter(t, tel, routerOptions{snap: snapshot(t, `phase = "rust-read-only"`, nil), log: slog.New(slog.DiscardHandler), inProcess: inProcess})

	const (
		envoyTrace  = "0af7651916cd43dd8448eb211c80319c"
		envoySpan   = "b7ad6b7169203331"
		clientTrace = "11111111111111111111111111111111"
	)
	req := extproctest.Request{Method: "GET", Path: "/api2/json/nodes/pve1/network",
		Headers:  map[string]string{"traceparent": "00-" + clientTrace + "-2222222222222222-01"},
		Upstream: extproctest.Upstream{Status: 200, ServedBy: "rust", Attempts: 1}}

	sampled := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+envoyTrace+"-"+envoySpan+"-01")
	r.do(t, sampled, req)
	notSampled := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+envoyTrace+"-"+envoySpan+"-00")
	r.do(t, notSampled, req)
	r.stop()

	got := spans.Ended()
	if len(got) != 1 {
		for _, s := range got {
			t.Logf("span %q kind %v", s.Name(), s.SpanKind())
		}
		t.Fatalf("%d spans, want exactly the sampled request's decision span", len(got))
	}
	s := got[0]
	if s.SpanContext().TraceID().String() != envoyTrace || s.Parent().SpanID().String() != envoySpan || !s.Parent().IsRemote() {
		t.Errorf("span trace %s parent %s (remote %v), want Envoy's %s/%s", s.SpanContext().TraceID(), s.Parent().SpanID(),
			s.Parent().IsRemote(), envoyTrace, envoySpan)
	}
	if s.SpanKind() != trace.SpanKindServer {
		t.Errorf("kind %v", s.SpanKind())
	}
	// Both requests are counted, sampled or not.
	if st := tel.Stats(); st.TotalRequests != 2 {
		t.Errorf("TotalRequests %d, want 2", st.TotalRequests)
	}
}
