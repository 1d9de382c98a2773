package server

import (
	"encoding/json"
	"net/http"

	"github.com/pve-migration/router/internal/compare"
	"github.com/pve-migration/router/internal/outcome"
)

// AdminOptions wires the admin HTTP endpoints. Every field is optional;
// what is missing shows as unknown or empty.
type AdminOptions struct {
	// Config is the configuration store (config.Store).
	Config ConfigSource
	// Health supplies the backends' last probes.
	Health *HealthChecker
	// Metrics serves GET /metrics (the telemetry package's Prometheus
	// handler); nil answers 404.
	Metrics http.Handler
	// Stats feeds the statistics of /status.
	Stats outcome.StatsSource
	// Version is the router's version string.
	Version string
	// Ready is the readiness Serve maintains; nil means /health only
	// checks that a config is loaded.
	Ready *Readiness
	// Node, if set, adds the router's node, kill switch and state file
	// to /status.
	Node NodeSource
	// Gate supplies the gate's trips; nil shows none.
	Gate GateSource
	// Compare is the shadow comparison's report, served as /compare and
	// /compare.json; nil shows an empty report.
	Compare *compare.Report
	// Schema is the schema conformance shown with the comparison; nil
	// shows none.
	Schema SchemaSource
}

// HealthView is the JSON of GET /health.
type HealthView struct {
	// Status is "serving" or "not-serving", the verdict behind the HTTP
	// status code (200 or 503).
	Status      string      `json:"status"`
	Serving     bool        `json:"serving"`
	Phase       string      `json:"phase"`
	PhaseSource string      `json:"phase_source"`
	ConfigPath  string      `json:"config_path"`
	LastReload  ReloadView  `json:"last_reload"`
	Perl        ProbeResult `json:"perl"`
	Rust        ProbeResult `json:"rust"`
	Version     string      `json:"version,omitempty"`
}

// NewAdminHandler serves the admin port:
//
//	GET /health   200 while serving (config loaded, gRPC up), else 503
//	GET /metrics  the injected Prometheus handler
//	GET /status   everything `migration-ctl status` shows, as JSON
//
// Backend reachability is reported but does not fail /health: the router
// is healthy when it can answer Envoy, and an unreachable Rust is exactly
// what the fallback is for.
func NewAdminHandler(opts AdminOptions) http.Handler {
	src := statusSources{config: opts.Config, health: opts.Health, stats: opts.Stats, version: opts.Version, ready: opts.Ready, node: opts.Node, gate: opts.Gate, schema: opts.Schema}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		st := src.collect()
		v := HealthView{
			Status: "not-serving", Serving: st.Serving,
			Phase: st.Phase, PhaseSource: st.PhaseSource, ConfigPath: st.ConfigPath,
			LastReload: st.LastReload, Perl: st.Health.Perl, Rust: st.Health.Rust, Version: st.Version,
		}
		code := http.StatusServiceUnavailable
		if st.Serving {
			v.Status, code = "serving", http.StatusOK
		}
		writeJSON(w, code, v)
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, src.collect())
	})
	if opts.Metrics != nil {
		mux.Handle("GET /metrics", opts.Metrics)
	} else {
		mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "metrics are not enabled", http.StatusNotFound)
		})
	}
	registerCompare(mux, opts)
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
