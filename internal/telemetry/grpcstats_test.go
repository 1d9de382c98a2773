package telemetry_test

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/pve-migration/router/proto/pvemigration/v1"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/internal/telemetry"
	"github.com/pve-migration/router/server"
)

// TestControlAPISpans: with no stats handler on the gRPC server, a control
// API call still gets its SERVER span, child of the caller's trace
// context, with the method and status; a health check gets none.
func TestControlAPISpans(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{
		Env: func(string) string { return "" }, Logger: slog.New(slog.DiscardHandler),
		SpanProcessors: []sdktrace.SpanProcessor{spans},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	proc := server.NewProcessor(server.Options{Config: func() *config.Snapshot { return nil }})
	gs := server.NewGRPCServer(proc, pb.UnimplementedControlServiceServer{}, health.NewServer(), tel.GRPCServerOptions()...)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })

	const traceID, parentID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", "00-"+traceID+"-"+parentID+"-01")
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	_, err = pb.NewControlServiceClient(conn).GetStatus(ctx, &pb.GetStatusRequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("GetStatus: %v, want Unimplemented", err)
	}
	got := spans.Ended()
	if len(got) != 1 {
		t.Fatalf("%d spans, want one for GetStatus and none for the health check", len(got))
	}
	s := got[0]
	attrs := map[string]string{}
	for _, kv := range s.Attributes() {
		attrs[string(kv.Key)] = kv.Value.String()
	}
	if s.Name() != "pvemigration.v1.ControlService/GetStatus" || s.SpanKind() != trace.SpanKindServer ||
		s.SpanContext().TraceID().String() != traceID || s.Parent().SpanID().String() != parentID {
		t.Errorf("span %q kind %v trace %s parent %s", s.Name(), s.SpanKind(), s.SpanContext().TraceID(), s.Parent().SpanID())
	}
	if attrs["rpc.system.name"] != "grpc" || attrs["rpc.method"] != "pvemigration.v1.ControlService/GetStatus" ||
		attrs["rpc.response.status_code"] != "Unimplemented" || s.Status().Code.String() != "Error" {
		t.Errorf("attributes %v status %v", attrs, s.Status())
	}
}
