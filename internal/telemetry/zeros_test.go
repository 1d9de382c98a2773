package telemetry

import (
	"testing"

	"github.com/pve-migration/router/routing"
)

// TestAlertCountersExistAtZero is finding 7 of issue 13: the counters that
// alerts read with rate() exist on /metrics before their first event, at
// zero, for every known label value.
func TestAlertCountersExistAtZero(t *testing.T) {
	f := newFixture(t, nil)
	fams := scrape(t, f.tel.MetricsHandler())
	for _, c := range routing.Categories() {
		if c == routing.NotNetwork {
			continue
		}
		t.Run(MetricFallbacks+"/"+c.String(), func(t *testing.T) {
			fam := fams[MetricFallbacks]
			if fam == nil {
				t.Fatalf("%s missing before the first fallback", MetricFallbacks)
			}
			if v := find(t, fam, map[string]string{LabelCategory: c.String()}).GetCounter().GetValue(); v != 0 {
				t.Errorf("value %v, want 0", v)
			}
		})
	}
	for _, r := range []string{"ok", "error", "unchanged"} {
		t.Run(MetricConfigReloads+"/"+r, func(t *testing.T) {
			fam := fams[MetricConfigReloads]
			if fam == nil {
				t.Fatalf("%s missing before the first reload", MetricConfigReloads)
			}
			if v := find(t, fam, map[string]string{LabelResult: r}).GetCounter().GetValue(); v != 0 {
				t.Errorf("value %v, want 0", v)
			}
		})
	}
	// The first event adds to the series that was already there.
	f.tel.RecordReload("error")
	fams = scrape(t, f.tel.MetricsHandler())
	if v := find(t, fams[MetricConfigReloads], map[string]string{LabelResult: "error"}).GetCounter().GetValue(); v != 1 {
		t.Errorf("reloads{result=error} = %v after one failed reload, want 1", v)
	}
}
