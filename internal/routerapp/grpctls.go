package routerapp

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// grpcTLS returns the server option for a TLS ext_proc link, for Envoy
// reaching the router across hosts. On one host a unix socket is simpler
// and needs no certificate.
func grpcTLS(f *flags) ([]grpc.ServerOption, error) {
	if f.grpcTLSCert == "" {
		return nil, nil
	}
	creds, err := credentials.NewServerTLSFromFile(f.grpcTLSCert, f.grpcTLSKey)
	if err != nil {
		return nil, fmt.Errorf("--grpc-tls-cert %s: %w", f.grpcTLSCert, err)
	}
	return []grpc.ServerOption{grpc.Creds(creds)}, nil
}
