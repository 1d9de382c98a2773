package routerapp

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pve-migration/router/envoy/dataplane"
)

// dataplaneCollector exports the embedded data plane's counters, the part
// of Envoy's stats that matters to an operator. A request that fails open
// never reaches the decision service, so without these a dead or slow
// service would be invisible on /metrics.
type dataplaneCollector struct {
	metrics func() dataplane.Metrics
}

var (
	dpRequests   = prometheus.NewDesc("pve_migration_dataplane_requests_total", "Downstream requests the embedded data plane received.", nil, nil)
	dpActive     = prometheus.NewDesc("pve_migration_dataplane_active_requests", "Requests in flight in the embedded data plane.", nil, nil)
	dpAttempts   = prometheus.NewDesc("pve_migration_dataplane_attempts_total", "Upstream attempts, retries included.", nil, nil)
	dpRetries    = prometheus.NewDesc("pve_migration_dataplane_retries_total", "Retries to perl, by the retry_on condition that allowed them.", []string{"reason"}, nil)
	dpServed     = prometheus.NewDesc("pve_migration_dataplane_served_total", "Final responses by the backend that produced them.", []string{"served_by"}, nil)
	dpLocal      = prometheus.NewDesc("pve_migration_dataplane_local_replies_total", "Responses the data plane made itself (413, 500, 503, 504...).", []string{"status"}, nil)
	dpFailOpen   = prometheus.NewDesc("pve_migration_dataplane_ext_proc_fail_open_total", "Requests that went on without the decision service (failure_mode_allow): routed to perl.", nil, nil)
	dpExtErrors  = prometheus.NewDesc("pve_migration_dataplane_ext_proc_errors_total", "ext_proc streams that failed.", nil, nil)
	dpExtTimeout = prometheus.NewDesc("pve_migration_dataplane_ext_proc_timeouts_total", "ext_proc messages not answered within message_timeout.", nil, nil)
	dpRejected   = prometheus.NewDesc("pve_migration_dataplane_rejected_header_mutations_total", "Header mutations refused by mutation_rules.", nil, nil)
	dpEjections  = prometheus.NewDesc("pve_migration_dataplane_ejections_total", "Outlier ejections of a backend.", nil, nil)
)

func (c dataplaneCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dpRequests, dpActive, dpAttempts, dpRetries, dpServed, dpLocal, dpFailOpen, dpExtErrors, dpExtTimeout, dpRejected, dpEjections} {
		ch <- d
	}
}

func (c dataplaneCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.metrics()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(dpRequests, m.Requests)
	ch <- prometheus.MustNewConstMetric(dpActive, prometheus.GaugeValue, float64(m.Active))
	counter(dpAttempts, m.Attempts)
	for reason, v := range m.Retries {
		counter(dpRetries, v, reason)
	}
	for backend, v := range m.ServedBy {
		counter(dpServed, v, backend)
	}
	for status, v := range m.LocalReplies {
		counter(dpLocal, v, strconv.Itoa(status))
	}
	counter(dpFailOpen, m.FailOpen)
	counter(dpExtErrors, m.ExtProcErrors)
	counter(dpExtTimeout, m.ExtProcTimeouts)
	counter(dpRejected, m.RejectedHeaderMutations)
	counter(dpEjections, m.Ejections)
}
