package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/pve-migration/router/routing"
)

// Metric family names of the contract. The instruments are created with
// these exact names and the Prometheus exporter adds no suffix, so they are
// what /metrics shows.
const (
	MetricRequests         = "pve_migration_requests_total"
	MetricFallbacks        = "pve_migration_fallbacks_total"
	MetricUpstreamDuration = "pve_migration_upstream_duration_seconds"
	MetricDecisionDuration = "pve_migration_decision_duration_seconds"
	MetricConfigReloads    = "pve_migration_config_reloads_total"
	MetricPhaseInfo        = "pve_migration_phase_info"
)

// Metric label names. They are part of operators' PromQL queries and
// dashboards, so they never change.
const (
	LabelBackend  = "backend"
	LabelServedBy = "served_by"
	LabelCategory = "category"
	LabelOutcome  = "outcome"
	LabelResult   = "result"
	LabelPhase    = "phase"
)

// Values of the outcome label. They classify what the client got, so that
// error rates per backend are a ratio of two series.
const (
	OutcomeSuccess     = "success"      // 1xx-3xx from a backend
	OutcomeClientError = "client_error" // 4xx from a backend
	OutcomeServerError = "server_error" // 5xx from a backend
	OutcomeNoResponse  = "no_response"  // no backend answered (Envoy's local 503/504)
	OutcomeAbandoned   = "abandoned"    // the stream ended before response headers
)

// Values of the served_by label besides "rust" and "perl".
const (
	// ServedByNone: no backend answered, or the request was abandoned.
	ServedByNone = "none"
	// ServedByOther: an unexpected x-pve-served-by value, folded into one
	// series so that a misconfigured backend cannot grow the label set.
	ServedByOther = "other"
)

var (
	// upstreamBuckets span PVE's API latencies: 1 ms cached reads up to the
	// 60 s perl_api_timeout, with the 30 s fallback timeout on a boundary.
	upstreamBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	// decisionBuckets: a decision is microseconds, unless it waits for a
	// body or looks up an interface type through the Perl API.
	decisionBuckets = []float64{0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}
)

// Dimensions of the precomputed label sets. Indexes follow routing's enum
// values; outcomes and served_by follow the arrays below.
var (
	outcomeNames  = [...]string{OutcomeSuccess, OutcomeClientError, OutcomeServerError, OutcomeNoResponse, OutcomeAbandoned}
	servedByNames = [...]string{"perl", "rust", ServedByNone, ServedByOther}
	reloadResults = [...]string{"ok", "error", "unchanged"}
)

const (
	nBackends  = 2
	nServedBy  = len(servedByNames)
	nOutcomes  = len(outcomeNames)
	nCategory  = 6
	servedNone = 2
)

type outcomeIdx uint8

const (
	ocSuccess outcomeIdx = iota
	ocClientError
	ocServerError
	ocNoResponse
	ocAbandoned
)

// instruments holds the contract's instruments and, for every label
// combination that can occur, the measurement option built once. The
// request path then records without building an attribute set, hashing
// it, or allocating.
type instruments struct {
	requests  metric.Int64Counter
	fallbacks metric.Int64Counter
	upstream  metric.Float64Histogram
	decision  metric.Float64Histogram
	reloads   metric.Int64Counter
	phase     metric.Int64ObservableGauge

	requestOpts  [nBackends][nServedBy][nCategory][nOutcomes][]metric.AddOption
	fallbackOpts [nCategory][]metric.AddOption
	upstreamOpts [nServedBy][]metric.RecordOption
	decisionOpts [nCategory][]metric.RecordOption
	reloadOpts   [len(reloadResults)][]metric.AddOption
}

func newInstruments(m metric.Meter, phase func() routing.Phase) (*instruments, error) {
	in := &instruments{}
	var err error
	if in.requests, err = m.Int64Counter(MetricRequests,
		metric.WithDescription("PVE API requests seen by the router, by decided backend, serving backend, category and outcome."),
		metric.WithUnit("{request}")); err != nil {
		return nil, err
	}
	if in.fallbacks, err = m.Int64Counter(MetricFallbacks,
		metric.WithDescription("Requests decided for Rust that Perl served (Envoy retried them on Perl)."),
		metric.WithUnit("{request}")); err != nil {
		return nil, err
	}
	if in.upstream, err = m.Float64Histogram(MetricUpstreamDuration,
		metric.WithDescription("Time from request headers to final response headers, by the backend that served."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(upstreamBuckets...)); err != nil {
		return nil, err
	}
	if in.decision, err = m.Float64Histogram(MetricDecisionDuration,
		metric.WithDescription("Time the router took to decide, body wait and interface type lookup included."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(decisionBuckets...)); err != nil {
		return nil, err
	}
	if in.reloads, err = m.Int64Counter(MetricConfigReloads,
		metric.WithDescription("Configuration reload attempts by result (ok, error, unchanged)."),
		metric.WithUnit("{reload}")); err != nil {
		return nil, err
	}
	if phase != nil {
		phaseOpts := make([]metric.ObserveOption, len(routing.Phases()))
		for i, p := range routing.Phases() {
			phaseOpts[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String(LabelPhase, p.String())))
		}
		if in.phase, err = m.Int64ObservableGauge(MetricPhaseInfo,
			metric.WithDescription("The migration phase in force: 1 for the current phase."),
			metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
				p := phase()
				if int(p) < len(phaseOpts) {
					o.Observe(1, phaseOpts[p])
				} else {
					o.Observe(1, metric.WithAttributes(attribute.String(LabelPhase, p.String())))
				}
				return nil
			})); err != nil {
			return nil, err
		}
	}

	for b := range nBackends {
		for s := range nServedBy {
			for c := range nCategory {
				for o := range nOutcomes {
					in.requestOpts[b][s][c][o] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(
						attribute.String(LabelBackend, routing.Backend(b).String()),
						attribute.String(LabelServedBy, servedByNames[s]),
						attribute.String(LabelCategory, routing.Category(c).String()),
						attribute.String(LabelOutcome, outcomeNames[o]),
					))}
				}
			}
		}
	}
	for c := range nCategory {
		cat := attribute.NewSet(attribute.String(LabelCategory, routing.Category(c).String()))
		in.fallbackOpts[c] = []metric.AddOption{metric.WithAttributeSet(cat)}
		in.decisionOpts[c] = []metric.RecordOption{metric.WithAttributeSet(cat)}
	}
	for s := range nServedBy {
		in.upstreamOpts[s] = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attribute.String(LabelServedBy, servedByNames[s])))}
	}
	for i, r := range reloadResults {
		in.reloadOpts[i] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String(LabelResult, r)))}
		// Every result starts at 0 on /metrics. A series born at 1 (the first
		// rejected edit) has no increase to Prometheus, so
		// PVEMigrationConfigReloadFailed would miss exactly that edit.
		in.reloads.Add(context.Background(), 0, in.reloadOpts[i]...)
	}
	in.exportZeros()
	return in, nil
}

// exportZeros creates the series that alerts read with rate() or
// increase() at 0, before their first event: fallbacks for every network
// category and reloads for every result. A counter series that appears
// only with its first increment makes `rate(...[5m]) > 0` see no series at
// all, and an alert on it can never fire on the first fallback or the
// first rejected edit.
func (in *instruments) exportZeros() {
	ctx := context.Background()
	for c := range nCategory {
		if routing.Category(c) == routing.NotNetwork {
			continue // never decided for Rust, so never a fallback
		}
		in.fallbacks.Add(ctx, 0, in.fallbackOpts[c]...)
	}
	for i := range reloadResults {
		in.reloads.Add(ctx, 0, in.reloadOpts[i]...)
	}
}

// servedByIndex folds x-pve-served-by into the four label values.
func servedByIndex(s string) int {
	switch s {
	case "perl":
		return 0
	case "rust":
		return 1
	case "":
		return servedNone
	default:
		return 3
	}
}

// classify maps a Result to the outcome label. A response without a
// serving backend, or without a status, is one no backend answered.
func classify(served, status int) outcomeIdx {
	switch {
	case served == servedNone || status <= 0:
		return ocNoResponse
	case status >= 500:
		return ocServerError
	case status >= 400:
		return ocClientError
	default:
		return ocSuccess
	}
}

// addRequest counts one request. Categories beyond the precomputed table
// (a routing version newer than this table) take the slow path rather
// than being dropped.
func (in *instruments) addRequest(ctx context.Context, b routing.Backend, served int, c routing.Category, o outcomeIdx) {
	if int(b) < nBackends && int(c) < nCategory {
		in.requests.Add(ctx, 1, in.requestOpts[b][served][c][o]...)
		return
	}
	in.requests.Add(ctx, 1, metric.WithAttributes(
		attribute.String(LabelBackend, b.String()),
		attribute.String(LabelServedBy, servedByNames[served]),
		attribute.String(LabelCategory, c.String()),
		attribute.String(LabelOutcome, outcomeNames[o]),
	))
}

func (in *instruments) addFallback(ctx context.Context, c routing.Category) {
	if int(c) < nCategory {
		in.fallbacks.Add(ctx, 1, in.fallbackOpts[c]...)
		return
	}
	in.fallbacks.Add(ctx, 1, metric.WithAttributes(attribute.String(LabelCategory, c.String())))
}

func (in *instruments) recordDecision(ctx context.Context, c routing.Category, seconds float64) {
	if int(c) < nCategory {
		in.decision.Record(ctx, seconds, in.decisionOpts[c]...)
		return
	}
	in.decision.Record(ctx, seconds, metric.WithAttributes(attribute.String(LabelCategory, c.String())))
}

// RecordReload counts one configuration reload attempt; result is the
// config store's result ("ok", "error", "unchanged"). Wire it to
// config.Store.OnReload so that a rejected edit shows on /metrics.
func (t *Telemetry) RecordReload(result string) {
	if !t.metricsOn() {
		return
	}
	ctx := context.Background()
	for i, r := range reloadResults {
		if r == result {
			t.m.reloads.Add(ctx, 1, t.m.reloadOpts[i]...)
			return
		}
	}
	t.m.reloads.Add(ctx, 1, metric.WithAttributes(attribute.String(LabelResult, result)))
}
