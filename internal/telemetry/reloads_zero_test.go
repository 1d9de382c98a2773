package telemetry

import "testing"

// TestReloadCountersStartAtZero: before any reload, /metrics already has
// pve_migration_config_reloads_total at 0 for every result. Prometheus
// sees no increase in a series that is born at 1, so without this the
// first rejected edit of a router's life would never raise
// PVEMigrationConfigReloadFailed (examples/prometheus/rules.yml).
func TestReloadCountersStartAtZero(t *testing.T) {
	f := newFixture(t, nil)
	fams := scrape(t, f.tel.MetricsHandler())
	fam, ok := fams[MetricConfigReloads]
	if !ok {
		t.Fatalf("%s is not on /metrics before the first reload", MetricConfigReloads)
	}
	for _, r := range []string{"ok", "error", "unchanged"} {
		if got := find(t, fam, map[string]string{LabelResult: r}).GetCounter().GetValue(); got != 0 {
			t.Errorf("%s{result=%q} = %v before any reload, want 0", MetricConfigReloads, r, got)
		}
	}
	f.tel.RecordReload("error")
	fam = scrape(t, f.tel.MetricsHandler())[MetricConfigReloads]
	if got := find(t, fam, map[string]string{LabelResult: "error"}).GetCounter().GetValue(); got != 1 {
		t.Errorf("after one rejected edit: %v, want 1", got)
	}
}
