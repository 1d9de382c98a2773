package server

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// errHandlerPanicked is the status of a call whose handler panicked.
var errHandlerPanicked = status.Error(codes.Internal, "the router's handler panicked")

// A panic in a gRPC handler ends the whole process under grpc-go: with
// Envoy in front every request on the node then fails open until systemd
// restarts the router, and one request that trips a bug can do it again
// and again. The recovery interceptors turn it into a failed call
// (codes.Internal), on which Envoy and the data plane fail open for that
// request only, as the in-process link (internal/extproclocal) does.
// The panic is logged with its stack; its value only when it is a runtime
// error, as a value made up by the code may hold request data.

func recoverStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer recoverInto(ss.Context(), info.FullMethod, &err)
	return handler(srv, ss)
}

func recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer recoverInto(ctx, info.FullMethod, &err)
	return handler(ctx, req)
}

func recoverInto(ctx context.Context, method string, err *error) {
	v := recover()
	if v == nil {
		return
	}
	attrs := []slog.Attr{slog.String("method", method), slog.String("stack", string(debug.Stack()))}
	if re, ok := v.(runtime.Error); ok {
		attrs = append(attrs, slog.String("panic", re.Error()))
	} else {
		attrs = append(attrs, slog.String("panic_type", fmt.Sprintf("%T", v)))
	}
	slog.Default().LogAttrs(ctx, slog.LevelError, "gRPC handler panicked; the call fails", attrs...)
	*err = errHandlerPanicked
}
