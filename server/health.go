package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/pve-migration/router/internal/config"
)

// Probe states, as /health, /status and the control API show them.
const (
	StateReachable   = "reachable"
	StateUnreachable = "unreachable"
	// StateUnknown: no URL is configured, or no probe has finished yet.
	StateUnknown = "unknown"
)

// ProbeResult is the last probe of one backend.
type ProbeResult struct {
	// URL is the probed base URL without credentials; "" if none is
	// configured.
	URL   string `json:"url"`
	State string `json:"state"`
	// Reachable is true when the daemon gave any HTTP answer, 401 and 5xx
	// included: the question is whether it is up, not whether our token
	// is accepted (test-perl checks that).
	Reachable  bool          `json:"reachable"`
	Latency    time.Duration `json:"-"`
	LatencyMS  float64       `json:"latency_ms"`
	HTTPStatus int           `json:"http_status,omitempty"`
	// Error says why the probe failed; it never contains the token.
	Error     string     `json:"error,omitempty"`
	CheckedAt *time.Time `json:"checked_at,omitempty"`
}

// HealthReport is both backends' last probe.
type HealthReport struct {
	Perl ProbeResult `json:"perl"`
	Rust ProbeResult `json:"rust"`
}

// HealthOptions configures a HealthChecker. Zero values are the defaults.
type HealthOptions struct {
	// Config gives the Perl API base URL and token at each probe.
	Config func() *config.Snapshot
	// RustURL is the Rust daemon's base URL (a router flag); "" reports
	// Rust as unknown.
	RustURL string
	// Interval between probe rounds (default 10s).
	Interval time.Duration
	// Timeout of one probe (default 2s).
	Timeout time.Duration
	// TLS verifies both backends' certificates.
	TLS TLSOptions
	// Client replaces the HTTP client built from TLS.
	Client *http.Client
	// Logger receives reachability changes; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// HealthChecker probes GET {base}/api2/json/version of Perl and Rust in
// the background and keeps the last result, so that /health and /status
// never wait on a backend and never multiply load on it: probes run every
// Interval whatever the number of readers.
type HealthChecker struct {
	opts   HealthOptions
	client *http.Client

	mu     sync.RWMutex
	report HealthReport
}

// NewHealthChecker returns a checker that has not probed yet (both
// backends "unknown"); call Run to start probing.
func NewHealthChecker(opts HealthOptions) (*HealthChecker, error) {
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Config == nil {
		opts.Config = func() *config.Snapshot { return nil }
	}
	h := &HealthChecker{opts: opts, client: opts.Client}
	if h.client == nil {
		c, err := opts.TLS.httpClient()
		if err != nil {
			return nil, fmt.Errorf("health checker: %w", err)
		}
		h.client = c
	}
	h.report.Perl.State, h.report.Rust.State = StateUnknown, StateUnknown
	if s := opts.Config(); s != nil {
		h.report.Perl.URL = displayURL(s.PerlAPIBaseURL)
	}
	if opts.RustURL != "" {
		h.report.Rust.URL = displayURL(opts.RustURL)
	}
	return h, nil
}

// Run probes at once and then every Interval until ctx ends.
func (h *HealthChecker) Run(ctx context.Context) {
	t := time.NewTicker(h.opts.Interval)
	defer t.Stop()
	for {
		h.CheckNow(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// CheckNow runs one probe round (both backends in parallel) and records
// it. Run calls it; tests and `migration-ctl test-perl`-like callers may
// too.
func (h *HealthChecker) CheckNow(ctx context.Context) {
	var perl, rust ProbeResult
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var base string
		var token config.Secret
		if s := h.opts.Config(); s != nil {
			base, token = s.PerlAPIBaseURL, s.PerlAPIToken
		}
		perl = h.probe(ctx, base, token)
	}()
	rust = h.probe(ctx, h.opts.RustURL, "")
	wg.Wait()
	if ctx.Err() != nil {
		return // shutting down: keep the last real answer
	}

	h.mu.Lock()
	old := h.report
	h.report = HealthReport{Perl: perl, Rust: rust}
	h.mu.Unlock()
	h.logChange("perl", old.Perl, perl)
	h.logChange("rust", old.Rust, rust)
}

// Report returns the last probe results.
func (h *HealthChecker) Report() HealthReport {
	if h == nil {
		return HealthReport{Perl: ProbeResult{State: StateUnknown}, Rust: ProbeResult{State: StateUnknown}}
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.report
}

func (h *HealthChecker) logChange(name string, old, cur ProbeResult) {
	if old.State == cur.State {
		return
	}
	level := slog.LevelInfo
	if cur.State == StateUnreachable {
		level = slog.LevelWarn
	}
	h.opts.Logger.LogAttrs(context.Background(), level, "backend "+cur.State,
		slog.String("backend", name), slog.String("url", cur.URL), slog.String("error", cur.Error))
}

// probe asks one backend for its version. token, if set, is sent so the
// probe looks like what the router's own lookups send.
func (h *HealthChecker) probe(ctx context.Context, base string, token config.Secret) ProbeResult {
	r := ProbeResult{URL: displayURL(base), State: StateUnknown}
	if base == "" {
		r.URL = ""
		return r
	}
	ctx, cancel := context.WithTimeout(ctx, h.opts.Timeout)
	defer cancel()
	start := h.opts.Now()
	r.CheckedAt = &start
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, apiURL(base, "/api2/json/version"), nil)
	if err != nil {
		r.State, r.Error = StateUnreachable, fmt.Errorf("build request: %w", err).Error()
		return r
	}
	if token.IsSet() {
		req.Header.Set("Authorization", "PVEAPIToken="+token.Reveal())
	}
	resp, err := h.client.Do(req)
	r.Latency = h.opts.Now().Sub(start)
	r.LatencyMS = float64(r.Latency.Microseconds()) / 1000
	if err != nil {
		var msg string
		if errors.Is(err, context.DeadlineExceeded) {
			msg = fmt.Sprintf("no answer within %s", h.opts.Timeout)
		} else {
			msg = err.Error() // *url.Error: the URL without password, never headers
		}
		r.State, r.Error = StateUnreachable, msg
		return r
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	r.State, r.Reachable, r.HTTPStatus = StateReachable, true, resp.StatusCode
	return r
}
