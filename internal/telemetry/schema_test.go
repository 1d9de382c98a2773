package telemetry

import "testing"

func TestSchemaViolationsMetric(t *testing.T) {
	f := newFixture(t, nil)
	f.tel.RecordSchemaViolations("rust", "/nodes/{node}/network", "type", 2)
	f.tel.RecordSchemaViolations("rust", "/nodes/{node}/network", "type", 1)
	f.tel.RecordSchemaViolations("perl", "/nodes/{node}/network", "format", 1)
	f.tel.RecordSchemaViolations("perl", "/nodes/{node}/network", "format", 0)
	fams := scrape(t, f.tel.MetricsHandler())
	fam := fams[MetricSchemaViolations]
	if fam == nil {
		t.Fatalf("%s missing from /metrics", MetricSchemaViolations)
	}
	for _, tc := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"backend": "rust", "template": "/nodes/{node}/network", "rule": "type"}, 3},
		{map[string]string{"backend": "perl", "template": "/nodes/{node}/network", "rule": "format"}, 1},
	} {
		if got := find(t, fam, tc.labels).GetCounter().GetValue(); got != tc.want {
			t.Errorf("%v = %v, want %v", tc.labels, got, tc.want)
		}
	}
	if n := len(fam.GetMetric()); n != 2 {
		t.Errorf("%d series, want 2", n)
	}

	f.metrics.Store(false)
	f.tel.RecordSchemaViolations("rust", "/nodes/{node}/network", "type", 5)
	fams = scrape(t, f.tel.MetricsHandler())
	if got := find(t, fams[MetricSchemaViolations], map[string]string{"backend": "rust", "rule": "type"}).GetCounter().GetValue(); got != 3 {
		t.Errorf("metrics_enabled = false still counted: %v", got)
	}
	var nilTel *Telemetry
	nilTel.RecordSchemaViolations("rust", "/x", "type", 1) // no panic
}
