package dataplane

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
)

// Listener defaults. PVE itself accepts at most 8 KiB of request headers;
// twice that leaves room for what the data plane adds (x-forwarded-*,
// x-request-id) without letting a client park large header blocks.
const (
	DefaultReadHeaderTimeout = 10 * time.Second // envoy.yaml request_headers_timeout
	DefaultBodyReadTimeout   = 60 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxHeaderBytes    = 16 << 10
	DefaultShutdownTimeout   = 10 * time.Second
)

// ServeOptions configure Serve. Only Addr (or Listener) is required; the
// timeouts default to values that bound slow clients (slowloris) without
// cutting off ISO uploads or long-polling task logs.
type ServeOptions struct {
	// Addr is the TCP address to listen on, e.g. "127.0.0.1:8006".
	Addr string
	// Listener, if non-nil, is used instead of listening on Addr (tests,
	// socket activation). Serve closes it.
	Listener net.Listener

	// TLSCert and TLSKey are PEM files for HTTPS (on PVE:
	// /etc/pve/local/pveproxy-ssl.pem or pve-ssl.pem and its key). Without
	// them, and without SelfSigned, Serve speaks plain HTTP.
	TLSCert, TLSKey string
	// SelfSigned serves HTTPS with a certificate made at start-up by
	// SelfSignedCert for SelfSignedHosts (default localhost, 127.0.0.1,
	// ::1): for `make run` and demos, where clients use curl -k.
	SelfSigned      bool
	SelfSignedHosts []string

	// ReadHeaderTimeout bounds reading a request's headers; 0 means
	// DefaultReadHeaderTimeout.
	ReadHeaderTimeout time.Duration
	// BodyReadTimeout is the longest a request body may stall (no byte
	// arriving); 0 means DefaultBodyReadTimeout. It is a stall limit, not
	// a total, so a slow multi-GiB upload is fine and a trickling client
	// is not; a total ReadTimeout would cut off ISO uploads.
	BodyReadTimeout time.Duration
	// IdleTimeout bounds an idle keep-alive connection; 0 means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request line and headers; 0 means
	// DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// ShutdownTimeout is how long in-flight requests may take to finish
	// once ctx is done; 0 means DefaultShutdownTimeout. Websocket
	// connections are closed when it ends.
	ShutdownTimeout time.Duration

	// Ready, if non-nil, is called with the listening address once Serve
	// accepts connections.
	Ready func(addr net.Addr)
}

// Serve runs p as an HTTP(S) server until ctx is done, then shuts down
// gracefully: it stops accepting, lets requests in flight finish for up to
// ShutdownTimeout, closes websocket connections, and returns nil. It
// returns an error if it cannot listen or load the certificate. It speaks
// HTTP/1.1 only, like pveproxy. Serve does not Close p.
func (p *Proxy) Serve(ctx context.Context, o ServeOptions) error {
	tlsCfg, err := o.tlsConfig()
	if err != nil {
		return err
	}
	ln := o.Listener
	if ln == nil {
		if o.Addr == "" {
			return errors.New("dataplane: ServeOptions.Addr is required")
		}
		if ln, err = net.Listen("tcp", o.Addr); err != nil {
			return fmt.Errorf("dataplane: %w", err)
		}
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	// Envoy's 400 for Content-Length with Transfer-Encoding (framing.go).
	ln = framingListener{ln}
	bodyTimeout := orDuration(o.BodyReadTimeout, DefaultBodyReadTimeout)
	maxHeader := o.MaxHeaderBytes
	if maxHeader <= 0 {
		maxHeader = DefaultMaxHeaderBytes
	}
	srv := &http.Server{
		ConnContext: connContext,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.TLS == nil {
				r.TLS = tlsState(r.Context())
			}
			// net/http's own limit has slack that differs between Go
			// releases; count the request head ourselves so the limit is
			// the same everywhere, and answer 431 like Envoy.
			if requestHeadBytes(r) > maxHeader {
				w.Header().Set("Connection", "close")
				http.Error(w, "request header fields too large", http.StatusRequestHeaderFieldsTooLarge)
				return
			}
			if r.Body == nil || r.Body == http.NoBody || bodyTimeout <= 0 {
				p.ServeHTTP(w, r)
				return
			}
			sb := &stallBody{ReadCloser: r.Body, rc: http.NewResponseController(w), d: bodyTimeout}
			r.Body = sb
			tw := &trackingWriter{ResponseWriter: w}
			p.ServeHTTP(tw, r)
			if sb.failed.Load() {
				// The client stopped sending its body: answer 408 like
				// Envoy's stream timeouts if nothing was sent yet, and
				// close the connection either way.
				if !tw.wrote {
					w.Header().Set("Connection", "close")
					w.WriteHeader(http.StatusRequestTimeout)
					return
				}
				panic(http.ErrAbortHandler)
			}
		}),
		ReadHeaderTimeout: orDuration(o.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		IdleTimeout:       orDuration(o.IdleTimeout, DefaultIdleTimeout),
		MaxHeaderBytes:    o.MaxHeaderBytes,
		// TLS handshake failures and client resets are routine at the
		// edge; they are debug noise, not errors.
		ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	if srv.MaxHeaderBytes <= 0 {
		srv.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	if o.Ready != nil {
		o.Ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("dataplane: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), orDuration(o.ShutdownTimeout, DefaultShutdownTimeout))
	defer cancel()
	err = srv.Shutdown(sctx)
	p.closeHijacked()
	if err != nil {
		_ = srv.Close()
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("dataplane: %w", serr)
	}
	return nil
}

func orDuration(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

func (o ServeOptions) tlsConfig() (*tls.Config, error) {
	var cert tls.Certificate
	var err error
	switch {
	case o.TLSCert != "" || o.TLSKey != "":
		if o.TLSCert == "" || o.TLSKey == "" {
			return nil, errors.New("dataplane: TLSCert and TLSKey go together")
		}
		if cert, err = tls.LoadX509KeyPair(o.TLSCert, o.TLSKey); err != nil {
			return nil, fmt.Errorf("dataplane: TLS certificate: %w", err)
		}
	case o.SelfSigned:
		if cert, err = SelfSignedCert(o.SelfSignedHosts...); err != nil {
			return nil, err
		}
	default:
		return nil, nil
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"http/1.1"},
	}, nil
}

// stallBody bounds how long a request body read may wait, by moving the
// connection's read deadline forward on every read. The deadline is
// cleared once the body has been read to its end, so that it cannot cut
// off a long response; after a failed read it stays, so the server's
// drain of an unread body cannot hang on a stalled client either.
type stallBody struct {
	io.ReadCloser
	rc     *http.ResponseController
	d      time.Duration
	once   sync.Once
	failed atomic.Bool
}

func (b *stallBody) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(b.d))
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF:
		b.once.Do(func() { _ = b.rc.SetReadDeadline(time.Time{}) })
	case err != nil:
		b.failed.Store(true)
	}
	return n, err
}

// trackingWriter notes whether a response was started, so that Serve knows
// whether it can still answer 408. Unwrap keeps http.ResponseController
// (flush, hijack, deadlines) working through it.
type trackingWriter struct {
	http.ResponseWriter
	wrote bool
}

func (w *trackingWriter) WriteHeader(code int) {
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *trackingWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *trackingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// SelfSignedCert makes a fresh ECDSA P-256 certificate for hosts (names or
// IP addresses; default localhost, 127.0.0.1 and ::1), valid for one year.
// It is for demos and `make run`: clients must skip verification (curl -k)
// or pin its fingerprint, as they would with a new PVE node.
func SelfSignedCert(hosts ...string) (tls.Certificate, error) {
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("dataplane: self-signed key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("dataplane: self-signed serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hosts[0], Organization: []string{"pve-migration-router (self-signed)"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("dataplane: self-signed certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("dataplane: self-signed certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// InProcessExtProc serves srv (e.g. server.NewProcessor) on a private gRPC
// server over an in-memory connection and returns a client for
// Options.ExtProc. Every request still goes through real gRPC framing and
// the real ext_proc protocol, exactly as Envoy would speak it; only the
// socket is missing. stop shuts the server down.
func InProcessExtProc(srv extprocv3.ExternalProcessorServer, opts ...grpc.ServerOption) (client extprocv3.ExternalProcessorClient, stop func(), err error) {
	ln := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(opts...)
	extprocv3.RegisterExternalProcessorServer(gs, srv)
	go func() { _ = gs.Serve(ln) }()
	conn, err := grpc.NewClient("passthrough:///in-process-ext-proc",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		gs.Stop()
		return nil, nil, fmt.Errorf("dataplane: in-process ext_proc: %w", err)
	}
	return extprocv3.NewExternalProcessorClient(conn), func() {
		_ = conn.Close()
		gs.Stop()
	}, nil
}

// DialExtProc connects to an ext_proc service at target, the way Envoy's
// migration_router cluster does: plaintext HTTP/2 to "host:port" or
// "unix:/path", 250 ms connect timeout, so that a router that is down makes
// requests fail open at once rather than after message_timeout. opts are
// added to (and may override) these. close releases the connection.
func DialExtProc(target string, opts ...grpc.DialOption) (client extprocv3.ExternalProcessorClient, close func() error, err error) {
	base := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 250 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
			MinConnectTimeout: 250 * time.Millisecond,
		}),
	}
	conn, err := grpc.NewClient(target, append(base, opts...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("dataplane: ext_proc %s: %w", target, err)
	}
	return extprocv3.NewExternalProcessorClient(conn), conn.Close, nil
}

// requestHeadBytes is the size of the request line and header block as the
// client sent them (CRLFs and ": " included).
func requestHeadBytes(r *http.Request) int {
	n := len(r.Method) + 1 + len(r.RequestURI) + 1 + len(r.Proto) + 2
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	if r.Host != "" && r.Header.Get("Host") == "" {
		n += len("Host: ") + len(r.Host) + 2
	}
	return n + 2
}
