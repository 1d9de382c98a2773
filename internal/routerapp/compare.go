package routerapp

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/pve-migration/router/internal/compare"
	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/internal/shadow"
	"github.com/pve-migration/router/internal/telemetry"
	pb "github.com/pve-migration/router/proto/pvemigration/v1"
	"github.com/pve-migration/router/server"
)

// compareURLs are the backends the shadow comparison asks: the flags, else
// the data plane's upstreams. Perl may also come from the config's
// perl_api_base_url at job time (an empty string here).
func compareURLs(f *flags) (perl, rust string) {
	perl, rust = f.comparePerlURL, f.compareRustURL
	if perl == "" {
		perl = f.perlUpstream
	}
	if rust == "" {
		rust = f.rustUpstream
	}
	return perl, rust
}

// checkCompareURLs validates the --compare-*-url flags.
func checkCompareURLs(f *flags) error {
	for _, c := range []struct{ name, v string }{{"--compare-perl-url", f.comparePerlURL}, {"--compare-rust-url", f.compareRustURL}} {
		if c.v == "" {
			continue
		}
		u, err := url.Parse(c.v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			return fmt.Errorf("%s %q: want an http or https base URL without credentials", c.name, u.Redacted())
		}
	}
	return nil
}

// newShadow builds the shadow comparison worker; Run starts it.
func newShadow(f *flags, store *config.Store, tel *telemetry.Telemetry, tlsOpts server.TLSOptions, logger *slog.Logger) (*shadow.Worker, error) {
	client, err := tlsOpts.HTTPClient()
	if err != nil {
		return nil, fmt.Errorf("compare client: %w", err)
	}
	perlClient, err := pinnedClient(client, f.perlPin)
	if err != nil {
		return nil, fmt.Errorf("--perl-fingerprint: %w", err)
	}
	rustClient, err := pinnedClient(client, f.rustPin)
	if err != nil {
		return nil, fmt.Errorf("--rust-fingerprint: %w", err)
	}
	perl, rust := compareURLs(f)
	w := shadow.New(shadow.Options{
		Config:     store.Current,
		PerlURL:    perl,
		RustURL:    rust,
		Client:     client,
		PerlClient: perlClient,
		RustClient: rustClient,
		Report:     compare.NewReport(time.Now()),
		Tracer:     tel.TracerProvider().Tracer("github.com/pve-migration/router/internal/shadow"),
		Logger:     logger,
	})
	if rust == "" && store.Current().Compare.Enabled {
		logger.Warn("[compare] is enabled but no rust URL is known: nothing is compared (set --compare-rust-url or --rust-upstream)")
	}
	if err := tel.Register(w.Collector()); err != nil {
		return nil, fmt.Errorf("compare metrics: %w", err)
	}
	return w, nil
}

// compareServices registers pvemigration.v1.CompareService.
func compareServices(w *shadow.Worker, store *config.Store) []func(*grpc.Server) {
	svc := server.NewCompareService(w.Report(), store.Current)
	return []func(*grpc.Server){func(s *grpc.Server) { pb.RegisterCompareServiceServer(s, svc) }}
}

// pinnedClient is base verifying the server's leaf certificate by its
// SHA-256 fingerprint instead of a CA, as the data plane does with
// --perl-fingerprint and --rust-fingerprint; "" returns base.
func pinnedClient(base *http.Client, fingerprint string) (*http.Client, error) {
	if fingerprint == "" {
		return base, nil
	}
	pin, err := hex.DecodeString(strings.ToLower(strings.NewReplacer(":", "", " ", "").Replace(strings.TrimSpace(fingerprint))))
	if err != nil || len(pin) != sha256.Size {
		return nil, fmt.Errorf("fingerprint %q: want a SHA-256 fingerprint as 32 hex bytes (AA:BB:...)", fingerprint)
	}
	tr, ok := base.Transport.(*http.Transport)
	if !ok {
		return nil, errors.New("the API client has no *http.Transport to pin")
	}
	tr = tr.Clone()
	cfg := tr.TLSClientConfig.Clone()
	if cfg == nil {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	cfg.InsecureSkipVerify = true //nolint:gosec // replaced by the pin check below
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("tls: backend sent no certificate")
		}
		if got := sha256.Sum256(cs.PeerCertificates[0].Raw); !bytes.Equal(got[:], pin) {
			return errors.New("tls: backend certificate does not match the pinned fingerprint")
		}
		return nil
	}
	tr.TLSClientConfig = cfg
	c := *base
	c.Transport = tr
	return &c, nil
}
