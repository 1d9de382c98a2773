package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// MetricSchemaViolations counts answers that leave PVE's API schema, per
// backend, template and rule (the compare workers check both answers of a
// job against the schema; see internal/pveschema).
const MetricSchemaViolations = "pve_migration_schema_violations_total"

// RecordSchemaViolations adds n violations of rule in backend's answers to
// template ("/nodes/{node}/network"). The labels are bounded: two
// backends, the router's templates and pveschema's eight rules; the
// violation's path is not a label (it can hold an answer's key names), it
// is in the compare report. Violations are counted off the client's path,
// so the instrument is looked up per call (the SDK returns the one
// registered instrument) rather than kept in the hot-path table.
func (t *Telemetry) RecordSchemaViolations(backend, template, rule string, n int64) {
	if t == nil || t.mp == nil || n <= 0 || !t.metricsOn() {
		return
	}
	c, err := t.mp.Meter(ScopeName, metric.WithInstrumentationVersion(t.opts.Version)).Int64Counter(MetricSchemaViolations,
		metric.WithDescription("Violations of PVE's API schema in compared answers, by backend, template and rule."),
		metric.WithUnit("{violation}"))
	if err != nil {
		return
	}
	c.Add(context.Background(), n, metric.WithAttributes(
		attribute.String(LabelBackend, backend),
		attribute.String("template", template),
		attribute.String("rule", rule),
	))
}
