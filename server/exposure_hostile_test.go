package server_test

// What the gRPC port exposes, and how the ext_proc link is protected:
// only the three services, a read-only control API, and TLS that refuses
// plaintext and unknown certificates.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/pve-migration/router/proto/pvemigration/v1"
	"github.com/pve-migration/router/server"
)

// TestGRPCExposesOnlyKnownServices: the router's gRPC server carries
// ext_proc, grpc health and the control API, nothing else (no reflection,
// no channelz, no admin service that could change state).
func TestGRPCExposesOnlyKnownServices(t *testing.T) {
	proc := server.NewProcessor(server.Options{})
	srv := server.NewGRPCServer(proc, pb.UnimplementedControlServiceServer{}, health.NewServer())
	var got []string
	for name, info := range srv.GetServiceInfo() {
		for _, m := range info.Methods {
			got = append(got, name+"/"+m.Name)
		}
	}
	slices.Sort(got)
	want := []string{
		"envoy.service.ext_proc.v3.ExternalProcessor/Process",
		"grpc.health.v1.Health/Check",
		"grpc.health.v1.Health/List",
		"grpc.health.v1.Health/Watch",
		"pvemigration.v1.ControlService/Explain",
		"pvemigration.v1.ControlService/GetStatus",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("gRPC methods:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestControlAPIIsReadOnly: every RPC of pvemigration.v1 reads. A write
// RPC (set phase, toggle fallback, ...) would let anyone who reaches the
// gRPC port change routing without touching the config file, which is
// the only, audited, cluster-wide way to change it.
func TestControlAPIIsReadOnly(t *testing.T) {
	readVerbs := []string{"Get", "List", "Explain", "Watch", "Describe"}
	services := pb.File_proto_pvemigration_v1_control_proto.Services()
	if services.Len() == 0 {
		t.Fatal("no services in control.proto")
	}
	for i := 0; i < services.Len(); i++ {
		sd := services.Get(i)
		for j := 0; j < sd.Methods().Len(); j++ {
			m := sd.Methods().Get(j)
			if !slices.ContainsFunc(readVerbs, func(v string) bool { return strings.HasPrefix(string(m.Name()), v) }) {
				t.Errorf("%s/%s: not a read verb (%v): the control API must stay read-only", sd.FullName(), m.Name(), readVerbs)
			}
			if m.IsStreamingClient() {
				t.Errorf("%s/%s: client streaming has no place in a read-only API", sd.FullName(), m.Name())
			}
			// Requests carry no field that looks like a change.
			fields := m.Input().Fields()
			for k := 0; k < fields.Len(); k++ {
				name := string(fields.Get(k).Name())
				for _, bad := range []string{"set", "new_", "update", "apply", "write"} {
					if strings.HasPrefix(name, bad) {
						t.Errorf("%s/%s request field %q looks like a write", sd.FullName(), m.Name(), name)
					}
				}
				if fields.Get(k).Kind() == protoreflect.BytesKind {
					t.Errorf("%s/%s request field %q carries raw bytes", sd.FullName(), m.Name(), name)
				}
			}
		}
	}
}

// testPKI is a CA and a server certificate for "localhost"/127.0.0.1.
type testPKI struct {
	pool *x509.CertPool
	cert tls.Certificate
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "migration-router"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return testPKI{pool: pool, cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
}

// TestGRPCOverTLS: with grpc.Creds (what routerapp's --grpc-tls-cert and
// --grpc-tls-key install) the ext_proc link is TLS: a client that trusts
// the CA is decided for, a plaintext client and a client with another CA
// get nothing, and health checks need TLS too.
func TestGRPCOverTLS(t *testing.T) {
	pki := newTestPKI(t)
	s := hsStart(t, grpc.Creds(credentials.NewServerTLSFromCert(&pki.cert)))

	good, err := grpc.NewClient("passthrough:///"+s.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pki.pool, ServerName: "localhost", MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	if got := hsDecide(t, good, "GET", "/api2/json/nodes/pve1/network"); got != "rust" {
		t.Fatalf("over TLS: %s", got)
	}

	other := newTestPKI(t)
	for name, creds := range map[string]credentials.TransportCredentials{
		"plaintext":  insecure.NewCredentials(),
		"unknown CA": credentials.NewTLS(&tls.Config{RootCAs: other.pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}),
		"wrong name": credentials.NewTLS(&tls.Config{RootCAs: pki.pool, ServerName: "pve-evil", MinVersion: tls.VersionTLS12}),
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := grpc.NewClient("passthrough:///"+s.addr, grpc.WithTransportCredentials(creds))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
				t.Fatal("health check succeeded without a trusted TLS link")
			} else {
				t.Logf("refused: %v", err)
			}
		})
	}
	if s.ended.Load() != 1 {
		t.Fatalf("%d Process streams ran; only the TLS client's one may", s.ended.Load())
	}
}
