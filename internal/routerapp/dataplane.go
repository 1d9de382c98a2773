package routerapp

import (
	"context"
	"fmt"
	"log/slog"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/pve-migration/router/envoy/dataplane"
	"github.com/pve-migration/router/server"
)

// newDataPlane builds the embedded data plane. It talks to the decision
// service through the real ext_proc protocol: in process over an in-memory
// gRPC connection by default, or to --ext-proc, so that "the decision
// service is down" behaves exactly as it does behind Envoy.
func newDataPlane(f *flags, proc *server.Processor, grpcOpts []grpc.ServerOption, logger *slog.Logger) (run func(context.Context) error, metrics func() dataplane.Metrics, err error) {
	var client extprocv3.ExternalProcessorClient
	var closeExt func()
	if f.extProc == "" {
		c, stop, err := dataplane.InProcessExtProc(proc, grpcOpts...)
		if err != nil {
			return nil, nil, fmt.Errorf("in-process ext_proc: %w", err)
		}
		client, closeExt = c, stop
	} else {
		var opts []grpc.DialOption
		if f.extProcCA != "" {
			// TLS to a router on another host (--grpc-tls-cert there); on
			// one host a unix socket needs no certificate.
			creds, err := credentials.NewClientTLSFromFile(f.extProcCA, f.extProcSNI)
			if err != nil {
				return nil, nil, fmt.Errorf("--ext-proc-ca %s: %w", f.extProcCA, err)
			}
			opts = append(opts, grpc.WithTransportCredentials(creds))
		}
		c, closeConn, err := dataplane.DialExtProc(f.extProc, opts...)
		if err != nil {
			return nil, nil, fmt.Errorf("--ext-proc %s: %w", f.extProc, err)
		}
		client, closeExt = c, func() { _ = closeConn() }
	}
	p, err := dataplane.New(dataplane.Options{
		Perl:    dataplane.Upstream{URL: f.perlUpstream, CAFile: f.upstreamCA, Fingerprint: f.perlPin, Insecure: f.insecure},
		Rust:    dataplane.Upstream{URL: f.rustUpstream, CAFile: f.upstreamCA, Fingerprint: f.rustPin, Insecure: f.insecure},
		ExtProc: client,
		Logger:  logger,
	})
	if err != nil {
		closeExt()
		return nil, nil, fmt.Errorf("data plane: %w", err)
	}
	return func(ctx context.Context) error {
		defer closeExt()
		defer p.Close()
		return p.Serve(ctx, dataplane.ServeOptions{Addr: f.proxyListen, TLSCert: f.tlsCert, TLSKey: f.tlsKey, SelfSigned: f.selfSigned})
	}, p.Metrics, nil
}
