package routerapp

// The migration-router program with --grpc-tls-cert/--grpc-tls-key: the
// gRPC port (ext_proc, health, control API) speaks TLS only, while the
// embedded data plane's in-process link keeps working; a data plane that
// reaches the TLS port without TLS fails open to perl.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/pve-migration/router/examples/pvedemo"
	"github.com/pve-migration/router/internal/logsink"
)

// writeTLSPair writes a self-signed certificate for localhost/127.0.0.1
// and its key as PEM files and returns their paths and a pool trusting it.
func writeTLSPair(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "migration-router"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "grpc.pem"), filepath.Join(dir, "grpc.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return certFile, keyFile, pool
}

// runRouter starts routerapp.Run with args and stops it at cleanup.
func runRouter(t *testing.T, args ...string) {
	t.Helper()
	// The demo's node is pve1; the kill switch stays in the test's files.
	args = append(args, "--node", "pve1", "--kill-switch", filepath.Join(t.TempDir(), "perl-only"))
	ctx, cancel := context.WithCancel(context.Background())
	var stderr logsink.Buffer
	code := make(chan int, 1)
	go func() { code <- Run(ctx, args, io.Discard, &stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case c := <-code:
			if c != ExitOK {
				t.Errorf("Run returned %d; log:\n%s", c, stderr.String())
			}
		case <-time.After(20 * time.Second):
			t.Error("Run did not stop after its context ended")
		}
	})
}

func servedByVia(t *testing.T, proxy string) string {
	t.Helper()
	c := &http.Client{Timeout: 20 * time.Second}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://" + proxy + "/api2/json/nodes/pve1/network")
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

func TestGRPCTLSFlags(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	perl, rust := demoBackend(t, pvedemo.FlavorPerl, state), demoBackend(t, pvedemo.FlavorRust, state)
	conf := filepath.Join(dir, "network-migration.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("phase = \"rust-read-only\"\nperl_api_base_url = %q\n", perl)), 0o644); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, pool := writeTLSPair(t, dir)
	grpcAddr, admin, proxy := freeAddr(t), freeAddr(t), freeAddr(t)
	runRouter(t, "--config", conf, "--grpc-listen", grpcAddr, "--admin-listen", admin,
		"--grpc-tls-cert", certFile, "--grpc-tls-key", keyFile,
		"--proxy-listen", proxy, "--perl-upstream", perl, "--rust-upstream", rust)

	health := func(creds credentials.TransportCredentials) (healthpb.HealthCheckResponse_ServingStatus, error) {
		conn, err := grpc.NewClient("passthrough:///"+grpcAddr, grpc.WithTransportCredentials(creds))
		if err != nil {
			return 0, err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return r.GetStatus(), err
	}
	good := credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12})
	waitFor(t, "gRPC health SERVING over TLS", func() bool {
		st, err := health(good)
		return err == nil && st == healthpb.HealthCheckResponse_SERVING
	})
	if _, err := health(insecure.NewCredentials()); err == nil {
		t.Fatal("a plaintext client reached the TLS gRPC port")
	}
	waitFor(t, "data plane listening", func() bool {
		c, err := net.Dial("tcp", proxy)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	// The in-process link does not go through the TLS port.
	if got := servedByVia(t, proxy); got != "rust" {
		t.Fatalf("embedded data plane with --grpc-tls-cert: served by %q, want rust", got)
	}

	// A second router whose data plane asks the first one over --ext-proc
	// without --ext-proc-ca: it cannot complete the TLS handshake, so the
	// request must fail open to perl, not fail.
	proxy2 := freeAddr(t)
	runRouter(t, "--config", conf, "--grpc-listen", "unix:"+filepath.Join(dir, "second.sock"), "--admin-listen", "",
		"--ext-proc", grpcAddr, "--proxy-listen", proxy2, "--perl-upstream", perl, "--rust-upstream", rust)
	waitFor(t, "second data plane listening", func() bool {
		c, err := net.Dial("tcp", proxy2)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if got := servedByVia(t, proxy2); got != "perl" {
		t.Fatalf("plaintext --ext-proc against a TLS router: served by %q, want perl (fail open)", got)
	}

	// A third one with the CA: the TLS link works and rust serves again.
	proxy3 := freeAddr(t)
	runRouter(t, "--config", conf, "--grpc-listen", "unix:"+filepath.Join(dir, "third.sock"), "--admin-listen", "",
		"--ext-proc", grpcAddr, "--ext-proc-ca", certFile, "--ext-proc-server-name", "localhost",
		"--proxy-listen", proxy3, "--perl-upstream", perl, "--rust-upstream", rust)
	waitFor(t, "third data plane serving over the TLS link", func() bool {
		c, err := net.Dial("tcp", proxy3)
		if err != nil {
			return false
		}
		c.Close()
		return servedByVia(t, proxy3) == "rust"
	})
}
