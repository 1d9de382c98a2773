package server_test

// Hostile clients on the gRPC port: oversized messages, huge header
// lists, streams that never send anything, bytes that are not HTTP/2.
// Each case must end with a clear gRPC status (or a closed connection
// where gRPC never started), at bounded cost, and the server must keep
// serving: every test ends with a normal decision on the same server.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/server"
)

// hsServer is server.Serve on a loopback port with a stream interceptor
// that counts running Process handlers, so a test can see a stream end on
// the server side, not just on the client's.
type hsServer struct {
	addr   string
	conn   *grpc.ClientConn
	active atomic.Int64
	ended  atomic.Int64
	cancel context.CancelFunc
	done   chan error
}

func hsStart(t *testing.T, extra ...grpc.ServerOption) *hsServer {
	t.Helper()
	snap, err := config.Parse("hostile.conf", []byte("phase = \"rust-advanced\"\nlog_migration_decisions = false\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &hsServer{done: make(chan error, 1)}
	proc := server.NewProcessor(server.Options{Config: func() *config.Snapshot { return snap }, Logger: slog.New(slog.DiscardHandler)})
	count := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		s.active.Add(1)
		defer func() { s.active.Add(-1); s.ended.Add(1) }()
		return h(srv, ss)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		s.done <- server.Serve(ctx, server.ServeConfig{
			Listener: ln, Processor: proc, ShutdownTimeout: 2 * time.Second, Logger: slog.New(slog.DiscardHandler),
			ServerOptions: append([]grpc.ServerOption{grpc.ChainStreamInterceptor(count)}, extra...),
		})
	}()
	if s.conn, err = grpc.NewClient("passthrough:///"+s.addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.conn.Close()
		cancel()
		select {
		case err := <-s.done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
	})
	return s
}

// waitIdle polls until no Process handler runs.
func (s *hsServer) waitIdle(t *testing.T, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for s.active.Load() != 0 {
		if time.Since(start) > within {
			t.Fatalf("%d Process handlers still running after %v", s.active.Load(), within)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

// hsDecide runs one normal request on conn and returns x-pve-backend.
func hsDecide(t *testing.T, conn grpc.ClientConnInterface, method, path string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := extprocv3.NewExternalProcessorClient(conn).Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(hsHeaders(method, path, true)); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatalf("normal request after the hostile one: %v", err)
	}
	_ = st.CloseSend()
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("stream end: %v", err)
	}
	for _, o := range resp.GetRequestHeaders().GetResponse().GetHeaderMutation().GetSetHeaders() {
		if o.GetHeader().GetKey() == server.HeaderBackend {
			return string(o.GetHeader().GetRawValue())
		}
	}
	t.Fatalf("no %s in %v", server.HeaderBackend, resp)
	return ""
}

func hsHeaders(method, path string, eos bool, extra ...*corev3.HeaderValue) *extprocv3.ProcessingRequest {
	hs := append([]*corev3.HeaderValue{
		{Key: ":method", RawValue: []byte(method)},
		{Key: ":path", RawValue: []byte(path)},
		{Key: ":authority", RawValue: []byte("pve1:8006")},
		{Key: ":scheme", RawValue: []byte("https")},
	}, extra...)
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
		Headers: &corev3.HeaderMap{Headers: hs}, EndOfStream: eos,
	}}}
}

// TestOversizedMessages: a message over server.MaxRecvMsgSize ends its
// stream with ResourceExhausted (Envoy then fails open to perl), whether
// it is the request headers or a buffered body; the connection and the
// server carry on.
func TestOversizedMessages(t *testing.T) {
	s := hsStart(t)
	big := strings.Repeat("x", server.MaxRecvMsgSize)
	for _, c := range []struct {
		name string
		msgs []*extprocv3.ProcessingRequest
	}{
		{"request_headers", []*extprocv3.ProcessingRequest{
			hsHeaders("GET", "/api2/json/nodes/pve1/network", true, &corev3.HeaderValue{Key: "x-big", RawValue: []byte(big)}),
		}},
		{"request_body", []*extprocv3.ProcessingRequest{
			hsHeaders("POST", "/api2/json/nodes/pve1/network", false, &corev3.HeaderValue{Key: "content-type", RawValue: []byte("application/x-www-form-urlencoded")}),
			{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: []byte("type=eth&x=" + big), EndOfStream: true}}},
		}},
		{"response_headers", []*extprocv3.ProcessingRequest{
			hsHeaders("GET", "/api2/json/nodes/pve1/network", true),
			{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: ":status", RawValue: []byte("200")}, {Key: "x-big", RawValue: []byte(big)},
			}}}}},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			st, err := extprocv3.NewExternalProcessorClient(s.conn).Process(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var end error
			for _, m := range c.msgs {
				if err := st.Send(m); err != nil {
					break // the status comes from Recv
				}
				if _, end = st.Recv(); end != nil {
					break
				}
			}
			if end == nil {
				_, end = st.Recv()
			}
			if status.Code(end) != codes.ResourceExhausted {
				t.Fatalf("stream ended with %v, want ResourceExhausted", end)
			}
			t.Logf("%v after %v: %v", status.Code(end), time.Since(start), end)
			s.waitIdle(t, 5*time.Second)
		})
	}
	if got := hsDecide(t, s.conn, "GET", "/api2/json/nodes/pve1/network"); got != "rust" {
		t.Fatalf("decision after oversized messages: %s", got)
	}
}

// TestManyHeadersInOneMessage: 60,000 headers just under the message
// limit are read once, linearly, and decided like any request.
func TestManyHeadersInOneMessage(t *testing.T) {
	s := hsStart(t)
	var extra []*corev3.HeaderValue
	size := 0
	for i := 0; size < server.MaxRecvMsgSize-64<<10; i++ {
		k := fmt.Sprintf("h%d", i)
		extra = append(extra, &corev3.HeaderValue{Key: k, RawValue: []byte("v")})
		size += len(k) + 8 // key, value and protobuf framing
	}
	// The real :path comes last, as a hostile client would put it.
	extra = append(extra, &corev3.HeaderValue{Key: ":path", RawValue: []byte("/api2/json/nodes/pve1/qemu/100/config")})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := extprocv3.NewExternalProcessorClient(s.conn).Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := st.Send(hsHeaders("GET", "/api2/json/nodes/pve1/network", true, extra...)); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatalf("%d headers: %v", len(extra), err)
	}
	took := time.Since(start)
	backend := ""
	for _, o := range resp.GetRequestHeaders().GetResponse().GetHeaderMutation().GetSetHeaders() {
		if o.GetHeader().GetKey() == server.HeaderBackend {
			backend = string(o.GetHeader().GetRawValue())
		}
	}
	// The last :path wins (Envoy sends one); a qemu path is not-network.
	if backend != "perl" {
		t.Fatalf("backend %q, want perl for the not-network :path", backend)
	}
	t.Logf("%d headers decided in %v", len(extra), took)
	_ = st.CloseSend()
	_, _ = st.Recv()
	if got := hsDecide(t, s.conn, "GET", "/api2/json/nodes/pve1/network"); got != "rust" {
		t.Fatalf("decision after the header flood: %s", got)
	}
}

// TestSilentStream: a stream that never sends request_headers holds one
// goroutine and no decision. It is bounded by its client: it ends as soon
// as the client cancels it or its connection goes away (a vanished peer is
// found by keepalive within 30 s + 10 s), and at the latest when the
// server shuts down (ShutdownTimeout). The server does not time it out
// itself; see docs/failure-modes.md.
func TestSilentStream(t *testing.T) {
	s := hsStart(t)

	t.Run("client cancels", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		if _, err := extprocv3.NewExternalProcessorClient(s.conn).Process(ctx); err != nil {
			t.Fatal(err)
		}
		hsWaitActive(t, s, 1)
		// It stays (the server does not close it on its own)...
		time.Sleep(200 * time.Millisecond)
		if s.active.Load() != 1 {
			t.Fatalf("silent stream ended on its own")
		}
		// ...until the client goes away.
		cancel()
		t.Logf("handler returned %v after the client cancelled", s.waitIdle(t, 5*time.Second))
	})

	t.Run("connection closes", func(t *testing.T) {
		conn, err := grpc.NewClient("passthrough:///"+s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		for range 50 {
			if _, err := extprocv3.NewExternalProcessorClient(conn).Process(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		hsWaitActive(t, s, 50)
		_ = conn.Close()
		t.Logf("50 handlers returned %v after their connection closed", s.waitIdle(t, 5*time.Second))
	})

	t.Run("half-closed without a message", func(t *testing.T) {
		st, err := extprocv3.NewExternalProcessorClient(s.conn).Process(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		_ = st.CloseSend()
		if _, err := st.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("stream closed before any message: %v, want a clean end", err)
		}
		s.waitIdle(t, 5*time.Second)
	})

	if got := hsDecide(t, s.conn, "GET", "/api2/json/nodes/pve1/network"); got != "rust" {
		t.Fatalf("decision after silent streams: %s", got)
	}
}

func hsWaitActive(t *testing.T, s *hsServer, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.active.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d streams reached the server", s.active.Load(), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestNotGRPCOnTheGRPCPort: HTTP/1.1, a TLS ClientHello, random bytes and
// a bare HTTP/2 preface with junk frames are dropped by the server's
// transport; none of them reaches the service, and the server keeps
// serving.
func TestNotGRPCOnTheGRPCPort(t *testing.T) {
	s := hsStart(t)
	for _, c := range []struct{ name, data string }{
		{"HTTP/1.1", "GET /envoy.service.ext_proc.v3.ExternalProcessor/Process HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"TLS ClientHello", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + strings.Repeat("\x00", 64)},
		{"random", "\x00\xff\x13\x37" + strings.Repeat("\xa5", 4096)},
		{"preface then junk", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + "\x00\x00\x04\xff\x00\x00\x00\x00\x00junk"},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", s.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			_, _ = io.WriteString(conn, c.data)
			start := time.Now()
			// The server answers with at most a GOAWAY or an HTTP/1.1
			// error line, then closes.
			n, err := io.Copy(io.Discard, conn)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("connection still open after 10s (%d bytes read)", n)
			}
			t.Logf("closed after %v, %d bytes answered", time.Since(start), n)
		})
	}
	if ended := s.ended.Load(); ended != 0 {
		t.Fatalf("%d Process handlers ran for non-gRPC bytes", ended)
	}
	if got := hsDecide(t, s.conn, "DELETE", "/api2/json/nodes/pve1/network"); got != "rust" {
		t.Fatalf("decision after garbage: %s", got)
	}
}

// TestMetadataFlood: gRPC metadata over server.MaxHeaderListSize (64 KiB;
// grpc-go's own default is 16 MiB) is refused with a clear status and
// never reaches the service.
func TestMetadataFlood(t *testing.T) {
	s := hsStart(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	md := metadata.Pairs("x-flood", strings.Repeat("m", server.MaxHeaderListSize))
	st, err := extprocv3.NewExternalProcessorClient(s.conn).Process(metadata.NewOutgoingContext(ctx, md))
	if err == nil {
		if err = st.Send(hsHeaders("GET", "/api2/json/nodes/pve1/network", true)); err == nil {
			_, err = st.Recv()
		}
	}
	if err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("a stream with %d bytes of metadata was served", server.MaxHeaderListSize)
	}
	t.Logf("refused: %v", err)
	if s.ended.Load() != 0 {
		t.Fatalf("the service ran for the flooded stream")
	}
	if got := hsDecide(t, s.conn, "GET", "/api2/json/nodes/pve1/network"); got != "rust" {
		t.Fatalf("decision after the metadata flood: %s", got)
	}
}

// TestHandshakeTimeout: a TCP connection that never sends the HTTP/2
// preface is closed after server.ConnectionTimeout, not grpc-go's 120 s.
func TestHandshakeTimeout(t *testing.T) {
	if testing.Short() {
		t.Skipf("waits %v", server.ConnectionTimeout)
	}
	s := hsStart(t)
	conn, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "PRI * HTTP/2.0\r\n") // half a preface, then silence
	start := time.Now()
	_ = conn.SetDeadline(start.Add(server.ConnectionTimeout + 10*time.Second))
	_, err = io.Copy(io.Discard, conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("silent connection still open after %v", time.Since(start))
	}
	if took := time.Since(start); took < server.ConnectionTimeout/2 {
		t.Fatalf("closed after %v, long before the %v handshake timeout", took, server.ConnectionTimeout)
	} else {
		t.Logf("closed after %v", took)
	}
	if got := hsDecide(t, s.conn, "GET", "/api2/json/nodes/pve1/network"); got != "rust" {
		t.Fatalf("decision after the silent connection: %s", got)
	}
}
