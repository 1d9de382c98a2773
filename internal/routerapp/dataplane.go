package routerapp

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/pve-migration/router/envoy/dataplane"
	"github.com/pve-migration/router/internal/extproclocal"
	"github.com/pve-migration/router/server"
)

// newDataPlane builds the embedded data plane. It talks to the decision
// service through the ext_proc protocol: by default to proc in the same
// process over extproclocal (the same messages in the same order as over
// gRPC, without encoding or a socket: the exchange was the largest cost
// of every proxied request), or over gRPC to --ext-proc, so that "the
// decision service is down" behaves exactly as it does behind Envoy.
// streamCtx gives in-process streams what the gRPC stats handler gives
// gRPC ones (the trace context of the metadata).
func newDataPlane(f *flags, proc *server.Processor, streamCtx func(context.Context) context.Context, logger *slog.Logger) (run func(context.Context) error, metrics func() dataplane.Metrics, err error) {
	var client extprocv3.ExternalProcessorClient
	var closeExt func()
	if f.extProc == "" {
		link := extproclocal.New(proc, extproclocal.Options{ServerContext: streamCtx, Logger: logger})
		client, closeExt = link, func() {
			// Serve has returned, so no request is left; wait only for
			// the streams still closing (remote_close_timeout).
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := link.Close(ctx); err != nil {
				logger.Warn("in-process ext_proc streams still open at shutdown", "err", err)
			}
		}
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
