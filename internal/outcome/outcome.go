// Package outcome carries what the decision service learns about one PVE
// request, from its request headers to its final response headers, to
// whoever records it (traces, metrics, the audit log, the status API). It
// holds no policy and does no I/O: the ext_proc server fills the events, an
// Observer records them.
package outcome

import (
	"context"
	"time"

	"github.com/pve-migration/router/routing"
)

// TypeSource says where the interface type of a node-network write came
// from, so that a trace shows why a request counted as basic or advanced.
type TypeSource string

// Where an interface type can come from.
const (
	TypeNone   TypeSource = ""       // not needed for this request
	TypeQuery  TypeSource = "query"  // the `type` query parameter
	TypeBody   TypeSource = "body"   // the buffered form or JSON body
	TypeLookup TypeSource = "lookup" // a GET of the interface through the Perl API (DELETE)
	TypeAbsent TypeSource = "absent" // needed but not found: classified advanced
)

// Decision is one routing decision as the service made it.
type Decision struct {
	// RequestID is Envoy's x-request-id, for correlating logs and traces.
	RequestID string
	Method    string
	// Path is the normalised path without query string. It never holds
	// secrets: PVE puts none in paths.
	Path     string
	Phase    routing.Phase
	Decision routing.Decision
	// IfaceType and TypeSource are set for node-network create/update/delete.
	IfaceType  string
	TypeSource TypeSource
	// TypeError is why the type could not be determined (body parse error,
	// lookup failure); empty otherwise. It never contains body content.
	TypeError string
	// Start is when the request headers reached the service.
	Start time.Time
	// DecideDuration is the time the service took to decide, body wait
	// and type lookup included.
	DecideDuration time.Duration
}

// Result is what the final response headers say about how the request was
// served. Envoy retries are invisible to the service except through these.
type Result struct {
	// ServedBy is "rust" or "perl" from x-pve-served-by; "" when no backend
	// answered (a local reply such as 503 or 504).
	ServedBy string
	// Attempts is x-envoy-attempt-count (1 = no retry); 0 when absent.
	Attempts int
	// Status is the HTTP status the client gets. For /api2/extjs it is
	// always 200 on the wire; Status stays what the wire says.
	Status int
	// Fallback is true when a Rust decision was served by Perl.
	Fallback bool
	// Duration runs from the request headers to the response headers.
	Duration time.Duration
}

// Observer records decisions and outcomes. Implementations must be safe
// for concurrent use and cheap: they run on every request's hot path.
type Observer interface {
	// Decided is called once per request after the decision. The returned
	// context carries whatever the observer needs later (a span); the
	// service passes it to Finished or Abandoned.
	Decided(ctx context.Context, d *Decision) context.Context
	// Finished is called once when the final response headers arrive.
	Finished(ctx context.Context, d *Decision, r Result)
	// Abandoned is called when the stream ends before response headers
	// (client gone, Envoy timed out the ext_proc call, response mode SKIP).
	Abandoned(ctx context.Context, d *Decision, reason string)
}

// Nop is an Observer that records nothing, for tests and for
// metrics_enabled = false.
type Nop struct{}

// Decided returns ctx unchanged.
func (Nop) Decided(ctx context.Context, _ *Decision) context.Context { return ctx }

// Finished does nothing.
func (Nop) Finished(context.Context, *Decision, Result) {}

// Abandoned does nothing.
func (Nop) Abandoned(context.Context, *Decision, string) {}

var _ Observer = Nop{}

// BackendStats are the seed's figures for one backend ("rust" or "perl",
// by who served the response).
type BackendStats struct {
	Requests uint64
	// Errors counts 5xx answers and requests no backend answered.
	Errors     uint64
	ErrorRate  float64
	AvgSeconds float64
	P50Seconds float64
	P99Seconds float64
}

// Stats are the seed's monitoring figures, computed from the same metric
// instruments that /metrics exports, so the CLI, /status and Prometheus
// never disagree.
type Stats struct {
	TotalRequests uint64
	// ByBackend is keyed by served_by: "rust", "perl", or "none" for local
	// replies.
	ByBackend map[string]BackendStats
	// RustDecisions counts requests decided for Rust; RustSuccesses those
	// Rust itself answered without a 5xx; Fallbacks those Perl answered.
	RustDecisions   uint64
	RustSuccesses   uint64
	Fallbacks       uint64
	RustSuccessRate float64
	FallbackRate    float64
}

// StatsSource is implemented by the telemetry package and read by the
// control API and /status.
type StatsSource interface {
	Stats() Stats
}
