// Package routerapp is the migration-router program: flags, wiring and
// lifecycle. main only turns signals into a context and Run's result into
// an exit status, so the whole program runs in tests without a process.
package routerapp

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/internal/killswitch"
	"github.com/pve-migration/router/internal/localstate"
	"github.com/pve-migration/router/internal/nodestate"
	"github.com/pve-migration/router/internal/outcome"
	"github.com/pve-migration/router/internal/telemetry"
	"github.com/pve-migration/router/routing"
	"github.com/pve-migration/router/server"
)

// Version is the router's version; release builds set it with -ldflags.
var Version = "dev"

// Exit statuses, as the contract fixes them for the CLI too.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// flags are the command line of migration-router. Names and defaults are
// the contract's; the ones it does not list are ours.
type flags struct {
	config         string
	grpcListen     string
	adminListen    string
	proxyListen    string
	perlUpstream   string
	rustUpstream   string
	tlsCert        string
	tlsKey         string
	selfSigned     bool
	extProc        string
	extProcCA      string
	extProcSNI     string
	reloadInterval time.Duration
	upstreamCA     string
	perlPin        string
	rustPin        string
	insecure       bool
	grpcTLSCert    string
	grpcTLSKey     string
	logLevel       string
	logFormat      string
	version        bool
	node           string
	killSwitch     string
	stateFile      string
	stateInterval  time.Duration
	comparePerlURL string
	compareRustURL string
}

func newFlagSet(f *flags, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("migration-router", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.config, "config", "", "TOML config file, watched (env "+config.EnvConfig+"; default "+config.DefaultPath+")")
	fs.StringVar(&f.grpcListen, "grpc-listen", "127.0.0.1:50051", "ext_proc, grpc health and control API: host:port or unix:/path")
	fs.StringVar(&f.adminListen, "admin-listen", "127.0.0.1:3000", "admin HTTP: /health, /metrics, /status (empty: off)")
	fs.StringVar(&f.proxyListen, "proxy-listen", "", "embedded data plane for PVE clients (plays Envoy's part); off when empty")
	fs.StringVar(&f.perlUpstream, "perl-upstream", "", "pveproxy base URL for the embedded data plane (http or https)")
	fs.StringVar(&f.rustUpstream, "rust-upstream", "", "Rust API daemon base URL (data plane, and /health's rust probe)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "certificate for the data plane's listener (HTTPS); with --tls-key")
	fs.StringVar(&f.tlsKey, "tls-key", "", "key for the data plane's listener")
	fs.BoolVar(&f.selfSigned, "proxy-self-signed", false, "serve the data plane over HTTPS with a generated self-signed certificate")
	fs.StringVar(&f.extProc, "ext-proc", "", "ext_proc service the data plane asks (host:port or unix:/path); empty: this process")
	fs.StringVar(&f.extProcCA, "ext-proc-ca", "", "PEM CA that signs the --ext-proc service's certificate: speak TLS to it (a router started with --grpc-tls-cert)")
	fs.StringVar(&f.extProcSNI, "ext-proc-server-name", "", "name to verify in the --ext-proc service's certificate (default: the host of --ext-proc)")
	fs.DurationVar(&f.reloadInterval, "reload-interval", config.DefaultPollInterval, "config poll interval, besides inotify (pmxcfs raises no event for other nodes' edits); negative: inotify only")
	fs.StringVar(&f.upstreamCA, "upstream-ca", "", "PEM CA bundle trusted for https upstreams (e.g. /etc/pve/pve-root-ca.pem)")
	fs.StringVar(&f.perlPin, "perl-fingerprint", "", "SHA-256 fingerprint pin of pveproxy's certificate (AA:BB:...)")
	fs.StringVar(&f.rustPin, "rust-fingerprint", "", "SHA-256 fingerprint pin of the Rust daemon's certificate")
	fs.BoolVar(&f.insecure, "upstream-insecure", false, "do not verify upstream certificates (labs only: exposes the API token)")
	fs.StringVar(&f.grpcTLSCert, "grpc-tls-cert", "", "serve the gRPC port over TLS with this certificate (with --grpc-tls-key)")
	fs.StringVar(&f.grpcTLSKey, "grpc-tls-key", "", "key for --grpc-tls-cert")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "text or json")
	fs.BoolVar(&f.version, "version", false, "print the version and exit")
	fs.StringVar(&f.node, "node", defaultNode(), "this router's PVE node name ([nodes.NAME] tables, /nodes/NAME paths); default: the short host name")
	fs.StringVar(&f.killSwitch, "kill-switch", killswitch.DefaultPath, "node-local kill switch: while this file exists every request goes to perl")
	fs.StringVar(&f.stateFile, "state-file", "", "this node's state file (default: CONFIGDIR/nodes/NODE/"+nodestate.FileName+"; \"off\": none)")
	fs.DurationVar(&f.stateInterval, "state-interval", nodestate.DefaultInterval, "longest time between two writes of the state file")
	fs.StringVar(&f.comparePerlURL, "compare-perl-url", "", "pveproxy base URL the shadow comparison asks (default --perl-upstream, else perl_api_base_url)")
	fs.StringVar(&f.compareRustURL, "compare-rust-url", "", "Rust daemon base URL the shadow comparison asks (default --rust-upstream)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `migration-router: the PVE network migration decision service (Envoy ext_proc),
with an optional embedded data plane that plays Envoy's part.

Usage:
  migration-router [flags]
  migration-router healthcheck URL     exit 0 when URL answers below 500 (container health checks)

Flags:
`)
		fs.PrintDefaults()
	}
	return fs
}

func (f *flags) validate() error {
	var errs []error
	if (f.tlsCert == "") != (f.tlsKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if f.selfSigned && f.tlsCert != "" {
		errs = append(errs, errors.New("--proxy-self-signed and --tls-cert exclude each other"))
	}
	if (f.grpcTLSCert == "") != (f.grpcTLSKey == "") {
		errs = append(errs, errors.New("--grpc-tls-cert and --grpc-tls-key go together"))
	}
	if f.proxyListen != "" && (f.perlUpstream == "" || f.rustUpstream == "") {
		errs = append(errs, errors.New("--proxy-listen needs --perl-upstream and --rust-upstream"))
	}
	if (f.extProcCA != "" || f.extProcSNI != "") && f.extProc == "" {
		errs = append(errs, errors.New("--ext-proc-ca and --ext-proc-server-name need --ext-proc"))
	}
	if f.insecure && (f.perlPin != "" || f.rustPin != "" || f.upstreamCA != "") {
		errs = append(errs, errors.New("--upstream-insecure excludes --upstream-ca and the fingerprint pins"))
	}
	switch f.logFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("--log-format %q: want text or json", f.logFormat))
	}
	if _, err := parseLevel(f.logLevel); err != nil {
		errs = append(errs, err)
	}
	if err := f.validateNode(); err != nil {
		errs = append(errs, err)
	}
	if err := checkCompareURLs(f); err != nil {
		errs = append(errs, err)
	}
	if f.reloadInterval == 0 {
		errs = append(errs, errors.New("--reload-interval 0: give a positive interval, or a negative one for inotify only"))
	}
	return errors.Join(errs...)
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// Run is the whole program. It returns when ctx ends (a clean shutdown:
// open ext_proc streams drain, the last spans are flushed) or when a
// listener fails.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "healthcheck" {
		return healthcheck(ctx, args[1:], stdout, stderr)
	}
	var f flags
	fs := newFlagSet(&f, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "migration-router: unexpected argument %q (see --help)\n", fs.Arg(0))
		return ExitUsage
	}
	if f.version {
		fmt.Fprintln(stdout, "migration-router", Version)
		return ExitOK
	}
	if err := f.validate(); err != nil {
		fmt.Fprintf(stderr, "migration-router: %v\n", strings.ReplaceAll(err.Error(), "\n", "\nmigration-router: "))
		return ExitUsage
	}
	level, _ := parseLevel(f.logLevel)
	hopts := &slog.HandlerOptions{Level: level}
	var logger *slog.Logger
	if f.logFormat == "json" {
		logger = slog.New(slog.NewJSONHandler(stderr, hopts))
	} else {
		logger = slog.New(slog.NewTextHandler(stderr, hopts))
	}
	if err := run(ctx, &f, logger, stdout); err != nil {
		logger.Error("migration-router stopped", "err", err)
		return ExitFailure
	}
	return ExitOK
}

func run(ctx context.Context, f *flags, logger *slog.Logger, stdout io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	path, explicit := config.ResolvePath(f.config, os.Getenv)
	snap, err := config.LoadResolved(path, explicit, os.Getenv)
	if err != nil {
		// The first load has no last good config to keep: refuse to start
		// rather than guess. Envoy fails open to Perl meanwhile.
		return fmt.Errorf("load config: %w", err)
	}
	snap.LoadedAt = time.Now()
	store := config.NewStore(snap)
	for _, w := range snap.Warnings {
		logger.Warn("config warning", "problem", w.String())
	}

	tel, err := telemetry.Setup(ctx, telemetry.Options{
		Version:        Version,
		Logger:         logger,
		MetricsEnabled: func() bool { return store.Current().MetricsEnabled },
		LogDecisions:   func() bool { return store.Current().LogDecisions },
		Phase:          func() routing.Phase { return store.Current().Policy.Phase },
	})
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		if err := tel.Shutdown(sctx); err != nil {
			logger.Warn("telemetry shutdown", "err", err)
		}
	}()
	store.OnReload = func(result string, _ *config.Snapshot, _ error) { tel.RecordReload(result) }
	// The load at startup is the first reload: a router whose later edits
	// all fail still shows one success, and the series exists from the start.
	tel.RecordReload(config.ResultOK)

	upTLS := server.TLSOptions{CAFile: f.upstreamCA, InsecureSkipVerify: f.insecure}
	lookup, err := server.NewPerlLookup(server.PerlLookupOptions{Config: store.Current, TLS: upTLS, Logger: logger})
	if err != nil {
		return fmt.Errorf("perl lookup: %w", err)
	}
	// local carries this router's run-time decision inputs (node name,
	// kill switch, gate trips).
	local := localstate.New(f.node)
	nodeRT := newNodeRuntime(f, path, store, local, tel, logger)
	schema := newSchema(store, tel, logger)
	shadowWorker, err := newShadow(f, store, tel, upTLS, schema, logger)
	if err != nil {
		return err
	}
	gt, err := newGate(store, local, tel, compareWindow{report: shadowWorker.Report(), config: store.Current}, logger)
	if err != nil {
		return err
	}
	proc := server.NewProcessor(server.Options{Config: store.Current, Observer: outcome.Tee(tel.Observer(), gt), Lookup: lookup, Logger: logger, Local: local.Local, Shadow: shadowWorker})
	health, err := server.NewHealthChecker(server.HealthOptions{Config: store.Current, RustURL: f.rustUpstream, TLS: upTLS, Logger: logger})
	if err != nil {
		return fmt.Errorf("health checker: %w", err)
	}
	ready := &server.Readiness{}
	control := server.NewControlService(server.ControlOptions{Config: store, Health: health, Stats: tel, Version: Version, Ready: ready, Node: nodeRT, Gate: gt, Schema: schema})

	errc := make(chan error, 10)
	running := 0
	start := func(name string, fn func() error) {
		running++
		go func() {
			err := fn()
			if err != nil {
				err = fmt.Errorf("%s: %w", name, err)
			}
			errc <- err
		}()
	}
	start("config watch", func() error {
		return config.Watch(ctx, store, config.WatchOptions{Path: path, Explicit: explicit, Env: os.Getenv, PollInterval: f.reloadInterval, Logger: logger})
	})
	start("health", func() error { health.Run(ctx); return nil })
	nodeRT.run(ctx, start)
	start("gate", func() error { return gt.Run(ctx) })
	start("compare", func() error { shadowWorker.Run(ctx); return nil })
	grpcOpts, err := grpcTLS(f)
	if err != nil {
		return err
	}
	start("grpc", func() error {
		return server.Serve(ctx, server.ServeConfig{
			Addr: f.grpcListen, Processor: proc, Control: control, Rollout: server.NewRolloutService(gt, store), Config: store.Current,
			ServerOptions: append(tel.GRPCServerOptions(), grpcOpts...), Ready: ready, Logger: logger,
			Register: compareServices(shadowWorker, schema, store),
		})
	})
	if f.proxyListen != "" {
		dp, dpMetrics, err := newDataPlane(f, proc, tel.ExtractStreamContext, logger)
		if err != nil {
			return err
		}
		if err := tel.Register(dataplaneCollector{metrics: dpMetrics}); err != nil {
			return fmt.Errorf("data plane metrics: %w", err)
		}
		start("data plane", func() error { return dp(ctx) })
	}
	if f.adminListen != "" {
		admin := server.NewAdminHandler(server.AdminOptions{Config: store, Health: health, Metrics: tel.MetricsHandler(), Stats: tel, Version: Version, Ready: ready, Node: nodeRT, Gate: gt, Compare: shadowWorker.Report(), Schema: schema})
		start("admin", func() error { return server.ServeAdmin(ctx, f.adminListen, admin) })
	}
	logger.Info("migration-router started", "version", Version, "config", displayPath(snap), "phase", snap.Policy.Phase.String(),
		"phase_source", string(snap.PhaseSource), "grpc", f.grpcListen, "admin", f.adminListen, "proxy", f.proxyListen,
		"node", f.node, "kill_switch", local.Local().KillSwitch)

	var first error
	for i := 0; i < running; i++ {
		// A component ends with nil when ctx ends; one that fails stops
		// the others, because a half-up router hides failures.
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}

func displayPath(s *config.Snapshot) string {
	if s.Path == "" || !s.FileExists {
		return "(built-in defaults)"
	}
	return s.Path
}

// healthcheck is for distroless container images, which have no curl.
func healthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(stderr, "usage: migration-router healthcheck URL")
		return ExitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[0], nil)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return ExitUsage
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return ExitFailure
	}
	defer resp.Body.Close()
	fmt.Fprintln(stdout, resp.Status)
	if resp.StatusCode >= 500 {
		return ExitFailure
	}
	return ExitOK
}
