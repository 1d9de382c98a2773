package server

import (
	"github.com/pve-migration/router/internal/pveschema"
	"sort"
	"sync/atomic"
	"time"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/internal/outcome"
)

// ConfigSource is what the admin and control endpoints read from the
// configuration; *config.Store implements it.
type ConfigSource interface {
	// Current returns the snapshot in force, nil before one is loaded.
	Current() *config.Snapshot
	// LastReload describes the most recent reload attempt.
	LastReload() config.ReloadStatus
}

var _ ConfigSource = (*config.Store)(nil)

// Readiness records whether the gRPC listener is serving, so /health can
// tell Envoy's operators that ext_proc is up, not just that the admin port
// answers. Serve sets it; the zero value is "not serving".
type Readiness struct{ grpc atomic.Bool }

// SetGRPCServing records whether the gRPC server accepts streams.
func (r *Readiness) SetGRPCServing(v bool) { r.grpc.Store(v) }

// GRPCServing reports whether the gRPC server accepts streams.
func (r *Readiness) GRPCServing() bool { return r != nil && r.grpc.Load() }

// Status is everything `migration-ctl status` shows, as /status serves
// it in JSON and GetStatus in protobuf. Both are built from one
// collectStatus call so they cannot disagree.
type Status struct {
	Phase       string         `json:"phase"`
	PhaseSource string         `json:"phase_source"`
	Fallback    FallbackStatus `json:"fallback"`
	Features    FeatureStatus  `json:"features"`
	// Endpoints are the [endpoints."TEMPLATE"] tables, sorted by template.
	Endpoints  []EndpointStatus `json:"endpoints"`
	ConfigPath string           `json:"config_path"`
	LoadedAt   *time.Time       `json:"loaded_at,omitempty"`
	LastReload ReloadView       `json:"last_reload"`
	// PerlAPIBaseURL is shown without credentials. Of the token only
	// whether it is set and its non-secret USER@REALM!TOKENID are shown.
	PerlAPIBaseURL  string `json:"perl_api_base_url"`
	PerlAPITokenSet bool   `json:"perl_api_token_set"`
	PerlAPITokenID  string `json:"perl_api_token_id,omitempty"`
	LogDecisions    bool   `json:"log_decisions"`
	MetricsEnabled  bool   `json:"metrics_enabled"`
	// Stats is nil when no StatsSource is wired (metrics disabled).
	Stats   *StatsView   `json:"stats,omitempty"`
	Health  HealthReport `json:"health"`
	Serving bool         `json:"serving"`
	Version string       `json:"version,omitempty"`
	// KillSwitch is true while the node-local kill switch sends every
	// request to perl; Node is the router's own node (nil without one).
	KillSwitch bool        `json:"kill_switch"`
	Node       *NodeStatus `json:"node,omitempty"`
	// Gate lists the categories the gate tripped back to perl here.
	Gate GateView `json:"gate"`
	// Schema is the PVE API schema the compare jobs' answers are checked
	// against; nil while schema checking is off.
	Schema *pveschema.Status `json:"schema,omitempty"`
}

// FallbackStatus is the global Rust → Perl fallback setting.
type FallbackStatus struct {
	Enabled        bool          `json:"enabled"`
	Source         string        `json:"source"`
	Timeout        time.Duration `json:"-"`
	TimeoutSeconds float64       `json:"timeout_seconds"`
}

// FeatureStatus is the [features] table.
type FeatureStatus struct {
	EnableSDNMigration       bool `json:"enable_sdn_migration"`
	EnableAdvancedNetworking bool `json:"enable_advanced_networking"`
}

// EndpointStatus is one [endpoints."TEMPLATE"] table; nil fields are not
// set by the table.
type EndpointStatus struct {
	Template           string        `json:"template"`
	UseRust            *bool         `json:"use_rust,omitempty"`
	RustMethods        []string      `json:"rust_methods,omitempty"`
	FallbackOnError    *bool         `json:"fallback_on_error,omitempty"`
	RustTimeout        time.Duration `json:"-"`
	RustTimeoutSeconds float64       `json:"rust_timeout_seconds,omitempty"`
}

// ReloadView is config.ReloadStatus for display.
type ReloadView struct {
	At     *time.Time `json:"at,omitempty"`
	Result string     `json:"result"`
	Error  string     `json:"error,omitempty"`
}

// StatsView is outcome.Stats for display.
type StatsView struct {
	TotalRequests   uint64                      `json:"total_requests"`
	ByBackend       map[string]BackendStatsView `json:"by_backend"`
	RustDecisions   uint64                      `json:"rust_decisions"`
	RustSuccesses   uint64                      `json:"rust_successes"`
	Fallbacks       uint64                      `json:"fallbacks"`
	RustSuccessRate float64                     `json:"rust_success_rate"`
	FallbackRate    float64                     `json:"fallback_rate"`
}

// BackendStatsView is outcome.BackendStats for display.
type BackendStatsView struct {
	Requests   uint64  `json:"requests"`
	Errors     uint64  `json:"errors"`
	ErrorRate  float64 `json:"error_rate"`
	AvgSeconds float64 `json:"avg_seconds"`
	P50Seconds float64 `json:"p50_seconds"`
	P99Seconds float64 `json:"p99_seconds"`
}

// statusSources is what a status is collected from.
type statusSources struct {
	config  ConfigSource
	health  *HealthChecker
	stats   outcome.StatsSource
	version string
	ready   *Readiness
	node    NodeSource
	gate    GateSource
	schema  SchemaSource
}

// serving is the /health verdict: a config is loaded and, when Serve
// reports readiness, the gRPC listener is up.
func (s statusSources) serving(snap *config.Snapshot) bool {
	return snap != nil && (s.ready == nil || s.ready.GRPCServing())
}

func (s statusSources) collect() Status {
	var snap *config.Snapshot
	var reload config.ReloadStatus
	if s.config != nil {
		snap = s.config.Current()
		reload = s.config.LastReload()
	}
	st := Status{
		Health:     s.health.Report(),
		Serving:    s.serving(snap),
		Version:    s.version,
		LastReload: reloadView(reload),
		Endpoints:  []EndpointStatus{},
		Gate:       gateView(s.gate),
	}
	if s.schema != nil && s.schema.Enabled() {
		ss := s.schema.Status()
		st.Schema = &ss
	}
	if snap != nil {
		p := snap.Policy
		st.Phase = p.Phase.String()
		st.PhaseSource = string(snap.PhaseSource)
		st.Fallback = FallbackStatus{Enabled: p.FallbackEnabled, Source: string(snap.FallbackSource), Timeout: p.FallbackTimeout, TimeoutSeconds: p.FallbackTimeout.Seconds()}
		st.Features = FeatureStatus{EnableSDNMigration: p.Features.EnableSDNMigration, EnableAdvancedNetworking: p.Features.EnableAdvancedNetworking}
		for tmpl, r := range p.Endpoints {
			st.Endpoints = append(st.Endpoints, EndpointStatus{
				Template: tmpl, UseRust: r.UseRust, RustMethods: r.RustMethods,
				FallbackOnError: r.FallbackOnError, RustTimeout: r.RustTimeout, RustTimeoutSeconds: r.RustTimeout.Seconds(),
			})
		}
		sort.Slice(st.Endpoints, func(i, j int) bool { return st.Endpoints[i].Template < st.Endpoints[j].Template })
		st.ConfigPath = snap.Path
		if !snap.LoadedAt.IsZero() {
			at := snap.LoadedAt
			st.LoadedAt = &at
		}
		st.PerlAPIBaseURL = displayURL(snap.PerlAPIBaseURL)
		st.PerlAPITokenSet = snap.PerlAPIToken.IsSet()
		st.PerlAPITokenID = snap.PerlAPIToken.ID()
		st.LogDecisions = snap.LogDecisions
		st.MetricsEnabled = snap.MetricsEnabled
	}
	if s.stats != nil {
		st.Stats = statsView(s.stats.Stats())
	}
	if s.node != nil {
		n := s.node.NodeStatus()
		st.Node, st.KillSwitch = &n, n.KillSwitch
	}
	return st
}

func reloadView(r config.ReloadStatus) ReloadView {
	v := ReloadView{Result: r.Result}
	if !r.At.IsZero() {
		at := r.At
		v.At = &at
	}
	if r.Err != nil {
		v.Error = r.Err.Error()
	}
	return v
}

func statsView(s outcome.Stats) *StatsView {
	v := &StatsView{
		TotalRequests: s.TotalRequests, ByBackend: map[string]BackendStatsView{},
		RustDecisions: s.RustDecisions, RustSuccesses: s.RustSuccesses, Fallbacks: s.Fallbacks,
		RustSuccessRate: s.RustSuccessRate, FallbackRate: s.FallbackRate,
	}
	for k, b := range s.ByBackend {
		v.ByBackend[k] = BackendStatsView(b)
	}
	return v
}
