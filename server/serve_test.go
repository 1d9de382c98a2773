package server_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/routing"
	"github.com/pve-migration/router/server"
	"github.com/pve-migration/router/server/extproctest"
)

// served is a Serve call under test control.
type served struct {
	addr   net.Addr
	conn   *grpc.ClientConn
	obs    *recorder
	cancel context.CancelFunc
	done   chan error
}

func startServe(t *testing.T, addr string, ln net.Listener, shutdown time.Duration) *served {
	t.Helper()
	snap := snapshot(routing.RustFull)
	s := &served{obs: &recorder{}, done: make(chan error, 1)}
	proc := server.NewProcessor(server.Options{Config: func() *config.Snapshot { return snap }, Observer: s.obs, Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	if ln == nil {
		var err error
		if ln, err = server.Listen(addr); err != nil {
			t.Fatal(err)
		}
	}
	s.addr = ln.Addr()
	target := "passthrough:///" + ln.Addr().String()
	if ln.Addr().Network() == "unix" {
		target = "unix://" + ln.Addr().String()
	}
	go func() {
		s.done <- server.Serve(ctx, server.ServeConfig{Listener: ln, Processor: proc, ShutdownTimeout: shutdown, Logger: quiet})
	}()
	var err error
	if s.conn, err = grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = s.conn.Close() })
	return s
}

func (s *served) wait(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(within):
		t.Fatalf("Serve did not return within %s", within)
	}
}

// openStream sends request headers and reads the answer, leaving the
// stream open as Envoy does while the upstream works.
func openStream(t *testing.T, conn *grpc.ClientConn, id string) grpc.BidiStreamingClient[extprocv3.ProcessingRequest, extprocv3.ProcessingResponse] {
	t.Helper()
	st, err := extprocv3.NewExternalProcessorClient(conn).Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(extproctest.RequestHeaders("GET", "/api2/json/nodes/pve1/network", true, map[string]string{"x-request-id": id})); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestGracefulShutdownDrains(t *testing.T) {
	s := startServe(t, "127.0.0.1:0", nil, 5*time.Second)
	st := openStream(t, s.conn, "draining")
	s.cancel()
	// GracefulStop closes the listener first, then waits for the stream.
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := net.Dial("tcp", s.addr.String())
		if err != nil {
			break
		}
		_ = c.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still open after shutdown started")
		}
	}

	// New streams are refused while draining. They are tried on a new
	// connection: on the draining one, grpc-go's two-phase GOAWAY still
	// admits streams the client opened before the final GOAWAY arrived,
	// which is correct HTTP/2 and would make this check flaky.
	fresh, err := grpc.NewClient(s.addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if raw, err := extprocv3.NewExternalProcessorClient(fresh).Process(ctx); err == nil {
		_ = raw.Send(extproctest.RequestHeaders("GET", "/", true, nil))
		if _, err := raw.Recv(); err == nil {
			t.Error("a new stream was served while draining")
		}
	}
	select {
	case err := <-s.done:
		t.Fatalf("Serve returned (%v) while a stream was open", err)
	default:
	}
	// ...but the open one finishes normally.
	if err := st.Send(extproctest.ResponseHeaders(extproctest.Upstream{ServedBy: "rust", Attempts: 1})); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatalf("open stream cut during drain: %v", err)
	}
	_ = st.CloseSend()
	if _, err := st.Recv(); err == nil || status.Code(err) != codes.OK && err.Error() != "EOF" {
		t.Fatalf("stream end: %v", err)
	}
	s.wait(t, 3*time.Second)
	if ev := s.obs.byRequestID(t, "draining", 2); len(ev) != 2 || ev[1].kind != "finished" {
		t.Fatalf("events %+v", ev)
	}
}

func TestShutdownTimeoutCutsStreams(t *testing.T) {
	s := startServe(t, "127.0.0.1:0", nil, 200*time.Millisecond)
	st := openStream(t, s.conn, "stuck")
	start := time.Now()
	s.cancel()
	s.wait(t, 3*time.Second)
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("Serve returned after %s, before the drain timeout", d)
	}
	if _, err := st.Recv(); err == nil {
		t.Fatal("stream survived the shutdown")
	}
	if ev := s.obs.byRequestID(t, "stuck", 2); len(ev) != 2 || ev[1].kind != "abandoned" {
		t.Fatalf("events %+v", ev)
	}
}

func TestUnixSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "router.sock")

	// A stale socket file from a previous run is replaced.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	_ = stale.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}

	s := startServe(t, "unix:"+path, nil, time.Second)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want 0660", fi.Mode().Perm())
	}
	res, err := extproctest.New(s.conn, extproctest.Options{}).Do(context.Background(), extproctest.Request{Path: "/api2/json/nodes/pve1/network"})
	if err != nil || res.Backend != "rust" || res.FailedOpen {
		t.Fatalf("over unix socket: %+v %v", res, err)
	}

	// A live socket is not stolen, and a regular file is never deleted.
	if _, err := server.Listen("unix://" + path); err == nil {
		t.Error("Listen took over a live socket")
	}
	file := filepath.Join(dir, "not-a-socket")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Listen("unix:" + file); err == nil {
		t.Error("Listen replaced a regular file")
	}
	if _, err := os.Stat(file); err != nil {
		t.Errorf("regular file removed: %v", err)
	}
	s.cancel()
	s.wait(t, 3*time.Second)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket file left after shutdown: %v", err)
	}
}

// TestConcurrentStreams: thousands of simultaneous requests, each with
// its own stream, all decided right (run with -race).
func TestConcurrentStreams(t *testing.T) {
	// No message timeout: this checks correctness under concurrency;
	// opening 2000 streams at once on two shared cores under -race can
	// take longer than Envoy's 500ms, which is not what is measured here.
	h := newHarness(t, snapshot(routing.RustReadOnly), harnessOpts{client: extproctest.Options{MessageTimeout: -1}})
	const n = 2000
	var wg sync.WaitGroup
	var bad atomic.Int64
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path, want := "/api2/json/nodes/pve1/network", "rust"
			if i%2 == 1 {
				path, want = "/api2/json/nodes/pve1/network?type=eth", "perl"
			}
			method := "GET"
			if want == "perl" {
				method = "POST"
			}
			res, err := h.client.Do(context.Background(), extproctest.Request{Method: method, Path: path,
				Headers: map[string]string{"x-request-id": fmt.Sprint("c", i)}, Upstream: extproctest.Upstream{ServedBy: want, Attempts: 1}})
			if err != nil || res.FailedOpen || res.Backend != want {
				if bad.Add(1) <= 5 {
					t.Errorf("stream %d: backend %s, failed open %v (%v), err %v", i, res.Backend, res.FailedOpen, res.FailReason, err)
				}
			}
		}()
	}
	wg.Wait()
	if b := bad.Load(); b > 0 {
		t.Fatalf("%d of %d streams wrong", b, n)
	}
	finished := 0
	h.obs.mu.Lock()
	for _, e := range h.obs.events {
		if e.kind == "finished" {
			finished++
		}
	}
	h.obs.mu.Unlock()
	if finished != n {
		t.Fatalf("%d outcomes for %d streams", finished, n)
	}
}

// TestNoGoroutineLeak: after 10,000 streams, goroutines return to the
// baseline.
func TestNoGoroutineLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 streams")
	}
	h := newHarness(t, snapshot(routing.RustFull), harnessOpts{})
	h.do(t, extproctest.Request{Path: "/api2/json/nodes/pve1/network"}) // connection up
	settle := func(limit int) int {
		var n int
		for range 200 {
			runtime.GC()
			if n = runtime.NumGoroutine(); n <= limit {
				break
			}
			time.Sleep(25 * time.Millisecond)
		}
		return n
	}
	base := settle(0)
	const streams, workers = 10000, 32
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= streams; i = next.Add(1) {
				req := extproctest.Request{Path: "/api2/json/nodes/pve1/network", Upstream: extproctest.Upstream{ServedBy: "rust", Attempts: 1}}
				switch i % 4 {
				case 1:
					req.Stop = extproctest.StopAfterRequest
				case 2:
					req.Stop = extproctest.CancelAfterRequest
				}
				if _, err := h.client.Do(context.Background(), req); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := settle(base + 2); n > base+2 {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines after %d streams, baseline %d\n%s", n, streams, base, buf[:runtime.Stack(buf, true)])
	}
}

// TestConflictingContentTypes: a body that reads as one type as a form and
// as another as JSON must not be routed on either reading when the request
// carries both content types (backends take the first, parsers may take the
// last): its type is unknown, so it is advanced and stays on Perl in
// rust-basic-write.
func TestConflictingContentTypes(t *testing.T) {
	snap := snapshot(routing.RustBasicWrite)
	proc := server.NewProcessor(server.Options{Config: func() *config.Snapshot { return snap }, Logger: quiet})
	ln, err := server.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Serve(ctx, server.ServeConfig{Listener: ln, Processor: proc, Logger: quiet}) }()
	defer func() { cancel(); <-done }()
	conn, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	body := `{"type":"bridge","iface":"vmbr9","a":"&type=eth&b="}` // form: eth; JSON: bridge
	for _, order := range [][2]string{{"application/json", "application/x-www-form-urlencoded"}, {"application/x-www-form-urlencoded", "application/json"}} {
		st, err := extprocv3.NewExternalProcessorClient(conn).Process(ctx)
		if err != nil {
			t.Fatal(err)
		}
		req := extproctest.RequestHeaders("POST", "/api2/json/nodes/pve1/network", false, nil)
		hs := req.GetRequestHeaders().GetHeaders()
		hs.Headers = append(hs.Headers,
			&corev3.HeaderValue{Key: "content-type", RawValue: []byte(order[0])},
			&corev3.HeaderValue{Key: "content-type", RawValue: []byte(order[1])})
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
		if err := st.Send(extproctest.RequestBody([]byte(body), true)); err != nil {
			t.Fatal(err)
		}
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var backend string
		for _, h := range resp.GetRequestBody().GetResponse().GetHeaderMutation().GetSetHeaders() {
			if h.GetHeader().GetKey() == "x-pve-backend" {
				backend = string(h.GetHeader().GetRawValue())
			}
		}
		if backend != "perl" {
			t.Errorf("content types %v: body-phase backend %q, want perl (type unknown)", order, backend)
		}
		_ = st.CloseSend()
	}
}
