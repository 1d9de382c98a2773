package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/pve-migration/router/internal/config"
	pb "github.com/pve-migration/router/proto/pvemigration/v1"
)

// ExtProcServiceName is the gRPC service Envoy calls, also the service
// name whose health Envoy's cluster health check may ask for.
const ExtProcServiceName = "envoy.service.ext_proc.v3.ExternalProcessor"

// MaxRecvMsgSize bounds one incoming gRPC message. The largest is a
// buffered request body: PVE accepts at most 512 KiB, and Envoy's
// per-connection buffer (1 MiB in envoy.yaml) caps what it can send, so
// 1 MiB plus room for headers fits every body Envoy can buffer. A larger
// message fails its stream, which Envoy answers by failing open to Perl.
const MaxRecvMsgSize = 1<<20 + 64<<10

// ConnectionTimeout bounds a new connection's HTTP/2 handshake: a client
// that connects and sends nothing is dropped after it.
const ConnectionTimeout = 5 * time.Second

// MaxHeaderListSize bounds one stream's gRPC metadata (request headers).
const MaxHeaderListSize = 64 << 10

// Listen opens a listener for addr: "host:port" for TCP, or "unix:/path"
// (also "unix:///path") for a unix socket. A stale socket file left by a
// previous run is removed, but a live one (something answers) or a file
// that is not a socket is an error, never deleted. The socket gets mode
// 0660 so that only the owner and group (Envoy's) can connect.
func Listen(addr string) (net.Listener, error) {
	path, ok := strings.CutPrefix(addr, "unix:")
	if !ok {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", addr, err)
		}
		return ln, nil
	}
	path = strings.TrimPrefix(path, "//")
	if path == "" {
		return nil, errors.New("listen: empty unix socket path")
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen unix:%s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("chmod unix:%s: %w", path, err)
	}
	return ln, nil
}

func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listen unix:%s: %w", path, err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("listen unix:%s: file exists and is not a socket", path)
	}
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		_ = c.Close()
		return fmt.Errorf("listen unix:%s: another process is serving on it", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	return nil
}

// ServeConfig configures Serve.
type ServeConfig struct {
	// Addr is "host:port" or "unix:/path"; ignored when Listener is set.
	Addr string
	// Listener, if set, is served instead of listening on Addr (tests,
	// socket activation). Serve closes it.
	Listener net.Listener
	// Processor is the ext_proc service. Required.
	Processor *Processor
	// Control is the control API; nil leaves it unregistered.
	Control pb.ControlServiceServer
	// Rollout is the plan/advance/gate-reset API; nil leaves it
	// unregistered.
	Rollout pb.RolloutServiceServer
	// Config reports whether a configuration is loaded: grpc health says
	// NOT_SERVING until it returns non-nil. Nil means loaded.
	Config func() *config.Snapshot
	// ServerOptions are added to the server's own (the telemetry package
	// adds its trace-context interceptors here).
	ServerOptions []grpc.ServerOption
	// ShutdownTimeout is how long open streams may drain when ctx ends
	// before they are cut (default 10s).
	ShutdownTimeout time.Duration
	// Ready, if set, is marked serving while the server accepts streams.
	Ready *Readiness
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Register adds further services to the server (the compare API).
	Register []func(*grpc.Server)
}

// serverOptions are tuned for Envoy, which multiplexes every ext_proc
// stream over one long-lived HTTP/2 connection per worker:
//   - keepalive pings from Envoy are allowed every 5s even without
//     streams, so an idle connection is not killed with GOAWAY
//     "too_many_pings";
//   - the server pings after 30s of silence and drops a peer that does
//     not answer within 10s, so a vanished Envoy frees its streams;
//   - no MaxConnectionAge: recycling the one connection would cut every
//     in-flight request's stream, and each would fail open;
//   - many concurrent streams: one per in-flight HTTP request;
//   - bounds for a client that is not Envoy: a connection must finish
//     the HTTP/2 handshake within ConnectionTimeout (grpc-go waits 120s),
//     and a stream's metadata stays under MaxHeaderListSize (grpc-go
//     allows 16 MiB; Envoy sends a few hundred bytes: x-request-id,
//     traceparent, tracestate).
func serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.MaxConcurrentStreams(10000),
		grpc.MaxRecvMsgSize(MaxRecvMsgSize),
		grpc.ConnectionTimeout(ConnectionTimeout),
		grpc.MaxHeaderListSize(MaxHeaderListSize),
		// Streams run on reused goroutines (grpc-go restarts each worker
		// after 65,536 streams to shed its stack): a fresh goroutine per
		// stream grew its stack through the decision path and the span
		// on every request, a tenth of a stream's CPU (issue 18). A
		// stream holds its worker while it waits for Envoy's next
		// message, so there are as many as streams commonly in flight;
		// past them, grpc-go starts a goroutine per stream as before.
		grpc.NumStreamWorkers(streamWorkers),
		// A panicking handler fails its call, not the process (recover.go).
		grpc.ChainStreamInterceptor(recoverStream),
		grpc.ChainUnaryInterceptor(recoverUnary),
	}
}

// streamWorkers is how many goroutines serve streams (NumStreamWorkers):
// a busy Envoy keeps a few dozen ext_proc streams open at once.
const streamWorkers = 64

// NewGRPCServer builds the router's gRPC server with ext_proc, the control
// API (when control is non-nil) and grpc health registered. Health starts
// NOT_SERVING; the caller flips it (Serve does once a config is loaded).
func NewGRPCServer(proc *Processor, control pb.ControlServiceServer, hs *health.Server, extra ...grpc.ServerOption) *grpc.Server {
	srv := grpc.NewServer(append(serverOptions(), extra...)...)
	extprocv3.RegisterExternalProcessorServer(srv, proc)
	if control != nil {
		pb.RegisterControlServiceServer(srv, control)
	}
	healthpb.RegisterHealthServer(srv, hs)
	return srv
}

// Serve runs the gRPC server (ext_proc, grpc health, control API) until
// ctx ends, then stops gracefully: health turns NOT_SERVING so Envoy's
// health check moves away, open streams get ShutdownTimeout to finish,
// and whatever is left is cut (Envoy then fails those requests open to
// Perl). It returns nil after a shutdown caused by ctx, and the error
// otherwise.
func Serve(ctx context.Context, cfg ServeConfig) error {
	if cfg.Processor == nil {
		return errors.New("serve: ServeConfig.Processor is required")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	timeout := cfg.ShutdownTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ln := cfg.Listener
	if ln == nil {
		var err error
		if ln, err = Listen(cfg.Addr); err != nil {
			return fmt.Errorf("serve: %w", err)
		}
	}

	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	hs.SetServingStatus(ExtProcServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	srv := NewGRPCServer(cfg.Processor, cfg.Control, hs, cfg.ServerOptions...)
	if cfg.Rollout != nil {
		pb.RegisterRolloutServiceServer(srv, cfg.Rollout)
	}
	for _, reg := range cfg.Register {
		reg(srv)
	}

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	go markServing(runCtx, hs, cfg.Config)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	cfg.Ready.setIfSet(true)
	logger.LogAttrs(ctx, slog.LevelInfo, "gRPC server listening", slog.String("addr", ln.Addr().String()))

	select {
	case err := <-errc:
		cfg.Ready.setIfSet(false)
		hs.Shutdown()
		return fmt.Errorf("serve gRPC: %w", err)
	case <-ctx.Done():
	}
	cfg.Ready.setIfSet(false)
	stopRun()
	hs.Shutdown()
	done := make(chan struct{})
	go func() { srv.GracefulStop(); close(done) }()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		logger.LogAttrs(context.Background(), slog.LevelWarn, "gRPC drain timed out; cutting open streams", slog.Duration("timeout", timeout))
		srv.Stop()
		<-done
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve gRPC: %w", err)
	}
	return nil
}

func (r *Readiness) setIfSet(v bool) {
	if r != nil {
		r.SetGRPCServing(v)
	}
}

// markServing turns health SERVING once a config is loaded. The Store
// always has one, so this is normally immediate; the poll covers callers
// that load the config after starting the server.
func markServing(ctx context.Context, hs *health.Server, cfg func() *config.Snapshot) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for cfg != nil && cfg() == nil {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	if ctx.Err() != nil {
		return
	}
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(ExtProcServiceName, healthpb.HealthCheckResponse_SERVING)
}

// ServeAdmin serves the admin handler on addr ("host:port" or
// "unix:/path") until ctx ends, then shuts down within 5s.
func ServeAdmin(ctx context.Context, addr string, h http.Handler) error {
	ln, err := Listen(addr)
	if err != nil {
		return fmt.Errorf("serve admin: %w", err)
	}
	return ServeAdminListener(ctx, ln, h)
}

// ServeAdminListener is ServeAdmin on an open listener, which it closes.
// Timeouts are tight because the admin endpoints answer from memory; they
// keep a slow or idle client from holding connections open.
func ServeAdminListener(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve admin: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve admin: %w", err)
	}
	return nil
}
