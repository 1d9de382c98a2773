package server_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pve-migration/router/internal/logsink"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/internal/extproclocal"
	"github.com/pve-migration/router/internal/outcome"
	"github.com/pve-migration/router/routing"
	"github.com/pve-migration/router/server"
	"github.com/pve-migration/router/server/extproctest"
)

// snapshot builds a config snapshot for tests, as the config package
// would from a file.
func snapshot(phase routing.Phase, mutate ...func(*config.Snapshot)) *config.Snapshot {
	s := &config.Snapshot{
		Policy:         routing.DefaultPolicy(),
		PerlAPIBaseURL: "https://127.0.0.1:8006",
		PerlAPITimeout: 60 * time.Second,
		LogDecisions:   true,
		MetricsEnabled: true,
		PhaseSource:    config.SourceFile,
		FallbackSource: config.SourceDefault,
		Path:           "/etc/pve/network-migration.conf",
		FileExists:     true,
		LoadedAt:       time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC),
	}
	s.Policy.Phase = phase
	s.Policy.Endpoints = map[string]routing.EndpointRule{}
	for _, m := range mutate {
		m(s)
	}
	return s
}

// event is one Observer call.
type event struct {
	kind   string // "decided", "finished", "abandoned"
	dec    outcome.Decision
	result outcome.Result
	reason string
}

// recorder is an Observer that keeps every call, for assertions.
type recorder struct {
	mu     sync.Mutex
	events []event
}

var _ outcome.Observer = (*recorder)(nil)

func (r *recorder) Decided(ctx context.Context, d *outcome.Decision) context.Context {
	r.add(event{kind: "decided", dec: *d})
	return ctx
}

func (r *recorder) Finished(_ context.Context, d *outcome.Decision, res outcome.Result) {
	r.add(event{kind: "finished", dec: *d, result: res})
}

func (r *recorder) Abandoned(_ context.Context, d *outcome.Decision, reason string) {
	r.add(event{kind: "abandoned", dec: *d, reason: reason})
}

func (r *recorder) add(e event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// byRequestID returns the events of one request, waiting briefly for the
// server goroutine to record the last one.
func (r *recorder) byRequestID(t *testing.T, id string, want int) []event {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		r.mu.Lock()
		var out []event
		for _, e := range r.events {
			if e.dec.RequestID == id {
				out = append(out, e)
			}
		}
		r.mu.Unlock()
		if len(out) >= want || time.Now().After(deadline) {
			return out
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer = logsink.Buffer

// harness is a Processor served by server.Serve on a loopback port, with a
// gRPC client and the Envoy model on top.
type harness struct {
	snap atomic.Pointer[config.Snapshot]
	obs  *recorder
	logs *syncBuffer
	addr string
	conn *grpc.ClientConn
	// ext opens raw ext_proc streams: over h.conn, or over the in-process
	// link for the tests under TestConformanceInProcess.
	ext      extprocv3.ExternalProcessorClient
	client   *extproctest.Client
	cancel   context.CancelFunc
	done     chan error
	procErrs chan error // what Process returned, per stream
}

type harnessOpts struct {
	lookup   server.TypeLookup
	shadow   server.Shadower
	local    func() routing.Local
	client   extproctest.Options
	shutdown time.Duration
}

func newHarness(t testing.TB, snap *config.Snapshot, o harnessOpts) *harness {
	t.Helper()
	h := &harness{obs: &recorder{}, logs: &syncBuffer{}, done: make(chan error, 1), procErrs: make(chan error, 100000)}
	h.snap.Store(snap)
	logger := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	proc := server.NewProcessor(server.Options{
		Config:   h.snap.Load,
		Observer: h.obs,
		Lookup:   o.lookup,
		Logger:   logger,
		Shadow:   o.shadow,
		Local:    o.local,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	record := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		err := handler(srv, ss)
		if info.FullMethod == "/envoy.service.ext_proc.v3.ExternalProcessor/Process" {
			select {
			case h.procErrs <- err:
			default:
			}
		}
		return err
	}
	go func() {
		h.done <- server.Serve(ctx, server.ServeConfig{
			Listener:        ln,
			Processor:       proc,
			Config:          h.snap.Load,
			Logger:          logger,
			ShutdownTimeout: o.shutdown,
			ServerOptions:   []grpc.ServerOption{grpc.ChainStreamInterceptor(record)},
		})
	}()
	h.conn, err = grpc.NewClient("passthrough:///"+h.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	if o.client.MessageTimeout == 0 {
		// Envoy's 500ms is for production; a loaded CI machine under
		// -race must not turn slow answers into fail-opens. Tests of the
		// timeout set their own.
		o.client.MessageTimeout = 10 * time.Second
	}
	h.ext = extprocv3.NewExternalProcessorClient(h.conn)
	if inProcess(t) {
		// The same Processor, reached without gRPC the way the router's
		// embedded data plane reaches it; Serve still runs for the tests
		// that look at the gRPC side (health, shutdown).
		h.ext = extproclocal.New(recordingServer{proc, h.procErrs}, extproclocal.Options{})
	}
	h.client = extproctest.NewClient(h.ext, o.client)
	t.Cleanup(func() { h.stop(t) })
	return h
}

// inProcessTest is the test whose subtests run the conformance tests over
// the in-process link (inprocess_test.go) instead of loopback gRPC.
const inProcessTest = "TestConformanceInProcess"

func inProcess(t testing.TB) bool { return strings.HasPrefix(t.Name(), inProcessTest+"/") }

// recordingServer reports what Process returned, as the stream
// interceptor does on the gRPC path.
type recordingServer struct {
	srv  extprocv3.ExternalProcessorServer
	errs chan error
}

func (r recordingServer) Process(s grpc.BidiStreamingServer[extprocv3.ProcessingRequest, extprocv3.ProcessingResponse]) error {
	err := r.srv.Process(s)
	select {
	case r.errs <- err:
	default:
	}
	return err
}

func (h *harness) stop(t testing.TB) {
	if h.cancel == nil {
		return
	}
	_ = h.conn.Close()
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			t.Errorf("Serve returned %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("Serve did not return after cancel")
	}
}

func (h *harness) do(t testing.TB, req extproctest.Request) extproctest.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := h.client.Do(ctx, req)
	if err != nil {
		t.Fatalf("Do(%s %s): %v", req.Method, req.Path, err)
	}
	return res
}

// nextProcErr returns what the next finished Process call returned.
func (h *harness) nextProcErr(t *testing.T) error {
	t.Helper()
	select {
	case err := <-h.procErrs:
		return err
	case <-time.After(3 * time.Second):
		t.Fatal("no Process call finished")
		return errors.New("unreachable")
	}
}

func (h *harness) drainProcErrs() {
	for {
		select {
		case <-h.procErrs:
		default:
			return
		}
	}
}
