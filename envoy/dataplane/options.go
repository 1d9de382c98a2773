package dataplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/pve-migration/router/envoy"
)

// DefaultRetryBufferBytes is how much of a request body the data plane
// holds so that a failed rust attempt can be replayed on perl: pveproxy's
// own POST limit (512 KiB), so every valid PVE API body fits. A larger body
// is streamed to its backend and never retried.
const DefaultRetryBufferBytes = 512 << 10

// Options configure New. Perl, Rust and ExtProc are required; everything
// else has a default taken from envoy.DemoConfig(), the same envoy.yaml that
// Envoy runs with, so that the data plane and Envoy cannot drift apart.
type Options struct {
	// Perl is pveproxy, the default backend and the fallback.
	Perl Upstream
	// Rust is the Rust daemon that takes over the network API.
	Rust Upstream

	// ExtProc is the decision service, spoken to through the real ext_proc
	// protocol (envoy.service.ext_proc.v3.ExternalProcessor/Process), one
	// stream per request. The caller dials it: DialExtProc for an address;
	// for a server.NewProcessor in the same program, extproclocal.New
	// (internal/extproclocal: the same messages without gRPC, what
	// migration-router uses) or InProcessExtProc (real gRPC framing over
	// an in-memory connection).
	// There is no other way to decide: a request the service does not
	// answer goes where envoy.yaml's failure_mode_allow says.
	ExtProc extprocv3.ExternalProcessorClient

	// Bootstrap is the Envoy configuration to follow: routes, retry
	// policies, ext_proc settings, header sanitising, health checks and
	// outlier detection. Nil means envoy.LoadBootstrap(envoy.DemoConfig()).
	// Its clusters named by the routes must carry endpoint metadata
	// pve.backend (or be named) "rust" and "perl".
	Bootstrap *bootstrapv3.Bootstrap
	// Routes overrides the route table; nil means
	// envoy.NewRouteTable(Bootstrap).
	Routes *envoy.RouteTable
	// ExtProcSettings overrides failure_mode_allow, message_timeout and
	// allow_mode_override; nil means envoy.ExtProc(Bootstrap). Tests use it
	// to shorten the message timeout.
	ExtProcSettings *envoy.ExtProcSettings

	// MaxBodyBytes bounds a request body buffered for the decision service
	// (mode_override request_body_mode BUFFERED); a larger body gets 413,
	// as in Envoy. 0 means the listener's per_connection_buffer_limit_bytes
	// (1 MiB in envoy.yaml).
	MaxBodyBytes int64
	// RetryBufferBytes bounds the body kept for a retry; 0 means
	// DefaultRetryBufferBytes, negative means never retry a request that
	// has a body (it is streamed).
	RetryBufferBytes int64

	// Logger receives one debug line per request and warnings for local
	// replies and fail-open decisions. It never receives a header value, a
	// query string or a body. Nil means slog.Default().
	Logger *slog.Logger
	// AccessLog, if non-nil, is called once per request after the response
	// has been written (or the client went away), on the request's
	// goroutine. Nil means no access log beyond Logger.
	AccessLog func(AccessRecord)
	// WrapTransport, if non-nil, is called once per backend in New with the
	// backend's name ("rust", "perl") and its connection pool, and returns
	// the RoundTripper to use instead, e.g. otelhttp.NewTransport for a
	// client span per attempt. It must keep httptrace hooks working, since
	// retry safety depends on them. Nil means the pool is used as is.
	WrapTransport func(backend string, rt http.RoundTripper) http.RoundTripper
	// DisableHealthChecks turns off the active health checks envoy.yaml
	// configures (rust: GET /api2/json/version every 5 s). Passive outlier
	// detection stays on.
	DisableHealthChecks bool
}

// AccessRecord is one request as the access log sees it. Like Envoy's
// access log format in envoy.yaml it holds no header value, cookie or
// query string.
type AccessRecord struct {
	Start    time.Time
	Duration time.Duration
	Method   string
	// Path is the normalised path without its query string.
	Path string
	// Status is the status the client got (0 if it went away first).
	Status int
	// Route is the Envoy route name (rust_read, rust_write, perl_default).
	Route string
	// Decision is the x-pve-backend value the router saw ("rust", "perl",
	// or "" when the decision service gave none).
	Decision string
	// ServedBy is x-pve-served-by: the backend of the final attempt.
	ServedBy string
	// Attempts is x-envoy-attempt-count.
	Attempts int
	// LocalReply says the data plane answered itself; Details says why
	// (Envoy's response code details, e.g. "upstream_per_try_timeout").
	LocalReply bool
	Details    string
	// FailOpen says the decision service did not answer and the request
	// continued without it.
	FailOpen  bool
	RequestID string
}

// Proxy is the embedded data plane: an http.Handler that plays Envoy's part
// in front of pveproxy and the Rust daemon exactly as envoy.yaml configures
// Envoy. For every request it strips what a client may not send, asks the
// decision service over ext_proc, routes on the answer with envoy.yaml's
// route table, tries rust and falls back to perl under the retry policy,
// and reports the outcome back to the decision service. Where it differs
// from Envoy, envoy/dataplane/README.md says so.
//
// A Proxy is safe for concurrent use. Close it to stop its health checks.
type Proxy struct {
	opts     Options
	cfg      *envoyConfig
	routes   *envoy.RouteTable
	ep       envoy.ExtProcSettings
	log      *slog.Logger
	sanitize []string            // sanitizeKeys(cfg)
	backends map[string]*backend // by Envoy cluster name
	perl     *backend
	rust     *backend

	maxBody   int64
	retryBuf  int64
	m         counters
	now       func() time.Time
	hcCancel  context.CancelFunc
	hcWG      sync.WaitGroup
	closeOnce sync.Once

	// hijacked websocket connections, closed by Serve on shutdown.
	connMu sync.Mutex
	conns  map[net.Conn]struct{}

	// routeHeaders are the headers the route table matches on.
	routeHeaders []routeHeader
}

// New builds a Proxy from opts and starts the active health checks that
// the bootstrap configures. It fails on a missing or invalid upstream or
// ExtProc client, and on a bootstrap that uses a feature the data plane
// does not implement.
func New(opts Options) (*Proxy, error) {
	if opts.ExtProc == nil {
		return nil, errors.New("dataplane: Options.ExtProc is required (use InProcessExtProc or DialExtProc)")
	}
	b := opts.Bootstrap
	if b == nil {
		var err error
		if b, err = defaultBootstrap(); err != nil {
			return nil, fmt.Errorf("dataplane: %w", err)
		}
	}
	cfg, err := readEnvoyConfig(b)
	if err != nil {
		return nil, fmt.Errorf("dataplane: envoy config: %w", err)
	}
	p := &Proxy{opts: opts, cfg: cfg, log: opts.Logger, now: time.Now, backends: map[string]*backend{}, conns: map[net.Conn]struct{}{}}
	if p.log == nil {
		p.log = slog.Default()
	}
	p.sanitize = sanitizeKeys(cfg)
	if p.routes = opts.Routes; p.routes == nil {
		if p.routes, err = envoy.NewRouteTable(b); err != nil {
			return nil, fmt.Errorf("dataplane: %w", err)
		}
	}
	p.routeHeaders = routeHeaders(p.routes.HeaderNames())
	if opts.ExtProcSettings != nil {
		p.ep = *opts.ExtProcSettings
	} else if p.ep, err = envoy.ExtProc(b); err != nil {
		return nil, fmt.Errorf("dataplane: %w", err)
	}
	if p.maxBody = opts.MaxBodyBytes; p.maxBody <= 0 {
		p.maxBody = cfg.bufferLimit
	}
	if p.retryBuf = opts.RetryBufferBytes; p.retryBuf == 0 {
		p.retryBuf = DefaultRetryBufferBytes
	}
	var errs []error
	for name, cc := range cfg.clusters {
		var u Upstream
		switch cc.backend {
		case "rust":
			u = opts.Rust
		case "perl":
			u = opts.Perl
		default:
			continue // ext_proc, jaeger, composite clusters
		}
		be, err := newBackend(cc.backend, name, u, cc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if opts.WrapTransport != nil {
			be.rt = opts.WrapTransport(be.name, be.transport)
			be.writeRT = opts.WrapTransport(be.name, be.writeTransport)
		}
		p.backends[name] = be
		if be.name == "rust" {
			p.rust = be
		} else {
			p.perl = be
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("dataplane: %w", err)
	}
	if p.rust == nil || p.perl == nil {
		return nil, errors.New("dataplane: the bootstrap must have a rust and a perl cluster")
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.hcCancel = cancel
	if !opts.DisableHealthChecks {
		for _, be := range p.backends {
			if be.cfg.health != nil {
				p.hcWG.Add(1)
				go be.healthLoop(ctx, &p.hcWG)
			}
		}
	}
	return p, nil
}

// Close stops the health checks and closes idle upstream connections. The
// Proxy still serves requests afterwards, without active health checks.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		p.hcCancel()
		p.hcWG.Wait()
		for _, be := range p.backends {
			be.transport.CloseIdleConnections()
		}
	})
	return nil
}

// Health reports what the data plane knows about both backends' reachability.
func (p *Proxy) Health() Health {
	now := p.now()
	return Health{Perl: p.perl.health(now), Rust: p.rust.health(now)}
}

// Metrics returns a snapshot of the data plane's counters.
func (p *Proxy) Metrics() Metrics { return p.m.snapshot() }

func (p *Proxy) trackConn(c net.Conn, add bool) {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	if add {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

// closeHijacked closes every websocket connection (Serve's shutdown).
func (p *Proxy) closeHijacked() {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

var _ http.Handler = (*Proxy)(nil)

// closeQuietly closes c, ignoring the error: used for bodies nobody reads.
func closeQuietly(c io.Closer) {
	if c != nil {
		_ = c.Close()
	}
}
