package ctl

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/internal/killswitch"
	pb "github.com/pve-migration/router/proto/pvemigration/v1"
	"github.com/pve-migration/router/routing"
)

// DefaultRouterAddr is the router's default --grpc-listen, where its
// control API answers.
const DefaultRouterAddr = "127.0.0.1:50051"

// Thresholds at which status colours a rate as a warning or a problem.
// They are the runbook's gates for advancing a phase.
const (
	rustSuccessWarn = 0.99
	rustSuccessBad  = 0.95
	fallbackWarn    = 0.01
	fallbackBad     = 0.05
	errorRateWarn   = 0.01
	errorRateBad    = 0.05
)

func statusCommand() *command {
	return &command{
		name:    "status",
		summary: "show the live phase, fallback, counters and health (router, else the file)",
		details: `Asks the running router (its gRPC control API, --router) what it serves: the
phase and where it came from (file, env or default), fallback, feature flags,
endpoint rules, the last config reload and its error, request counts, the
rust success and fallback rates, error rates and latencies per backend, and
whether the perl and rust APIs answer its probes.

When the router cannot be reached, status reads the config file instead,
says so, and still exits 0: the file is what every router will serve once it
runs. It exits 1 only when neither the router nor a valid file is available.`,
		examples: []string{
			prog + " status",
			prog + " status --router unix:/run/migration-router/grpc.sock --json",
		},
		maxArgs: 0,
		define: func(fs *flag.FlagSet) runFunc {
			jsonOut := fs.Bool("json", false, "print one JSON object")
			router := fs.String("router", defaultRouter(), "the router's gRPC `ADDR` (host:port or unix:/path)")
			timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for the router")
			cluster := fs.Bool("cluster", false, "every node of the cluster, from the state files next to the config file")
			staleAfter := fs.Duration("stale-after", 0, "with --cluster: call a node stale after this long without a report (default: three of its heartbeats)")
			ks := fs.String("kill-switch", killswitch.DefaultPath, "this node's kill switch `PATH`, shown when the router is not reachable")
			return func(a *app, cfg configFlag, _ []string) int {
				if *cluster {
					return a.clusterStatus(cfg, *jsonOut, *staleAfter)
				}
				return a.statusWithKillSwitch(cfg, *router, *timeout, *jsonOut, *ks)
			}
		},
	}
}

// statusView is what status shows, filled from the router or from the
// file; it is also the --json object.
type statusView struct {
	Source                 string                 `json:"source"` // "router" or "file"
	Router                 routerView             `json:"router"`
	Phase                  string                 `json:"phase"`
	PhaseSource            string                 `json:"phase_source"`
	Fallback               bool                   `json:"fallback"`
	FallbackSource         string                 `json:"fallback_source"`
	FallbackTimeoutSeconds float64                `json:"fallback_timeout_seconds"`
	Features               featuresView           `json:"features"`
	Endpoints              []endpointView         `json:"endpoints"`
	Config                 string                 `json:"config"`
	ConfigExists           bool                   `json:"config_exists"`
	LoadedAt               *time.Time             `json:"loaded_at,omitempty"`
	LastReload             *reloadView            `json:"last_reload,omitempty"`
	Stats                  *statsView             `json:"stats,omitempty"`
	Health                 map[string]*healthView `json:"health,omitempty"`
	PerlAPIBaseURL         string                 `json:"perl_api_base_url"`
	PerlAPITokenSet        bool                   `json:"perl_api_token_set"`
	Notes                  []string               `json:"notes"`
	FileView               *fileComparison        `json:"file,omitempty"`
	// KillSwitch and Node: see cluster.go.
	KillSwitch bool           `json:"kill_switch"`
	Node       *nodeStatView  `json:"node,omitempty"`
	Gate       gateStatusView `json:"gate"`
	// Schema is the PVE API schema compared answers are checked against.
	Schema *schemaStatView `json:"schema,omitempty"`
}

// schemaStatView is the router's schema in force, as /status shows it.
type schemaStatView struct {
	Source    string   `json:"source"`
	Version   string   `json:"version"`
	Methods   int      `json:"methods"`
	Unchecked []string `json:"unchecked,omitempty"`
	Error     string   `json:"error,omitempty"`
}

type routerView struct {
	Address   string `json:"address"`
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
	Version   string `json:"version,omitempty"`
}

type featuresView struct {
	EnableSDNMigration       bool `json:"enable_sdn_migration"`
	EnableAdvancedNetworking bool `json:"enable_advanced_networking"`
}

type endpointView struct {
	Template           string   `json:"template"`
	UseRust            *bool    `json:"use_rust,omitempty"`
	RustMethods        []string `json:"rust_methods,omitempty"`
	FallbackOnError    *bool    `json:"fallback_on_error,omitempty"`
	RustTimeoutSeconds float64  `json:"rust_timeout_seconds,omitempty"`
}

type reloadView struct {
	At     *time.Time `json:"at,omitempty"`
	Result string     `json:"result"`
	Error  string     `json:"error,omitempty"`
}

type statsView struct {
	TotalRequests   uint64                  `json:"total_requests"`
	RustDecisions   uint64                  `json:"rust_decisions"`
	RustSuccesses   uint64                  `json:"rust_successes"`
	Fallbacks       uint64                  `json:"fallbacks"`
	RustSuccessRate float64                 `json:"rust_success_rate"`
	FallbackRate    float64                 `json:"fallback_rate"`
	ByBackend       map[string]backendStats `json:"by_backend"`
}

type backendStats struct {
	Requests   uint64  `json:"requests"`
	Errors     uint64  `json:"errors"`
	ErrorRate  float64 `json:"error_rate"`
	AvgSeconds float64 `json:"avg_seconds"`
	P50Seconds float64 `json:"p50_seconds"`
	P99Seconds float64 `json:"p99_seconds"`
}

type healthView struct {
	URL            string     `json:"url"`
	State          string     `json:"state"`
	Reachable      bool       `json:"reachable"`
	LatencySeconds float64    `json:"latency_seconds"`
	HTTPStatus     int        `json:"http_status,omitempty"`
	Error          string     `json:"error,omitempty"`
	CheckedAt      *time.Time `json:"checked_at,omitempty"`
}

// fileComparison is what the config file says now, next to what the
// router serves: they differ right after an edit, or when the router
// rejected the file, or reads another one.
type fileComparison struct {
	Path     string `json:"path"`
	Phase    string `json:"phase,omitempty"`
	Fallback *bool  `json:"fallback,omitempty"`
	Error    string `json:"error,omitempty"`
}

func (a *app) status(cfg configFlag, addr string, timeout time.Duration, jsonOut bool) int {
	resp, err := fetchStatus(a.ctx, addr, timeout)
	var v *statusView
	if err == nil {
		v = viewFromRouter(addr, resp)
		a.compareWithFile(cfg, v)
	} else {
		path, explicit := cfg.resolve(a.getenv)
		snap, lerr := config.LoadResolved(path, explicit, a.getenv)
		if lerr != nil {
			fmt.Fprintf(a.stderr, "error: the router is not reachable at %s (%s) and the config file cannot be read either\n", addr, grpcMessage(err))
			a.reportLoadError(path, lerr)
			return ExitFailure
		}
		v = viewFromSnapshot(snap, path)
		v.Router = routerView{Address: addr, Error: grpcMessage(err)}
		v.Notes = append(v.Notes, "the router is not reachable: showing the config file; live counters, health and reloads are unknown")
		a.localKillSwitch(v)
		if snap.PhaseSource == config.SourceEnv {
			v.Notes = append(v.Notes, fmt.Sprintf("the phase comes from %s in this shell; the router's own environment may differ", config.EnvPhase))
		}
	}
	if jsonOut {
		a.printJSON(v)
		return ExitOK
	}
	a.printStatus(v)
	return ExitOK
}

// fetchStatus asks the router's control API, failing fast: a refused
// connection returns at once instead of waiting out the timeout.
func fetchStatus(ctx context.Context, addr string, timeout time.Duration) (*pb.GetStatusResponse, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return pb.NewControlServiceClient(conn).GetStatus(ctx, &pb.GetStatusRequest{})
}

// grpcMessage is a gRPC error without its "rpc error: code = ..." framing.
func grpcMessage(err error) string {
	if s, ok := status.FromError(err); ok {
		msg := s.Message()
		// "connection error: desc = \"transport: Error while dialing: dial tcp ...: connect: connection refused\""
		if i := strings.LastIndex(msg, ": "); i >= 0 && strings.Contains(msg, "dial") {
			msg = strings.Trim(msg[i+2:], `"`)
		}
		return strings.ToLower(s.Code().String()) + ": " + msg
	}
	return err.Error()
}

func viewFromRouter(addr string, r *pb.GetStatusResponse) *statusView {
	v := &statusView{
		Source:                 "router",
		Router:                 routerView{Address: addr, Reachable: true, Version: r.GetVersion()},
		Phase:                  r.GetPhase(),
		PhaseSource:            r.GetPhaseSource(),
		Fallback:               r.GetFallbackEnabled(),
		FallbackSource:         r.GetFallbackSource(),
		FallbackTimeoutSeconds: r.GetFallbackTimeout().AsDuration().Seconds(),
		Features: featuresView{
			EnableSDNMigration:       r.GetFeatures().GetEnableSdnMigration(),
			EnableAdvancedNetworking: r.GetFeatures().GetEnableAdvancedNetworking(),
		},
		Endpoints:       []endpointView{},
		Config:          r.GetConfigPath(),
		ConfigExists:    r.GetConfigPath() != "",
		PerlAPIBaseURL:  r.GetPerlApiBaseUrl(),
		PerlAPITokenSet: r.GetPerlApiTokenSet(),
		Notes:           []string{},
		KillSwitch:      r.GetKillSwitch(),
		Node:            nodeStatFrom(r.GetNode()),
		Gate:            gateStatusView{Tripped: append([]string{}, r.GetGateTripped()...)},
		Schema:          schemaStatFrom(r.GetSchema()),
	}
	if r.GetLoadedAt() != nil {
		t := r.GetLoadedAt().AsTime()
		v.LoadedAt = &t
	}
	for _, e := range r.GetEndpoints() {
		ev := endpointView{Template: e.GetTemplate(), UseRust: e.UseRust, RustMethods: e.GetRustMethods(), FallbackOnError: e.FallbackOnError}
		if e.GetRustTimeout() != nil {
			ev.RustTimeoutSeconds = e.GetRustTimeout().AsDuration().Seconds()
		}
		v.Endpoints = append(v.Endpoints, ev)
	}
	if lr := r.GetLastReload(); lr != nil {
		v.LastReload = &reloadView{Result: lr.GetResult(), Error: lr.GetError()}
		if lr.GetAt() != nil {
			t := lr.GetAt().AsTime()
			v.LastReload.At = &t
		}
	}
	if s := r.GetStats(); s != nil {
		v.Stats = &statsView{
			TotalRequests: s.GetTotalRequests(), RustDecisions: s.GetRustDecisions(), RustSuccesses: s.GetRustSuccesses(),
			Fallbacks: s.GetFallbacks(), RustSuccessRate: s.GetRustSuccessRate(), FallbackRate: s.GetFallbackRate(),
			ByBackend: map[string]backendStats{},
		}
		for k, b := range s.GetByBackend() {
			v.Stats.ByBackend[k] = backendStats{
				Requests: b.GetRequests(), Errors: b.GetErrors(), ErrorRate: b.GetErrorRate(),
				AvgSeconds: b.GetAvgSeconds(), P50Seconds: b.GetP50Seconds(), P99Seconds: b.GetP99Seconds(),
			}
		}
	}
	if h := r.GetHealth(); h != nil {
		v.Health = map[string]*healthView{"perl": healthFrom(h.GetPerl()), "rust": healthFrom(h.GetRust())}
	}
	if v.LastReload != nil && v.LastReload.Result == config.ResultError {
		v.Notes = append(v.Notes, "the last reload was rejected: the router keeps serving its last good configuration; run: "+prog+" validate")
	}
	return v
}

func healthFrom(h *pb.BackendHealth) *healthView {
	if h == nil {
		return nil
	}
	v := &healthView{URL: h.GetUrl(), State: h.GetState(), Reachable: h.GetReachable(), HTTPStatus: int(h.GetHttpStatus()), Error: h.GetError()}
	if h.GetLatency() != nil {
		v.LatencySeconds = h.GetLatency().AsDuration().Seconds()
	}
	if h.GetCheckedAt() != nil {
		t := h.GetCheckedAt().AsTime()
		v.CheckedAt = &t
	}
	return v
}

func viewFromSnapshot(snap *config.Snapshot, path string) *statusView {
	p := snap.Policy
	v := &statusView{
		Source:                 "file",
		Phase:                  p.Phase.String(),
		PhaseSource:            string(snap.PhaseSource),
		Fallback:               p.FallbackEnabled,
		FallbackSource:         string(snap.FallbackSource),
		FallbackTimeoutSeconds: p.FallbackTimeout.Seconds(),
		Features:               featuresView{EnableSDNMigration: p.Features.EnableSDNMigration, EnableAdvancedNetworking: p.Features.EnableAdvancedNetworking},
		Endpoints:              []endpointView{},
		Config:                 path,
		ConfigExists:           snap.FileExists,
		PerlAPIBaseURL:         snap.PerlAPIBaseURL,
		PerlAPITokenSet:        snap.PerlAPIToken.IsSet(),
		Notes:                  []string{},
		Gate:                   gateStatusView{Tripped: []string{}},
	}
	for _, tmpl := range routing.Templates() { // catalogue order, stable
		r, ok := p.Endpoints[tmpl]
		if !ok {
			continue
		}
		v.Endpoints = append(v.Endpoints, endpointView{Template: tmpl, UseRust: r.UseRust, RustMethods: r.RustMethods,
			FallbackOnError: r.FallbackOnError, RustTimeoutSeconds: r.RustTimeout.Seconds()})
	}
	slices.SortFunc(v.Endpoints, func(x, y endpointView) int { return strings.Compare(x.Template, y.Template) })
	return v
}

// compareWithFile reads the file the router serves (or --config) and notes
// where it differs from what the router serves: an edit not yet picked up
// or rejected, an environment override, another file.
func (a *app) compareWithFile(cfg configFlag, v *statusView) {
	path, explicit := cfg.resolve(a.getenv)
	if v.Config != "" && cfg.value == "" && a.getenv(config.EnvConfig) == "" {
		path, explicit = v.Config, true
	}
	fc := &fileComparison{Path: path}
	v.FileView = fc
	// The router's environment is not ours: compare with the file alone.
	snap, err := config.LoadResolved(path, explicit, nil)
	if err != nil {
		fc.Error = err.Error()
		v.Notes = append(v.Notes, fmt.Sprintf("%s does not load here: %s", path, firstLine(err.Error())))
		return
	}
	fc.Phase = snap.Policy.Phase.String()
	fb := snap.Policy.FallbackEnabled
	fc.Fallback = &fb
	if v.Config != "" && path != v.Config {
		v.Notes = append(v.Notes, fmt.Sprintf("the router reads %s, not %s", v.Config, path))
	}
	switch {
	case v.PhaseSource == string(config.SourceEnv) && fc.Phase != v.Phase:
		v.Notes = append(v.Notes, fmt.Sprintf("the file says phase %s, but %s in the router's environment overrides it", fc.Phase, config.EnvPhase))
	case fc.Phase != v.Phase:
		v.Notes = append(v.Notes, fmt.Sprintf("the file says phase %s: the router has not applied it yet (it reloads within seconds) or rejected it (see reload)", fc.Phase))
	}
	if v.FallbackSource == string(config.SourceEnv) && fb != v.Fallback {
		v.Notes = append(v.Notes, fmt.Sprintf("the file says fallback %s, but %s in the router's environment overrides it", onOff(fb), config.EnvFallback))
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}

func (a *app) printStatus(v *statusView) {
	s := a.style
	t := &table{}
	line := func(k, format string, args ...any) { t.add(k, fmt.Sprintf(format, args...)) }

	if v.Source == "router" {
		ver := ""
		if v.Router.Version != "" {
			ver = " (version " + v.Router.Version + ")"
		}
		line("router", "%s %s%s", s.good("up"), v.Router.Address, ver)
	} else {
		line("router", "%s at %s (%s)", s.bad("not reachable"), v.Router.Address, v.Router.Error)
		line("", "%s", s.warn("showing the config file instead; is migration-router running? (systemctl status migration-router)"))
	}
	line("phase", "%s (from %s)", s.bold(v.Phase), sourceText(config.Source(v.PhaseSource), config.EnvPhase))
	line("fallback", "%s (from %s), rust timeout %s", onOff(v.Fallback), sourceText(config.Source(v.FallbackSource), config.EnvFallback), seconds(time.Duration(v.FallbackTimeoutSeconds*float64(time.Second))))
	line("features", "enable_sdn_migration=%t enable_advanced_networking=%t", v.Features.EnableSDNMigration, v.Features.EnableAdvancedNetworking)
	if len(v.Endpoints) == 0 {
		line("endpoints", "none")
	}
	for i, e := range v.Endpoints {
		k := ""
		if i == 0 {
			k = "endpoints"
		}
		line(k, "%s", endpointText(e))
	}
	cfgText := v.Config
	switch {
	case v.Config == "":
		cfgText = "(none: built-in defaults)"
	case !v.ConfigExists:
		cfgText += " (absent: built-in defaults)"
	}
	if v.LoadedAt != nil {
		cfgText += ", loaded " + v.LoadedAt.Local().Format(time.DateTime)
	}
	line("config", "%s", cfgText)
	if r := v.LastReload; r != nil {
		switch {
		case r.Result == "":
			line("reload", "none since start")
		case r.Result == config.ResultError:
			line("reload", "%s at %s: %s", s.bad("error"), fmtTime(r.At), firstLine(r.Error))
			line("", "the router keeps serving its last good configuration")
		default:
			line("reload", "%s at %s", r.Result, fmtTime(r.At))
		}
	}
	if v.Source == "router" {
		for _, name := range []string{"perl", "rust"} {
			line(name+" api", "%s", a.healthText(v.Health[name]))
		}
	}
	tok := "not set (" + config.EnvPerlAPIToken + ")"
	if v.PerlAPITokenSet {
		tok = "set"
	}
	line("perl url", "%s, token %s", v.PerlAPIBaseURL, tok)
	a.nodeLines(v, line)
	if v.Schema != nil {
		if v.Schema.Error != "" {
			line("schema", "%s %s (%s: %s)", v.Schema.Source, v.Schema.Version, s.bad("api_schema unusable"), v.Schema.Error)
		} else {
			line("schema", "%s %s", v.Schema.Source, v.Schema.Version)
		}
	}
	if len(v.Gate.Tripped) > 0 {
		line("gate", "%s %s (on perl here until: %s gate reset)", s.bad("tripped"), strings.Join(v.Gate.Tripped, ", "), prog)
	}
	t.write(a.stdout, "")

	if st := v.Stats; st != nil {
		fmt.Fprintln(a.stdout)
		fmt.Fprintf(a.stdout, "requests  %d total, %d decided for rust\n", st.TotalRequests, st.RustDecisions)
		if st.RustDecisions > 0 {
			fmt.Fprintf(a.stdout, "rust      success rate %s, fallback rate %s (%d fallbacks)\n",
				a.rate(st.RustSuccessRate, false, rustSuccessWarn, rustSuccessBad),
				a.rate(st.FallbackRate, true, fallbackWarn, fallbackBad), st.Fallbacks)
		}
		if len(st.ByBackend) > 0 {
			bt := &table{right: true}
			bt.add("served by", "requests", "errors", "error rate", "avg", "p50", "p99")
			for _, k := range slices.Sorted(maps.Keys(st.ByBackend)) {
				b := st.ByBackend[k]
				bt.add(k, fmt.Sprint(b.Requests), fmt.Sprint(b.Errors),
					a.rate(b.ErrorRate, true, errorRateWarn, errorRateBad), ms(b.AvgSeconds), ms(b.P50Seconds), ms(b.P99Seconds))
			}
			bt.write(a.stdout, "")
		}
	} else if v.Source == "router" {
		fmt.Fprintln(a.stdout, "\nrequests  not counted (metrics_enabled = false)")
	}
	for _, n := range v.Notes {
		fmt.Fprintf(a.stdout, "note: %s\n", n)
	}
}

func endpointText(e endpointView) string {
	var parts []string
	if e.UseRust != nil {
		parts = append(parts, fmt.Sprintf("use_rust=%t", *e.UseRust))
	}
	if len(e.RustMethods) > 0 {
		parts = append(parts, "rust_methods="+strings.Join(e.RustMethods, ","))
	}
	if e.FallbackOnError != nil {
		parts = append(parts, fmt.Sprintf("fallback_on_error=%t", *e.FallbackOnError))
	}
	if e.RustTimeoutSeconds > 0 {
		parts = append(parts, "rust_timeout="+seconds(time.Duration(e.RustTimeoutSeconds*float64(time.Second))))
	}
	return e.Template + "  " + strings.Join(parts, " ")
}

func (a *app) healthText(h *healthView) string {
	s := a.style
	if h == nil || h.State == "" || h.State == "unknown" {
		if h != nil && h.URL == "" {
			return "unknown (no URL configured)"
		}
		return "unknown (not probed yet)"
	}
	if !h.Reachable {
		return fmt.Sprintf("%s %s: %s", s.bad("unreachable"), h.URL, h.Error)
	}
	out := fmt.Sprintf("%s %s in %s", s.good("reachable"), h.URL, ms(h.LatencySeconds))
	switch {
	case h.HTTPStatus == 401 || h.HTTPStatus == 403:
		out += fmt.Sprintf(" (HTTP %d: up, but the router's token is not accepted; check with %s test-perl)", h.HTTPStatus, prog)
	case h.HTTPStatus != 0:
		out += fmt.Sprintf(" (HTTP %d)", h.HTTPStatus)
	}
	return out
}

// rate formats a fraction as a percentage, coloured when it crosses the
// runbook's thresholds. high says whether a high value is the bad one.
func (a *app) rate(r float64, high bool, warn, bad float64) string {
	t := fmt.Sprintf("%.1f%%", r*100)
	switch {
	case high && r >= bad, !high && r < bad:
		return a.style.bad(t)
	case high && r >= warn, !high && r < warn:
		return a.style.warn(t)
	}
	return t
}

func ms(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	}
	return d.Round(100 * time.Microsecond).String()
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "?"
	}
	return t.Local().Format(time.DateTime)
}

func schemaStatFrom(s *pb.SchemaStatus) *schemaStatView {
	if s == nil {
		return nil
	}
	return &schemaStatView{Source: s.GetSource(), Version: s.GetVersion(), Methods: int(s.GetMethods()), Unchecked: s.GetUnchecked(), Error: s.GetError()}
}
