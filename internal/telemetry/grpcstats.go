package telemetry

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// The router's gRPC server has no stats handler. Any stats handler makes
// grpc-go build and dispatch stats events for every message of every
// stream (27 allocations and about 2 KB per ext_proc stream, measured),
// and otelgrpc's, even told not to record ext_proc, copied the whole
// metadata and parsed the method name on each one. The ext_proc and health
// streams need only the W3C trace context of their metadata; the control
// API gets a SERVER span per call from a unary interceptor.

// streamContext is the stream interceptor of GRPCServerOptions: the stream
// context carries the trace context Envoy put in the gRPC metadata
// (envoy-facts §1.6), so the decision span becomes its child. A stream
// without a traceparent is passed through untouched.
func streamContext(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx := ss.Context()
	if ext := extractTraceContext(ctx); ext != ctx {
		ss = tracedStream{ServerStream: ss, ctx: ext}
	}
	return handler(srv, ss)
}

// tracedStream is a ServerStream whose context has the extracted trace.
type tracedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s tracedStream) Context() context.Context { return s.ctx }

// leanMethod reports the RPCs that start no span of their own: the
// decision span is the SERVER span of a PVE request, and health checks
// would only be noise.
func leanMethod(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/envoy.service.ext_proc.v3.ExternalProcessor/") ||
		strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/")
}

// unarySpan is the unary interceptor of GRPCServerOptions: an ordinary
// gRPC SERVER span for each control API call, named like otelgrpc's
// ("pvemigration.v1.ControlService/GetStatus"), child of the caller's
// trace context, with rpc.system.name, rpc.method and the status code.
func (t *Telemetry) unarySpan(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx = extractTraceContext(ctx)
	if leanMethod(info.FullMethod) {
		return handler(ctx, req)
	}
	name := strings.TrimPrefix(info.FullMethod, "/")
	ctx, span := t.tracer.Start(ctx, name, serverKind,
		trace.WithAttributes(attribute.String("rpc.system.name", "grpc"), attribute.String("rpc.method", name)))
	defer span.End()
	resp, err := handler(ctx, req)
	st, _ := status.FromError(err)
	span.SetAttributes(attribute.String("rpc.response.status_code", st.Code().String()))
	if err != nil {
		span.SetStatus(codes.Error, st.Message())
	}
	return resp, err
}
