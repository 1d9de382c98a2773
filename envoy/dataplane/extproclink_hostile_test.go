package dataplane_test

// The ext_proc link between the data plane and a separate decision
// service (--ext-proc): over a unix socket (envoy-pve-host.yaml's choice
// on one host) and over TLS (across hosts). A link that cannot be
// established, such as plaintext against a TLS server, must fail open to
// perl, never fail the request.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/pve-migration/router/envoy"
	"github.com/pve-migration/router/envoy/dataplane"
	"github.com/pve-migration/router/examples/pvedemo"
	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/server"
)

func TestExtProcLink(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	state := t.TempDir()
	backend := func(f pvedemo.Flavor) string {
		s, err := pvedemo.New(pvedemo.Options{Flavor: f, StateDir: state, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = s.Serve(ctx, ln) }()
		return "http://" + ln.Addr().String()
	}
	perlURL, rustURL := backend(pvedemo.FlavorPerl), backend(pvedemo.FlavorRust)
	snap, err := config.Parse("link.conf", []byte(fmt.Sprintf("phase = \"rust-read-only\"\nperl_api_base_url = %q\nlog_migration_decisions = false\n", perlURL)), nil)
	if err != nil {
		t.Fatal(err)
	}
	proc := server.NewProcessor(server.Options{Config: func() *config.Snapshot { return snap }, Logger: quiet})
	serve := func(addr string, opts ...grpc.ServerOption) string {
		ln, err := server.Listen(addr)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = server.Serve(ctx, server.ServeConfig{Listener: ln, Processor: proc, ServerOptions: opts, ShutdownTimeout: time.Second, Logger: quiet})
		}()
		if ln.Addr().Network() == "unix" {
			return "unix:" + ln.Addr().String()
		}
		return ln.Addr().String()
	}
	b, err := envoy.LoadBootstrap(envoy.DemoConfig())
	if err != nil {
		t.Fatal(err)
	}
	eps, err := envoy.ExtProc(b)
	if err != nil {
		t.Fatal(err)
	}
	eps.MessageTimeout = 10 * time.Second
	servedBy := func(t *testing.T, target string, opts ...grpc.DialOption) string {
		t.Helper()
		client, closeFn, err := dataplane.DialExtProc(target, opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = closeFn() }()
		p, err := dataplane.New(dataplane.Options{Perl: dataplane.Upstream{URL: perlURL}, Rust: dataplane.Upstream{URL: rustURL},
			ExtProc: client, Bootstrap: b, ExtProcSettings: &eps, Logger: quiet, DisableHealthChecks: true})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		pctx, pcancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = p.Serve(pctx, dataplane.ServeOptions{Listener: ln, ShutdownTimeout: time.Second})
		}()
		defer func() { pcancel(); <-done }()
		c := &http.Client{Timeout: 20 * time.Second}
		defer c.CloseIdleConnections()
		resp, err := c.Get("http://" + ln.Addr().String() + "/api2/json/nodes/pve1/network")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		return resp.Header.Get("X-Pve-Served-By")
	}

	t.Run("unix socket", func(t *testing.T) {
		target := serve("unix:" + filepath.Join(t.TempDir(), "extproc.sock"))
		if got := servedBy(t, target); got != "rust" {
			t.Fatalf("over %s: served by %s, want rust", target, got)
		}
	})

	pool, cert := linkPKI(t)
	tlsAddr := serve("127.0.0.1:0", grpc.Creds(credentials.NewServerTLSFromCert(&cert)))
	t.Run("TLS", func(t *testing.T) {
		creds := credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12})
		if got := servedBy(t, tlsAddr, grpc.WithTransportCredentials(creds)); got != "rust" {
			t.Fatalf("over TLS: served by %s, want rust", got)
		}
	})
	t.Run("plaintext against TLS fails open", func(t *testing.T) {
		if got := servedBy(t, tlsAddr); got != "perl" {
			t.Fatalf("served by %s, want perl (fail open)", got)
		}
	})
}

func linkPKI(t *testing.T) (*x509.CertPool, tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return pool, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
