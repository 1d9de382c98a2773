// Command embed shows the embedded data plane used as a library: a program
// of its own that puts dataplane.Proxy, an ordinary http.Handler, in front
// of pveproxy ("perl") and the Rust daemon ("rust"), with the decision
// service (server.NewProcessor) running in the same process and spoken to
// over real ext_proc gRPC on an in-memory connection.
//
// It is what migration-router --proxy-listen does, reduced to the parts an
// embedder needs, plus two extra routes that read the data plane's
// accessors:
//
//	GET /dataplane/health   backends' reachability (Proxy.Health), JSON
//	GET /dataplane/metrics  request, retry and fail-open counters, JSON
//
// Everything else goes through the data plane. Try it against the demo
// backends (`bin/pve-demo-backend --flavor perl --listen 127.0.0.1:8007
// --state-dir /tmp/s` and the same with rust on 8008):
//
//	go run ./examples/embed --config examples/network-migration.conf
//	curl -si http://127.0.0.1:8080/api2/json/nodes/pve1/network | grep -i x-pve-served-by
//	curl -s http://127.0.0.1:8080/dataplane/metrics
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/pve-migration/router/envoy/dataplane"
	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("embed", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8080", "address the data plane serves PVE clients on")
	perl := fs.String("perl", "http://127.0.0.1:8007", "pveproxy base URL")
	rust := fs.String("rust", "http://127.0.0.1:8008", "Rust daemon base URL")
	confPath := fs.String("config", "examples/network-migration.conf", "migration config (TOML), watched for changes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	// The decision service's policy: the config file, reloaded on change.
	snap, err := config.Load(*confPath, os.Getenv)
	if err != nil {
		return err
	}
	store := config.NewStore(snap)
	go func() {
		_ = config.Watch(ctx, store, config.WatchOptions{Path: *confPath, Explicit: true, Env: os.Getenv, Logger: log})
	}()

	// The decision service in this process, reached through real gRPC.
	proc := server.NewProcessor(server.Options{Config: store.Current, Logger: log})
	extProc, stopExtProc, err := dataplane.InProcessExtProc(proc)
	if err != nil {
		return err
	}
	defer stopExtProc()

	// The data plane: routes, retries and ext_proc settings from envoy.yaml.
	proxy, err := dataplane.New(dataplane.Options{
		Perl:    dataplane.Upstream{URL: *perl},
		Rust:    dataplane.Upstream{URL: *rust},
		ExtProc: extProc,
		Logger:  log,
	})
	if err != nil {
		return err
	}
	defer proxy.Close()

	mux := http.NewServeMux()
	mux.Handle("/", proxy) // a plain http.Handler
	mux.HandleFunc("GET /dataplane/health", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, proxy.Health()) })
	mux.HandleFunc("GET /dataplane/metrics", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, proxy.Metrics()) })

	// An embedder's own server; dataplane.Proxy.Serve would add the
	// slow-client limits and TLS for a listener facing PVE clients.
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 16 << 10}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("embedded data plane listening", "addr", *listen, "perl", *perl, "rust", *rust, "phase", snap.Policy.Phase.String())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
