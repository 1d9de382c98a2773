package routerapp

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/internal/gate"
	"github.com/pve-migration/router/internal/localstate"
	"github.com/pve-migration/router/internal/telemetry"
	"github.com/pve-migration/router/routing"
)

// compareEvidence, when set (by a test), replaces the shadow comparison's
// figures that the gate reads.
var compareEvidence gate.CompareEvidence

// newGate builds the gate over the router's outcomes: it trips into
// local, resets a category's trip when a reload changes its backend, and
// exports pve_migration_gate_trips_total. Call it before the store is
// shared (it chains the store's reload hook).
func newGate(store *config.Store, local *localstate.State, tel *telemetry.Telemetry, evidence gate.CompareEvidence, logger *slog.Logger) (*gate.Gate, error) {
	if compareEvidence != nil {
		evidence = compareEvidence
	}
	g := gate.New(gate.Options{Config: store.Current, State: local, Compare: evidence, Logger: logger})
	prev := store.OnReload
	store.OnReload = func(result string, snap *config.Snapshot, err error) {
		if prev != nil {
			prev(result, snap, err)
		}
		if result == config.ResultOK {
			g.Reconfigure(snap)
		}
	}
	if err := tel.Register(gateCollector{g: g}); err != nil {
		return nil, fmt.Errorf("gate metrics: %w", err)
	}
	return g, nil
}

var (
	gateTrips   = prometheus.NewDesc("pve_migration_gate_trips_total", "Times the gate sent a category back to perl on this node.", []string{"category"}, nil)
	gateTripped = prometheus.NewDesc("pve_migration_gate_tripped", "1 while the gate holds the category on perl on this node.", []string{"category"}, nil)
	gateDropped = prometheus.NewDesc("pve_migration_gate_dropped_outcomes_total", "Outcomes the gate's queue had no room for (not judged).", nil, nil)
)

// gateCollector exports every network category, at zero too, so an alert
// on a rate of trips has a series before the first trip.
type gateCollector struct{ g *gate.Gate }

func (c gateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- gateTrips
	ch <- gateTripped
	ch <- gateDropped
}

func (c gateCollector) Collect(ch chan<- prometheus.Metric) {
	var tripped routing.CategorySet
	for _, cat := range c.g.Tripped() {
		tripped = tripped.With(cat)
	}
	for cat, n := range c.g.Trips() {
		ch <- prometheus.MustNewConstMetric(gateTrips, prometheus.CounterValue, float64(n), cat.String())
		v := 0.0
		if tripped.Has(cat) {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(gateTripped, prometheus.GaugeValue, v, cat.String())
	}
	ch <- prometheus.MustNewConstMetric(gateDropped, prometheus.CounterValue, float64(c.g.Dropped()))
}
