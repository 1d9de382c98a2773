package dataplane

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// Upstream is one backend the data plane forwards to: pveproxy ("perl") or
// the Rust daemon ("rust"). Its TLS fields are the ways PVE's own clients
// trust a node: the cluster CA, or a pinned certificate fingerprint.
type Upstream struct {
	// URL is the backend's base URL, http or https with host and port, e.g.
	// https://127.0.0.1:8006. Requests keep their own path (Envoy rewrites
	// no prefix), so URL may not have a path other than "/".
	URL string
	// CAFile is a PEM file with the CA certificates that sign the
	// backend's certificate (on PVE: /etc/pve/pve-root-ca.pem). Empty means
	// the system roots. Ignored for an http:// URL.
	CAFile string
	// Fingerprint pins the SHA-256 fingerprint of the backend's leaf
	// certificate, written as PVE prints it (`pvenode cert info`:
	// "AA:BB:..."; colons and case are ignored). With a pin, chain and
	// host name are not verified: the pin is the trust, as in PVE clients.
	Fingerprint string
	// Insecure turns off certificate verification. Only for test setups:
	// anyone on the path could then read API tokens. Ignored for http://.
	Insecure bool
	// ServerName is the TLS server name to send and verify; empty means
	// the host of URL.
	ServerName string
}

// backend is one Upstream at run time: its connection pool, its Envoy
// cluster settings and what is known about its health.
type backend struct {
	name      string // "rust" or "perl": x-pve-served-by, metrics
	cluster   string
	base      *url.URL
	transport *http.Transport
	rt        http.RoundTripper // transport, possibly wrapped by Options.WrapTransport
	cfg       clusterConfig
	// hostMetadata is the xds.upstream_host_metadata attribute, fixed per
	// backend, so it is formatted once rather than on every response.
	hostMetadata string

	mu            sync.Mutex
	hcKnown       bool // at least one health check finished
	hcHealthy     bool
	hcFails       int
	hcOKs         int
	lastCheck     time.Time
	lastCheckErr  string
	consecGateway int
	consec5xx     int
	ejections     int
	ejectedUntil  time.Time
	lastSuccess   time.Time
	lastFailure   time.Time
	lastError     string

	// writeTransport carries every request that may change state (any
	// method but GET, HEAD, OPTIONS, TRACE) on a connection of its own,
	// never a pooled one. net/http replays a request on a new connection
	// only when a reused one failed (persistConn.shouldRetryRequest), and
	// a client's Idempotency-Key makes it count even a DELETE as
	// replayable; on a fresh connection the transport never retries, so
	// only the router's retry policy can ever send a write twice.
	writeTransport http.RoundTripper
	writeRT        http.RoundTripper // writeTransport, possibly wrapped
}

func newBackend(name, cluster string, u Upstream, cfg clusterConfig) (*backend, error) {
	if u.URL == "" {
		return nil, fmt.Errorf("%s upstream: no URL", name)
	}
	base, err := url.Parse(u.URL)
	if err != nil {
		return nil, fmt.Errorf("%s upstream: %w", name, err)
	}
	if (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("%s upstream %q: want http:// or https:// with a host", name, u.URL)
	}
	if base.Path != "" && base.Path != "/" || base.RawQuery != "" || base.User != nil {
		return nil, fmt.Errorf("%s upstream %q: only scheme, host and port are allowed", name, u.URL)
	}
	base.Path = ""
	tlsCfg, err := u.tlsConfig(base)
	if err != nil {
		return nil, fmt.Errorf("%s upstream: %w", name, err)
	}
	// A pin on a plain-HTTP URL would promise a check that never happens;
	// a shared CA file or Insecure simply does not apply to it.
	if base.Scheme == "http" && u.Fingerprint != "" {
		return nil, fmt.Errorf("%s upstream %q: a certificate fingerprint needs an https:// URL", name, u.URL)
	}
	dialer := &net.Dialer{Timeout: cfg.connectTimeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		// Backends are local: never go through an HTTP(S)_PROXY.
		Proxy:               nil,
		DialContext:         dialer.DialContext,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: 10 * time.Second,
		// HTTP/1.1 keep-alive pool, like Envoy's per-cluster pool.
		ForceAttemptHTTP2:   false,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		// Pass gzip through untouched: the client asked for it, not us.
		DisableCompression:     true,
		MaxResponseHeaderBytes: 64 << 10,
		ReadBufferSize:         32 << 10,
		WriteBufferSize:        32 << 10,
	}
	wtr := freshConnTransport{template: tr.Clone()}
	return &backend{name: name, cluster: cluster, base: base, transport: tr, rt: tr,
		writeTransport: wtr, writeRT: wtr, cfg: cfg,
		hostMetadata: fmt.Sprintf(`filter_metadata { key: "pve" value { fields { key: "backend" value { string_value: %q } } } }`, name)}, nil
}

func (u Upstream) tlsConfig(base *url.URL) (*tls.Config, error) {
	if base.Scheme != "https" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: u.ServerName}
	if cfg.ServerName == "" {
		cfg.ServerName = base.Hostname()
	}
	// PVE backends speak HTTP/1.1 only; never offer h2.
	cfg.NextProtos = []string{"http/1.1"}
	switch {
	case u.Fingerprint != "":
		pin, err := parseFingerprint(u.Fingerprint)
		if err != nil {
			return nil, err
		}
		cfg.InsecureSkipVerify = true // replaced by the pin check below
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("tls: backend sent no certificate")
			}
			got := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if !bytes.Equal(got[:], pin) {
				return fmt.Errorf("tls: backend certificate fingerprint %s does not match the pinned one", formatFingerprint(got[:]))
			}
			return nil
		}
	case u.Insecure:
		cfg.InsecureSkipVerify = true
	}
	if u.CAFile != "" {
		pem, err := os.ReadFile(u.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificates", u.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

func parseFingerprint(s string) ([]byte, error) {
	h := strings.ToLower(strings.NewReplacer(":", "", " ", "").Replace(strings.TrimSpace(s)))
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("fingerprint %q: want a SHA-256 fingerprint as 32 hex bytes (AA:BB:...)", s)
	}
	return b, nil
}

func formatFingerprint(b []byte) string {
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = strings.ToUpper(hex.EncodeToString([]byte{c}))
	}
	return strings.Join(parts, ":")
}

// roundTripper is the transport for a request with this method: the
// pooled one for methods that cannot change state, a connection per
// request for everything else (see writeTransport).
func (b *backend) roundTripper(method string) http.RoundTripper {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return b.rt
	}
	return b.writeRT
}

// available reports whether the composite cluster may pick this backend
// now: not failed by the active health check (unknown counts as healthy, so
// a freshly started data plane does not send everything to perl) and not
// ejected by outlier detection. healthy_panic_threshold 0 in envoy.yaml
// means an unavailable rust is skipped, never balanced onto.
func (b *backend) available(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.hcKnown && !b.hcHealthy {
		return false
	}
	return !now.Before(b.ejectedUntil)
}

// outcomeKind classifies an attempt for outlier detection.
type outcomeKind int

const (
	outcomeOK           outcomeKind = iota // any response below 500
	outcome5xx                             // 500, 501, 505...: the backend answered
	outcomeGatewayError                    // 502-504, connect failure, reset, timeout
)

// observe feeds one attempt into passive outlier detection, which is
// Envoy's outlier_detection with split_external_local_origin_errors false:
// local-origin failures count as gateway errors, consecutive_gateway_failure
// and consecutive_5xx eject when enforced, and an ejection lasts
// base_ejection_time × number of ejections, capped by max_ejection_time.
func (b *backend) observe(kind outcomeKind, now time.Time, errText string) (ejected bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch kind {
	case outcomeOK:
		b.consecGateway, b.consec5xx = 0, 0
		b.lastSuccess = now
		// Envoy lowers the ejection multiplier again while a host stays
		// healthy; one clean base_ejection_time after the last ejection
		// ended resets it here.
		if o := b.cfg.outlier; o != nil && b.ejections > 0 && now.After(b.ejectedUntil.Add(o.baseEjection)) {
			b.ejections = 0
		}
		return false
	case outcome5xx:
		b.consecGateway = 0
		b.consec5xx++
	case outcomeGatewayError:
		b.consecGateway++
		b.consec5xx++
	}
	b.lastFailure, b.lastError = now, errText
	o := b.cfg.outlier
	if o == nil || now.Before(b.ejectedUntil) {
		return false
	}
	if (o.consecutiveGatewayFailure > 0 && b.consecGateway >= o.consecutiveGatewayFailure) ||
		(o.consecutive5xx > 0 && b.consec5xx >= o.consecutive5xx) {
		b.ejections++
		d := o.baseEjection * time.Duration(b.ejections)
		if d > max(o.maxEjection, o.baseEjection) {
			d = max(o.maxEjection, o.baseEjection)
		}
		b.ejectedUntil = now.Add(d)
		b.consecGateway, b.consec5xx = 0, 0
		return true
	}
	return false
}

// healthLoop is Envoy's active HTTP health check of the cluster
// (health_checks in envoy.yaml): GET path every interval, healthy after
// healthy_threshold passes, unhealthy after unhealthy_threshold failures.
func (b *backend) healthLoop(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	hc := b.cfg.health
	interval := hc.interval
	if interval <= 0 {
		interval = 5 * time.Second
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := b.checkOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		b.recordCheck(err, time.Now())
		t.Reset(interval)
	}
}

func (b *backend) checkOnce(ctx context.Context) error {
	hc := b.cfg.health
	timeout := hc.timeout
	if timeout <= 0 {
		timeout = time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.base.String()+hc.path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "Envoy/HC")
	resp, err := b.rt.RoundTrip(req)
	if err != nil {
		return errors.New(transportErrorText(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	for _, r := range hc.expected {
		if resp.StatusCode >= r[0] && resp.StatusCode < r[1] {
			return nil
		}
	}
	return fmt.Errorf("health check: HTTP %d", resp.StatusCode)
}

func (b *backend) recordCheck(err error, now time.Time) {
	hc := b.cfg.health
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lastCheck = now
	if err == nil {
		b.lastCheckErr = ""
		b.hcFails = 0
		b.hcOKs++
		if !b.hcKnown || b.hcOKs >= hc.healthyThreshold {
			b.hcHealthy = true
		}
	} else {
		b.lastCheckErr = err.Error()
		b.hcOKs = 0
		b.hcFails++
		if b.hcFails >= hc.unhealthyThreshold {
			b.hcHealthy = false
		} else if !b.hcKnown {
			b.hcHealthy = true
		}
	}
	b.hcKnown = true
}

// health returns the UpstreamHealth snapshot of b.
func (b *backend) health(now time.Time) UpstreamHealth {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := UpstreamHealth{
		Name:                b.name,
		URL:                 b.base.String(),
		HealthChecked:       b.cfg.health != nil,
		LastCheck:           b.lastCheck,
		LastCheckError:      b.lastCheckErr,
		LastSuccess:         b.lastSuccess,
		LastFailure:         b.lastFailure,
		LastError:           b.lastError,
		ConsecutiveFailures: b.consec5xx,
	}
	if now.Before(b.ejectedUntil) {
		h.EjectedUntil = b.ejectedUntil
	}
	h.Available = !(b.hcKnown && !b.hcHealthy) && h.EjectedUntil.IsZero()
	return h
}

// transportErrorText describes a transport error without the request URL
// that *url.Error carries: a websocket URL's query holds a vncticket, and
// query strings are never logged.
func transportErrorText(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return err.Error()
}

// freshConnTransport sends each request through a transport of its own, so
// on a connection no other request used before: net/http's transport
// replays a request only after a *reused* connection failed, so a write
// (even one a client marked with Idempotency-Key) is never sent twice by
// it. It is not DisableKeepAlives: that sends `Connection: close`, and a
// Go or Perl server that answers early (413 for a body over PVE's limit)
// then closes without draining the rest of the body, so the client sees a
// reset instead of the answer. Without the header the server drains a
// short rest and the answer arrives, as it does through Envoy. The
// connection is closed once the answer's body is.
type freshConnTransport struct {
	template *http.Transport
}

func (f freshConnTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t := f.template.Clone()
	resp, err := t.RoundTrip(req)
	if err != nil {
		t.CloseIdleConnections()
		return nil, err
	}
	resp.Body = &closeTransportOnClose{ReadCloser: resp.Body, t: t}
	return resp, nil
}

// closeTransportOnClose closes a one-request transport's connection once
// the answer has been read.
type closeTransportOnClose struct {
	io.ReadCloser
	t    *http.Transport
	once sync.Once
}

func (c *closeTransportOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.once.Do(c.t.CloseIdleConnections)
	return err
}
