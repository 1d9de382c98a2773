package telemetry_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/internal/outcome"
	"github.com/pve-migration/router/internal/telemetry"
	"github.com/pve-migration/router/server/extproctest"
)

// discardExporter drops spans after the batch processor's work.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkExtProcStream is the request path as Envoy drives it: one
// ext_proc stream (request headers, decision, response headers) over
// loopback gRPC through the real server, with telemetry off (outcome.Nop,
// no interceptors) and on (GRPCServerOptions' interceptors, sampled spans through
// a batch processor, metrics), in one run.
func BenchmarkExtProcStream(b *testing.B) {
	snap, err := config.Parse("bench.conf", []byte(`phase = "rust-basic-write"`), nil)
	if err != nil {
		b.Fatal(err)
	}
	req := extproctest.Request{Method: "GET", Path: "/api2/json/nodes/pve1/network", Headers: map[string]string{"x-request-id": "bench"},
		Upstream: extproctest.Upstream{Status: 200, ServedBy: "rust", Attempts: 1}}
	run := func(b *testing.B, c *extproctest.Client) {
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if res, err := c.Do(ctx, req); err != nil || res.FailedOpen {
				b.Fatalf("%v %v", err, res.FailReason)
			}
		}
	}
	b.Run("telemetry=off", func(b *testing.B) { run(b, startPlainRouter(b, outcome.Nop{}, snap)) })
	b.Run("telemetry=on", func(b *testing.B) {
		tel, err := telemetry.Setup(context.Background(), telemetry.Options{
			Env: func(string) string { return "" }, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
			LogDecisions:   func() bool { return false },
			SpanProcessors: []sdktrace.SpanProcessor{sdktrace.NewBatchSpanProcessor(discardExporter{})},
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
		run(b, startPlainRouter(b, tel.Observer(), snap, tel.GRPCServerOptions()...))
	})
}
