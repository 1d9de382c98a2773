// Package telemetry turns the decision service's outcome events into what
// operators look at: one trace span per PVE request (where it was sent,
// why, who served it, whether it fell back), the Prometheus families of the
// contract on /metrics, the seed's summary figures for /status and the CLI,
// and the decision audit log.
//
// Everything is configured from the standard OTEL_* environment variables,
// so the router needs no telemetry flags of its own. Traces go out over
// OTLP only when an exporter is configured; metrics never leave the process
// except through the Prometheus handler. The package never reads request
// headers or bodies: it only sees outcome.Decision and outcome.Result, which
// carry no credentials, so a token cannot reach a span, a metric or a log
// line through it.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	otelmetric "go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"

	"github.com/pve-migration/router/internal/outcome"
	"github.com/pve-migration/router/routing"
)

// ScopeName is the instrumentation scope of the router's spans and
// metrics.
const ScopeName = "github.com/pve-migration/router/internal/telemetry"

// Options configure Setup. Every field is optional. The three funcs are
// read on every request, so that a config reload (metrics_enabled,
// log_migration_decisions, phase) takes effect without rebuilding the
// telemetry; they must be cheap and safe for concurrent use, typically a
// field of the config store's current snapshot.
type Options struct {
	// Version is the router's build version, reported as service.version
	// so a trace shows which build made a decision.
	Version string
	// Env looks up OTEL_* variables; nil means os.Getenv. Tests pass a
	// map lookup so they do not depend on the process environment.
	// Variables Setup does not interpret itself (OTEL_BSP_*, OTLP
	// certificate paths) are read by the OpenTelemetry SDK from the process
	// environment.
	Env func(string) string
	// Logger receives the decision audit log and Setup's one-line summary;
	// nil means slog.Default().
	Logger *slog.Logger
	// MetricsEnabled is the config's metrics_enabled; nil means true (the
	// contract's default). When it returns false no metric is recorded
	// and nothing is paid for them on the request path (the check comes
	// before any label is looked up). Traces are governed by the OTEL_*
	// variables alone: with no exporter configured they cost nothing
	// either.
	MetricsEnabled func() bool
	// LogDecisions is the config's log_migration_decisions; nil means true
	// (the contract's default).
	LogDecisions func() bool
	// Phase reports the phase in force for pve_migration_phase_info; nil
	// leaves that family empty.
	Phase func() routing.Phase
	// SpanProcessors are added to the tracer provider after the OTLP
	// exporter, for example a tracetest.SpanRecorder in tests or a second
	// exporter. Any processor turns tracing on even without an OTLP
	// endpoint.
	SpanProcessors []sdktrace.SpanProcessor
}

// Telemetry owns the tracer and meter providers of the router. Create it
// with Setup and call Shutdown before the process exits, or the last
// batch of spans is lost.
type Telemetry struct {
	opts Options
	log  *slog.Logger

	// sdkTP is nil when tracing is off; tp is then a no-op provider, so
	// otelgrpc still propagates Envoy's trace context into the stream
	// context for log correlation at no cost.
	sdkTP   *sdktrace.TracerProvider
	tp      trace.TracerProvider
	tracer  trace.Tracer
	tracing bool

	mp  *sdkmetric.MeterProvider
	reg *prometheus.Registry
	m   *instruments
	obs *observer

	metricsHandler http.Handler
}

// Setup builds the tracer and meter providers from the environment.
//
// Traces: the OTLP exporter is enabled when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, or OTEL_TRACES_EXPORTER=otlp;
// it is disabled when none of them is set or OTEL_TRACES_EXPORTER=none.
// OTEL_EXPORTER_OTLP_PROTOCOL (or its _TRACES_ form) selects "grpc" or
// "http/protobuf"; when neither is set, an endpoint on port 4317 (the
// OTLP/gRPC port, as in OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4317)
// means grpc and any other endpoint the specification's default,
// http/protobuf. The _HEADERS, _TIMEOUT, _COMPRESSION and _INSECURE
// variables are honoured.
// OTEL_SERVICE_NAME defaults to "pve-migration-router"; the resource also
// carries OTEL_RESOURCE_ATTRIBUTES, service.version (Options.Version),
// host.name and the SDK's telemetry.sdk.* attributes. OTEL_TRACES_SAMPLER
// and OTEL_TRACES_SAMPLER_ARG choose the sampler, parentbased_always_on by
// default, so Envoy's sampling decision is kept.
//
// Metrics are always collected (unless Options.MetricsEnabled says no) on a
// registry of their own, served by MetricsHandler.
//
// Invalid variables are reported together in one error, naming each
// variable but never echoing header values or URL passwords; nothing is
// started in that case.
func Setup(ctx context.Context, opts Options) (*Telemetry, error) {
	env := opts.Env
	if env == nil {
		env = os.Getenv
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}

	exp, expErr := parseExport(env)
	sampler, samplerName, samplerErr := parseSampler(env)
	attrs, serviceName, resErr := resourceAttrs(env, opts.Version)
	if err := errors.Join(expErr, samplerErr, resErr); err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}

	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithAttributes(attrs...),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}

	t := &Telemetry{opts: opts, log: log}

	var exporter sdktrace.SpanExporter
	if exp.enabled {
		exporter, err = newExporter(ctx, exp)
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTLP trace exporter: %w", err)
		}
	}
	if exporter != nil || len(opts.SpanProcessors) > 0 {
		tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(sampler)}
		if exporter != nil {
			tpOpts = append(tpOpts, sdktrace.WithBatcher(exporter))
		}
		for _, p := range opts.SpanProcessors {
			tpOpts = append(tpOpts, sdktrace.WithSpanProcessor(p))
		}
		t.sdkTP = sdktrace.NewTracerProvider(tpOpts...)
		t.tp = t.sdkTP
		t.tracing = true
	} else {
		t.tp = tracenoop.NewTracerProvider()
	}
	t.tracer = t.tp.Tracer(ScopeName, trace.WithInstrumentationVersion(opts.Version))

	t.reg = prometheus.NewRegistry()
	promExp, err := otelprom.New(
		otelprom.WithRegisterer(t.reg),
		// The instruments carry the contract's family names verbatim:
		// no unit or _total suffix is added and no otel_scope_* label, so
		// /metrics shows exactly the names operators' queries use.
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithoutSuffixes),
		otelprom.WithoutScopeInfo(),
	)
	if err != nil {
		t.shutdownTraces(ctx)
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	t.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	t.mp = sdkmetric.NewMeterProvider(
		sdkmetric.WithResource(res),
		sdkmetric.WithReader(promExp),
		// The text exposition format cannot carry exemplars, so keeping
		// them would only cost time on every request.
		sdkmetric.WithExemplarFilter(exemplar.AlwaysOffFilter),
	)
	t.m, err = newInstruments(t.mp.Meter(ScopeName, otelmetric.WithInstrumentationVersion(opts.Version)), opts.Phase)
	if err != nil {
		t.shutdownTraces(ctx)
		_ = t.mp.Shutdown(ctx)
		return nil, fmt.Errorf("telemetry: instruments: %w", err)
	}
	t.metricsHandler = promhttp.HandlerFor(t.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	t.obs = newObserver(t)

	if exp.enabled {
		log.Info("telemetry: exporting traces", "protocol", exp.protocol, "endpoint", redactURL(exp.endpoint),
			"service", serviceName, "sampler", samplerName)
	} else {
		log.Info("telemetry: trace export off (set OTEL_EXPORTER_OTLP_ENDPOINT to enable)", "service", serviceName)
	}
	return t, nil
}

func newExporter(ctx context.Context, c exportConfig) (sdktrace.SpanExporter, error) {
	switch c.protocol {
	case ProtocolGRPC:
		o := []otlptracegrpc.Option{otlptracegrpc.WithEndpointURL(c.endpoint)}
		if len(c.headers) > 0 {
			o = append(o, otlptracegrpc.WithHeaders(c.headers))
		}
		if c.timeout > 0 {
			o = append(o, otlptracegrpc.WithTimeout(c.timeout))
		}
		if c.compression != "" {
			o = append(o, otlptracegrpc.WithCompressor(c.compression))
		}
		// The gRPC client connects lazily: a collector that is down at
		// start costs dropped spans, never a failed start.
		return otlptracegrpc.New(ctx, o...)
	default:
		o := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(c.endpoint)}
		if len(c.headers) > 0 {
			o = append(o, otlptracehttp.WithHeaders(c.headers))
		}
		if c.timeout > 0 {
			o = append(o, otlptracehttp.WithTimeout(c.timeout))
		}
		switch c.compression {
		case "gzip":
			o = append(o, otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
		case "none":
			o = append(o, otlptracehttp.WithCompression(otlptracehttp.NoCompression))
		}
		return otlptracehttp.New(ctx, o...)
	}
}

// MetricsHandler serves the router's Prometheus families (and the Go
// runtime and process collectors) in the text exposition format, from a
// registry of its own so that nothing registered globally by a library
// leaks onto /metrics. A client that asks for the protobuf format gets it.
func (t *Telemetry) MetricsHandler() http.Handler { return t.metricsHandler }

// GRPCServerOptions returns the options to build the router's grpc.Server
// with. Every stream's context carries the span Envoy put in the gRPC
// metadata (W3C TraceContext, envoy-facts §1.6), so the decision span
// becomes its child. ext_proc and health streams start no span of their
// own: the decision span is the router's SERVER span for a PVE request,
// and a second span per stream would only repeat its timing. The control
// API gets ordinary gRPC server spans. There is no stats handler and no
// gRPC metrics: /metrics carries only the contract's families, and a
// stats handler costs every ext_proc message (grpcstats.go).
func (t *Telemetry) GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainStreamInterceptor(streamContext), grpc.ChainUnaryInterceptor(t.unarySpan)}
}

// TracerProvider returns the provider spans are created with (a no-op one
// when tracing is off), for other components of the router that want
// their own spans in the same traces.
func (t *Telemetry) TracerProvider() trace.TracerProvider { return t.tp }

// Observer returns the outcome.Observer that records spans, metrics and
// the audit log. It is safe for concurrent use and allocation-light: the
// ext_proc server calls it on every request.
func (t *Telemetry) Observer() outcome.Observer { return t.obs }

// Shutdown flushes the batch span processor, so the spans of the last
// requests reach the collector, and stops the providers. Call it once,
// with a deadline, after the gRPC server has stopped.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	if t.sdkTP != nil {
		errs = append(errs, t.sdkTP.Shutdown(ctx))
	}
	errs = append(errs, t.mp.Shutdown(ctx))
	return errors.Join(errs...)
}

func (t *Telemetry) shutdownTraces(ctx context.Context) {
	if t.sdkTP != nil {
		_ = t.sdkTP.Shutdown(ctx)
	}
}

func (t *Telemetry) metricsOn() bool {
	return t.opts.MetricsEnabled == nil || t.opts.MetricsEnabled()
}

func (t *Telemetry) logOn() bool {
	return t.opts.LogDecisions == nil || t.opts.LogDecisions()
}

var _ outcome.StatsSource = (*Telemetry)(nil)

// Register adds a collector to the registry that /metrics serves, so that
// counters kept elsewhere (the embedded data plane's fail-opens, retries
// and local replies, which the decision service never sees) reach the
// operator on the same scrape.
func (t *Telemetry) Register(c prometheus.Collector) error { return t.reg.Register(c) }
