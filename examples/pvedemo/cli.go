package pvedemo

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// ErrUsage marks command-line mistakes; the binary exits with status 2.
var ErrUsage = errors.New("usage error")

// ExitCode maps Run's error to the process exit status: 0 success, 2 usage
// (bad flags or options), 3 after a simulated crash (so a supervisor or test
// sees the "crash"), 1 for anything else.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrUsage), errors.Is(err, ErrInvalidOptions):
		return 2
	case errors.Is(err, ErrCrashed):
		return 3
	default:
		return 1
	}
}

const usageText = `Usage:
  pve-demo-backend --flavor perl|rust [flags]
  pve-demo-backend healthcheck URL

A demo Proxmox VE network API (node network + SDN subset) that plays the
Perl pveproxy or the Rust daemon behind the migration router.

The healthcheck subcommand GETs URL and exits 0 if the status is below 500
(for docker healthchecks in images without curl).

Flags:
`

// listFlag collects comma-separated values; the flag may also be repeated.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, e := range strings.Split(v, ",") {
		if e = strings.TrimSpace(e); e != "" {
			*l = append(*l, e)
		}
	}
	return nil
}

// Run is the pve-demo-backend command: it parses args (without the program
// name), serves until ctx ends and returns nil, or returns an error for
// ExitCode. stdout gets the "listening" line that scripts and tests wait for;
// stderr gets logs.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "healthcheck" {
		return healthcheck(ctx, args[1:], stdout)
	}
	fs := flag.NewFlagSet("pve-demo-backend", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		flavor      = fs.String("flavor", "", "which side to play: perl or rust (required)")
		listen      = fs.String("listen", "127.0.0.1:8007", "address to serve the API on")
		debugListen = fs.String("debug-listen", "", "optional second address serving only /debug/* (stays up while --refuse is on)")
		stateDir    = fs.String("state-dir", "", "state directory shared by backends (default: a temporary directory removed on exit)")
		node        = fs.String("node", DefaultNode, "node name the API answers for")
		token       = fs.String("token", "", "accepted API token USER@REALM!TOKENID=SECRET; empty disables authentication")
		password    = fs.String("password", DefaultPassword, "password POST /access/ticket accepts for any user (only used with --token)")
		errorRate   = fs.Float64("error-rate", 0, "fraction 0..1 of API requests answered with HTTP 500")
		latency     = fs.Duration("latency", 0, "delay added before answering each API request")
		crashAfter  = fs.Int64("crash-after", 0, "serve N API requests, then drop the next connection, close the listener and exit 3 (0: off)")
		refuse      = fs.Bool("refuse", false, "close the listener at once so connections are refused")
		dropWrite   = fs.Bool("drop-after-write", false, "apply every API write, then close its connection without an answer")
		noFallback  = fs.Bool("no-fallback-header", false, "rust flavour: do not mark failed extjs (web UI) answers with x-pve-fallback")
		seed        = fs.Uint64("seed", 1, "seed for --error-rate decisions")
		logLevel    = fs.String("log-level", "info", "debug, info, warn or error (debug logs every request)")
		unimpl      listFlag
	)
	fs.Var(&unimpl, "unimplemented", "rust flavour: comma-separated METHOD:TEMPLATE entries answered with 501, e.g. PUT:/nodes/{node}/network/{iface}")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout, fs)
			return nil
		}
		return fmt.Errorf("%w: %w (see --help)", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q (see --help)", ErrUsage, fs.Arg(0))
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("%w: --log-level %q: %w", ErrUsage, *logLevel, err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	dir := *stateDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "pve-demo-state-")
		if err != nil {
			return fmt.Errorf("state dir: %w", err)
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	opts := Options{
		Flavor:        Flavor(*flavor),
		StateDir:      dir,
		Node:          *node,
		Token:         *token,
		Password:      *password,
		Unimplemented: unimpl,
		Faults:        Faults{ErrorRate: *errorRate, Latency: *latency, CrashAfter: *crashAfter, Refuse: *refuse, DropAfterWrite: *dropWrite},
		Seed:          *seed,
		Logger:        logger,
	}
	opts.NoFallbackHeader = *noFallback
	srv, err := New(opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if *debugListen != "" {
		dln, err := net.Listen("tcp", *debugListen)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("debug listen: %w", err)
		}
		dsrv := &http.Server{Handler: srv.DebugHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = dsrv.Serve(dln) }()
		defer dsrv.Close()
		logger.Info("debug endpoints listening", "addr", dln.Addr().String())
	}
	fmt.Fprintf(stdout, "pve-demo-backend: %s flavour listening on %s (state dir %s)\n", srv.Flavor(), ln.Addr(), dir)
	logger.Info("listening", "addr", ln.Addr().String(), "state_dir", dir, "node", *node, "auth", *token != "", "unimplemented", len(unimpl))
	if err := srv.Serve(ctx, ln); err != nil {
		if errors.Is(err, ErrCrashed) {
			logger.Warn("exiting after simulated crash")
		}
		return err
	}
	return nil
}

func printUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, usageText)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// healthcheck is for distroless images, which have no curl: any answer below
// 500 (401 included) proves the process is up and serving.
func healthcheck(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) != 1 || args[0] == "" {
		return fmt.Errorf("%w: healthcheck takes exactly one URL", ErrUsage)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[0], nil)
	if err != nil {
		return fmt.Errorf("%w: healthcheck: %w", ErrUsage, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 500 {
		return fmt.Errorf("healthcheck: %s answered %s", args[0], resp.Status)
	}
	fmt.Fprintf(stdout, "healthy: %s\n", resp.Status)
	return nil
}
