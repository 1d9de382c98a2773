package telemetry

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/pve-migration/router/internal/outcome"
	"github.com/pve-migration/router/routing"
)

// discardExporter drops spans after the batch processor has done all its
// work (snapshot, queue, batch), so the benchmark measures the SDK path a
// real exporter sits behind, without the network.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkObserve measures the per-request path the ext_proc server runs
// (routing.Decide, Observer.Decided, Observer.Finished) with telemetry off
// (outcome.Nop, the baseline) and on, in the same run so the ratio is
// meaningful on a shared machine:
//
//	go test -run '^$' -bench Observe -benchmem -count 10 ./internal/telemetry | tee bench.txt
//	go run golang.org/x/perf/cmd/benchstat@latest -col /telemetry bench.txt
//
// "on" is traces (always sampled, batch processor) plus metrics (the
// Prometheus exporter's reader); "metrics" and "traces" split the cost;
// "on+log" adds the decision audit log to a discarding JSON handler;
// "on,unsampled" is "on" for a request Envoy did not sample; "disabled"
// is the real observer with metrics, logs and trace export all off.
func BenchmarkObserve(b *testing.B) {
	policy := routing.DefaultPolicy()
	policy.Phase = routing.RustBasicWrite
	req := routing.Request{Method: "GET", Path: "/api2/json/nodes/pve1/network"}
	res := outcome.Result{ServedBy: "rust", Attempts: 1, Status: 200, Duration: 3 * time.Millisecond}

	var runIn func(b *testing.B, ctx context.Context, obs outcome.Observer)
	setup := func(b *testing.B, traces, metrics, logs bool) outcome.Observer {
		opts := Options{
			Env:            func(string) string { return "" },
			Logger:         slog.New(slog.NewJSONHandler(io.Discard, nil)),
			MetricsEnabled: func() bool { return metrics },
			LogDecisions:   func() bool { return logs },
			Phase:          func() routing.Phase { return policy.Phase },
		}
		if traces {
			opts.SpanProcessors = []sdktrace.SpanProcessor{sdktrace.NewBatchSpanProcessor(discardExporter{})}
		}
		tel, err := Setup(context.Background(), opts)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
		return tel.Observer()
	}

	run := func(b *testing.B, obs outcome.Observer) { runIn(b, context.Background(), obs) }
	runIn = func(b *testing.B, ctx context.Context, obs outcome.Observer) {
		b.ReportAllocs()
		for b.Loop() {
			d := outcome.Decision{RequestID: "bench", Method: req.Method, Path: req.Path, Phase: policy.Phase, Start: time.Now()}
			d.Decision = routing.Decide(&policy, req)
			octx := obs.Decided(ctx, &d)
			obs.Finished(octx, &d, res)
		}
	}

	b.Run("telemetry=off", func(b *testing.B) { run(b, outcome.Nop{}) })
	b.Run("telemetry=on", func(b *testing.B) { run(b, setup(b, true, true, false)) })
	b.Run("telemetry=metrics", func(b *testing.B) { run(b, setup(b, false, true, false)) })
	b.Run("telemetry=traces", func(b *testing.B) { run(b, setup(b, true, false, false)) })
	b.Run("telemetry=on+log", func(b *testing.B) { run(b, setup(b, true, true, true)) })
	// Envoy decided not to sample the request: the parent-based sampler
	// follows it, so only metrics and a non-recording span remain.
	b.Run("telemetry=on,unsampled", func(b *testing.B) {
		unsampled := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, Remote: true,
		}))
		runIn(b, unsampled, setup(b, true, true, false))
	})
	b.Run("telemetry=disabled", func(b *testing.B) { run(b, setup(b, false, false, false)) })
}
