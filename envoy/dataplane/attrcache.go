package dataplane

import (
	"sync"

	"google.golang.org/protobuf/types/known/structpb"
)

// ext_proc attribute values that repeat from request to request are built
// once and shared: a structpb.Value is two allocations, and the response
// attributes of envoy.yaml (upstream address, attempt count, host
// metadata, route name, status) were a tenth of the data plane's
// allocations. Shared values are never modified; the gRPC path only
// marshals them and the in-process decision service only reads them, and
// both are safe for concurrent readers.

// numberValues holds the numbers 0..599: every HTTP status and attempt
// count.
var numberValues = func() []*structpb.Value {
	vs := make([]*structpb.Value, 600)
	for i := range vs {
		vs[i] = structpb.NewNumberValue(float64(i))
	}
	return vs
}()

// numberValue is structpb.NewNumberValue(float64(n)), shared for 0..599.
func numberValue(n int) *structpb.Value {
	if n >= 0 && n < len(numberValues) {
		return numberValues[n]
	}
	return structpb.NewNumberValue(float64(n))
}

// configValues caches string values that come from the bootstrap (cluster
// addresses, host metadata, route names): a fixed, small set.
var configValues sync.Map // string → *structpb.Value

// configString is structpb.NewStringValue(s), shared, for a string taken
// from the configuration (never from a request, which would let clients
// grow the cache).
func configString(s string) *structpb.Value {
	if v, ok := configValues.Load(s); ok {
		return v.(*structpb.Value)
	}
	v, _ := configValues.LoadOrStore(s, structpb.NewStringValue(s))
	return v.(*structpb.Value)
}
