package server

import (
	"context"
	"net"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

type panickyProcessor struct {
	extprocv3.UnimplementedExternalProcessorServer
	calls int
}

func (p *panickyProcessor) Process(s grpc.BidiStreamingServer[extprocv3.ProcessingRequest, extprocv3.ProcessingResponse]) error {
	if _, err := s.Recv(); err != nil {
		return err
	}
	p.calls++
	if p.calls == 1 {
		_ = s.Context().Err().Error() // Err() is nil: a runtime panic
	}
	return s.Send(&extprocv3.ProcessingResponse{})
}

// TestServerOptionsRecoverPanics: with the router's server options, a
// handler that panics fails its own stream with codes.Internal and the
// server (here: the test binary) serves the next stream. Without the
// recovery interceptor grpc-go lets the panic end the process.
func TestServerOptionsRecoverPanics(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(serverOptions()...)
	extprocv3.RegisterExternalProcessorServer(gs, &panickyProcessor{})
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := extprocv3.NewExternalProcessorClient(conn)
	for i, want := range []codes.Code{codes.Internal, codes.OK} {
		st, err := client.Process(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&extprocv3.ProcessingRequest{}); err != nil {
			t.Fatal(err)
		}
		_, err = st.Recv()
		if got := status.Code(err); got != want {
			t.Errorf("stream %d: %v, want %v", i+1, err, want)
		}
		_ = st.CloseSend()
	}
}
