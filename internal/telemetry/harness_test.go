package telemetry_test

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/internal/extproclocal"
	"github.com/pve-migration/router/internal/outcome"
	"github.com/pve-migration/router/internal/telemetry"
	"github.com/pve-migration/router/server"
	"github.com/pve-migration/router/server/extproctest"
)

// router is the real ext_proc server, built as the router builds it
// (server.NewGRPCServer with the telemetry's gRPC options) on a loopback
// port, and an Envoy-conformant client talking to it.
type router struct {
	client *extproctest.Client
	stop   func()
}

type routerOptions struct {
	snap   *config.Snapshot
	lookup server.TypeLookup
	log    *slog.Logger
	// inProcess connects the client through the in-process link the
	// embedded data plane uses (no gRPC), with the telemetry's stream
	// context extraction in place of the stats handler.
	inProcess bool
}

// startRouter serves ext_proc with tel's observer. stop ends the server
// (after in-flight streams); it is also registered as a cleanup, which
// runs before the telemetry's own Shutdown cleanup when tel was set up
// earlier in the test.
func startRouter(t *testing.T, tel *telemetry.Telemetry, o routerOptions) *router {
	t.Helper()
	proc := server.NewProcessor(server.Options{
		Config:   func() *config.Snapshot { return o.snap },
		Observer: tel.Observer(),
		Lookup:   o.lookup,
		Logger:   o.log,
	})
	if o.inProcess {
		link := extproclocal.New(proc, extproclocal.Options{ServerContext: tel.ExtractStreamContext})
		stop := func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = link.Close(ctx)
		}
		t.Cleanup(stop)
		return &router{client: extproctest.NewClient(link, extproctest.Options{}), stop: stop}
	}
	gs := server.NewGRPCServer(proc, nil, health.NewServer(), tel.GRPCServerOptions()...)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { _ = gs.Serve(lis); close(served) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = conn.Close()
		gs.GracefulStop()
		<-served
	}
	t.Cleanup(stop)
	return &router{client: extproctest.New(conn, extproctest.Options{}), stop: stop}
}

func (r *router) do(t *testing.T, ctx context.Context, req extproctest.Request) extproctest.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := r.client.Do(ctx, req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.Path, err)
	}
	return res
}

func snapshot(t *testing.T, toml string, env map[string]string) *config.Snapshot {
	t.Helper()
	s, err := config.Parse("test.conf", []byte(toml), func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startPlainRouter serves ext_proc with the given observer and server
// options, for benchmarks that compare observers on the same server.
func startPlainRouter(tb testing.TB, obs outcome.Observer, snap *config.Snapshot, opts ...grpc.ServerOption) *extproctest.Client {
	tb.Helper()
	proc := server.NewProcessor(server.Options{
		Config: func() *config.Snapshot { return snap }, Observer: obs, Logger: slog.New(slog.DiscardHandler),
	})
	gs := server.NewGRPCServer(proc, nil, health.NewServer(), opts...)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close(); gs.Stop() })
	return extproctest.New(conn, extproctest.Options{})
}
