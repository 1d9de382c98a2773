package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc/metadata"
)

// ExtractStreamContext does for an ext_proc stream served without gRPC
// (internal/extproclocal, the embedded data plane's in-process link) what
// the stats handler of GRPCServerOptions does for one served by gRPC: it
// puts the W3C trace context found in the stream's incoming metadata into
// ctx, so that the decision span has the same parent on both paths. A
// stream without a traceparent costs one metadata lookup.
func (t *Telemetry) ExtractStreamContext(ctx context.Context) context.Context {
	return extractTraceContext(ctx)
}

// extractTraceContext is ExtractStreamContext; GRPCServerOptions' stats
// handler uses it for the ext_proc streams served by gRPC.
func extractTraceContext(ctx context.Context) context.Context {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok || len(md["traceparent"]) == 0 {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, mdCarrier(md))
}

// mdCarrier reads gRPC metadata as a propagation.TextMapCarrier.
type mdCarrier metadata.MD

func (c mdCarrier) Get(key string) string {
	if v := metadata.MD(c).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c mdCarrier) Set(key, value string) { metadata.MD(c).Set(key, value) }

func (c mdCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
