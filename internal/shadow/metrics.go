package shadow

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pve-migration/router/internal/compare"
)

var (
	descCompare = prometheus.NewDesc("pve_migration_compare_total",
		"Shadow comparison jobs by category, template and result (match, mismatch, noise, error, skipped).",
		[]string{"category", "template", "result"}, nil)
	descInflight = prometheus.NewDesc("pve_migration_compare_inflight",
		"Shadow comparison jobs running now (at most [compare] max_inflight).", nil, nil)
	descQueued = prometheus.NewDesc("pve_migration_compare_queued",
		"Shadow comparison jobs waiting in the bounded queue.", nil, nil)
)

// Collector exports the report's totals as pve_migration_compare_total,
// plus the pool's load, read from the report at each scrape so /metrics,
// /compare and the CLI never disagree.
func (w *Worker) Collector() prometheus.Collector { return collector{w} }

type collector struct{ w *Worker }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descCompare
	ch <- descInflight
	ch <- descQueued
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.w.report.Summary()
	for _, t := range s.Templates {
		for _, r := range []struct {
			res compare.Result
			n   uint64
		}{{compare.Match, t.Matched}, {compare.Mismatch, t.Mismatched}, {compare.Noise, t.Noise}, {compare.Error, t.Errors}, {compare.Skipped, t.Skipped}} {
			ch <- prometheus.MustNewConstMetric(descCompare, prometheus.CounterValue, float64(r.n), t.Category, t.Template, string(r.res))
		}
	}
	st := c.w.Stats()
	ch <- prometheus.MustNewConstMetric(descInflight, prometheus.GaugeValue, float64(st.Inflight))
	ch <- prometheus.MustNewConstMetric(descQueued, prometheus.GaugeValue, float64(st.Queued))
}
