package telemetry

import (
	"math"

	dto "github.com/prometheus/client_model/go"

	"github.com/pve-migration/router/internal/outcome"
)

// Stats computes the seed's monitoring figures (total requests, Rust
// success rate, fallback rate, average and percentile times, error rates)
// from the very families /metrics serves: it gathers the same registry, so
// /status, `migration-ctl status` and Prometheus can never disagree, and
// the request path pays for one set of instruments only.
//
// Definitions: TotalRequests counts every request, abandoned ones included.
// ByBackend is keyed by who served ("rust", "perl", "none" when no backend
// answered) and counts completed requests; Errors are 5xx answers and
// requests no backend answered. RustDecisions counts completed requests
// decided for Rust; RustSuccessRate is the share of them Rust answered
// without a 5xx, FallbackRate the share Perl served instead. Times come
// from pve_migration_upstream_duration_seconds; percentiles are estimated
// from its buckets by linear interpolation, as histogram_quantile does, so
// they are only as precise as the bucket bounds. With metrics_enabled off
// the figures stop growing.
func (t *Telemetry) Stats() outcome.Stats {
	st := outcome.Stats{ByBackend: map[string]outcome.BackendStats{}}
	families, _ := t.reg.Gather() // a partial gather still has our families
	var upstream *dto.MetricFamily
	for _, f := range families {
		switch f.GetName() {
		case MetricRequests:
			for _, m := range f.GetMetric() {
				addRequestSample(&st, m)
			}
		case MetricFallbacks:
			for _, m := range f.GetMetric() {
				st.Fallbacks += uint64(m.GetCounter().GetValue())
			}
		case MetricUpstreamDuration:
			upstream = f
		}
	}
	if upstream != nil {
		for _, m := range upstream.GetMetric() {
			h := m.GetHistogram()
			if h.GetSampleCount() == 0 {
				continue
			}
			by := label(m, LabelServedBy)
			b := st.ByBackend[by]
			b.AvgSeconds = h.GetSampleSum() / float64(h.GetSampleCount())
			b.P50Seconds = quantile(0.5, h)
			b.P99Seconds = quantile(0.99, h)
			st.ByBackend[by] = b
		}
	}
	for k, b := range st.ByBackend {
		b.ErrorRate = ratio(b.Errors, b.Requests)
		st.ByBackend[k] = b
	}
	st.RustSuccessRate = ratio(st.RustSuccesses, st.RustDecisions)
	st.FallbackRate = ratio(st.Fallbacks, st.RustDecisions)
	return st
}

func addRequestSample(st *outcome.Stats, m *dto.Metric) {
	n := uint64(m.GetCounter().GetValue())
	if n == 0 {
		return
	}
	st.TotalRequests += n
	oc := label(m, LabelOutcome)
	if oc == OutcomeAbandoned {
		return
	}
	by := label(m, LabelServedBy)
	b := st.ByBackend[by]
	b.Requests += n
	failed := oc == OutcomeServerError || oc == OutcomeNoResponse
	if failed {
		b.Errors += n
	}
	st.ByBackend[by] = b
	if label(m, LabelBackend) == "rust" {
		st.RustDecisions += n
		if by == "rust" && !failed {
			st.RustSuccesses += n
		}
	}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func ratio(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// quantile estimates the q-quantile of a classic histogram the way
// Prometheus' histogram_quantile does: find the bucket holding the rank and
// interpolate linearly inside it (from 0 for the first bucket). A rank in
// the +Inf bucket reports the highest finite bound.
func quantile(q float64, h *dto.Histogram) float64 {
	total := float64(h.GetSampleCount())
	if total == 0 {
		return 0
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for _, b := range h.GetBucket() {
		upper, cum := b.GetUpperBound(), float64(b.GetCumulativeCount())
		if math.IsInf(upper, 1) {
			break
		}
		if cum >= rank {
			if cum == below {
				return upper
			}
			return lower + (upper-lower)*(rank-below)/(cum-below)
		}
		lower, below = upper, cum
	}
	return lower
}
