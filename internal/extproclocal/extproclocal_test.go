package extproclocal_test

import (
	"context"
	"errors"
	"io"
	"runtime"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/pve-migration/router/internal/extproclocal"
)

type (
	req    = extprocv3.ProcessingRequest
	resp   = extprocv3.ProcessingResponse
	stream = grpc.BidiStreamingServer[req, resp]
)

// serverFunc adapts a function to ExternalProcessorServer.
type serverFunc func(stream) error

func (f serverFunc) Process(s stream) error { return f(s) }

var (
	headers  = &req{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{}}}
	answer   = &resp{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}}
	deadline = 5 * time.Second
)

// echo answers every message until the client half-closes or goes away,
// and reports what ended it.
func echo(ended chan<- error) serverFunc {
	return func(s stream) error {
		for {
			if _, err := s.Recv(); err != nil {
				report(ended, err)
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
			if err := s.Send(answer); err != nil {
				report(ended, err)
				return err
			}
		}
	}
}

func report(ch chan<- error, err error) {
	select {
	case ch <- err:
	default:
	}
}

func wait[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(deadline):
		t.Fatal("nothing within 5s")
		var zero T
		return zero
	}
}

// TestStreamEnds checks each way a stream ends, as grpc-go reports it on
// both sides.
func TestStreamEnds(t *testing.T) {
	t.Run("half-close: server sees EOF, client EOF", func(t *testing.T) {
		ended := make(chan error, 1)
		c := extproclocal.New(echo(ended), extproclocal.Options{})
		st, err := c.Process(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(headers); err != nil {
			t.Fatal(err)
		}
		if r, err := st.Recv(); err != nil || r != answer {
			t.Fatalf("Recv %v %v, want the server's message itself", r, err)
		}
		_ = st.CloseSend()
		if _, err := st.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("client Recv after the server returned nil: %v, want io.EOF", err)
		}
		if err := wait(t, ended); !errors.Is(err, io.EOF) {
			t.Fatalf("server Recv after CloseSend: %v, want io.EOF", err)
		}
		if err := st.Send(headers); !errors.Is(err, io.EOF) {
			t.Fatalf("Send after the end: %v, want io.EOF", err)
		}
	})
	t.Run("cancel: server sees Canceled", func(t *testing.T) {
		ended := make(chan error, 1)
		c := extproclocal.New(echo(ended), extproclocal.Options{})
		ctx, cancel := context.WithCancel(context.Background())
		st, err := c.Process(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_ = st.Send(headers)
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := wait(t, ended); status.Code(err) != codes.Canceled {
			t.Fatalf("server Recv after cancel: %v, want Canceled", err)
		}
		if _, err := st.Recv(); status.Code(err) != codes.Canceled {
			t.Fatalf("client Recv after cancel: %v, want Canceled", err)
		}
	})
	t.Run("deadline: both sides see DeadlineExceeded", func(t *testing.T) {
		ended := make(chan error, 1)
		c := extproclocal.New(echo(ended), extproclocal.Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		st, err := c.Process(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("client Recv: %v, want DeadlineExceeded", err)
		}
		if err := wait(t, ended); status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("server Recv: %v, want DeadlineExceeded", err)
		}
	})
	t.Run("server error: its status reaches Recv, after the answer it sent first", func(t *testing.T) {
		for _, c := range []struct {
			name string
			ret  error
			code codes.Code
		}{
			{"status", status.Error(codes.FailedPrecondition, "out of order"), codes.FailedPrecondition},
			{"plain error", errors.New("boom"), codes.Unknown},
		} {
			t.Run(c.name, func(t *testing.T) {
				srv := serverFunc(func(s stream) error {
					if _, err := s.Recv(); err != nil {
						return err
					}
					_ = s.Send(answer)
					return c.ret
				})
				st, err := extproclocal.New(srv, extproclocal.Options{}).Process(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				_ = st.Send(headers)
				// Wait until Process has surely returned: the answer
				// still comes first.
				time.Sleep(10 * time.Millisecond)
				if r, err := st.Recv(); err != nil || r != answer {
					t.Fatalf("first Recv %v %v, want the answer", r, err)
				}
				_, err = st.Recv()
				if status.Code(err) != c.code {
					t.Fatalf("Recv %v, want %s", err, c.code)
				}
			})
		}
	})
}

// TestServerContext: the server context carries the client's outgoing
// metadata as incoming metadata and none of the client context's values,
// and the ServerContext hook is applied.
func TestServerContext(t *testing.T) {
	type key struct{}
	type clientKey struct{}
	got := make(chan context.Context, 1)
	srv := serverFunc(func(s stream) error { got <- s.Context(); _, err := s.Recv(); return err })
	hook := func(ctx context.Context) context.Context { return context.WithValue(ctx, key{}, "hook") }
	c := extproclocal.New(srv, extproclocal.Options{ServerContext: hook})
	ctx := context.WithValue(context.Background(), clientKey{}, 1)
	ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", "r1")
	ctx, cancel := context.WithCancel(ctx)
	st, err := c.Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sctx := wait(t, got)
	if v := metadata.ValueFromIncomingContext(sctx, "x-request-id"); len(v) != 1 || v[0] != "r1" {
		t.Errorf("incoming x-request-id %v", v)
	}
	if sctx.Value(clientKey{}) != nil {
		t.Error("a client context value reached the server")
	}
	if sctx.Value(key{}) != "hook" {
		t.Error("ServerContext hook not applied")
	}
	// A context derived on the server side ends with the client's.
	derived, stop := context.WithCancel(sctx)
	defer stop()
	cancel()
	select {
	case <-derived.Done():
	case <-time.After(deadline):
		t.Fatal("derived server context not cancelled with the client's")
	}
	_ = st.CloseSend()
}

// TestCloseWaitsForStreams: Close refuses new streams and returns once
// the open ones ended; no goroutine is left behind.
func TestCloseWaitsForStreams(t *testing.T) {
	before := runtime.NumGoroutine()
	ended := make(chan error, 100)
	c := extproclocal.New(echo(ended), extproclocal.Options{})
	for range 50 {
		ctx, cancel := context.WithCancel(context.Background())
		st, err := c.Process(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_ = st.Send(headers)
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	st, err := c.Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close(context.Background()) }()
	select {
	case <-closed:
		t.Fatal("Close returned with a stream open")
	case <-time.After(20 * time.Millisecond):
	}
	if _, err := c.Process(context.Background()); status.Code(err) != codes.Canceled {
		t.Errorf("Process after Close: %v, want Canceled", err)
	}
	_ = st.CloseSend()
	if err := wait(t, closed); err != nil {
		t.Fatal(err)
	}
	for i := 0; runtime.NumGoroutine() > before && i < 200; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines, %d before", n, before)
	}
}

// BenchmarkStream is the link's own cost: one stream with two exchanges
// (request and response headers) and the close, against a server that
// answers at once. The data plane's BenchmarkGETNetwork compares the link
// with gRPC on the whole request path.
func BenchmarkStream(b *testing.B) {
	c := extproclocal.New(echo(make(chan error, 1)), extproclocal.Options{})
	b.ReportAllocs()
	for b.Loop() {
		st, err := c.Process(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		for range 2 {
			_ = st.Send(headers)
			if _, err := st.Recv(); err != nil {
				b.Fatal(err)
			}
		}
		_ = st.CloseSend()
		if _, err := st.Recv(); !errors.Is(err, io.EOF) {
			b.Fatal(err)
		}
	}
}

// TestWorkersAreReused: sequential streams are served by the goroutine
// the first one started (no new goroutine, no new stack per request), and
// an idle one exits by itself.
func TestWorkersAreReused(t *testing.T) {
	c := extproclocal.New(echo(make(chan error, 1)), extproclocal.Options{})
	one := func() {
		st, err := c.Process(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		_ = st.Send(headers)
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
		_ = st.CloseSend()
		if _, err := st.Recv(); !errors.Is(err, io.EOF) {
			t.Fatal(err)
		}
	}
	before := runtime.NumGoroutine()
	one()
	after1 := runtime.NumGoroutine()
	for range 100 {
		one()
	}
	if n := runtime.NumGoroutine(); n > after1 || after1 > before+1 {
		t.Errorf("goroutines: %d before, %d after one stream, %d after 100 more; want one worker, reused", before, after1, n)
	}
	for i := 0; runtime.NumGoroutine() > before && i < 500; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after the idle time, %d before", n, before)
	}
}
