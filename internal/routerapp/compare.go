package routerapp

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/pve-migration/router/internal/pveschema"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
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
func newShadow(f *flags, store *config.Store, tel *telemetry.Telemetry, tlsOpts server.TLSOptions, schema *pveschema.Conformance, logger *slog.Logger) (*shadow.Worker, error) {
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
		// GETs about another node are that node's router's to compare.
		Node: f.node,
		// Both answers of every job are checked against PVE's schema.
		Check: func(template, method, backend string, status int, data []byte) {
			schema.CheckJob(template, method, pveschema.Answer{Backend: backend, Status: status, Body: data})
		},
		Tracer: tel.TracerProvider().Tracer("github.com/pve-migration/router/internal/shadow"),
		Logger: logger,
	})
	if rust == "" && store.Current().Compare.Enabled {
		logger.Warn("[compare] is enabled but no rust URL is known: nothing is compared (set --compare-rust-url or --rust-upstream)")
	}
	if err := tel.Register(w.Collector()); err != nil {
		return nil, fmt.Errorf("compare metrics: %w", err)
	}
	return w, nil
}

// newSchema builds the schema conformance check of the compare jobs and
// keeps it in step with `[compare] schema` and `api_schema`: the schema is
// loaded and compiled at start and again only when those change, never per
// answer. A schema file that cannot be read is logged (and shown on
// /compare); the embedded PVE 9.1 schema serves meanwhile. Call it before
// the store is shared (it chains the store's reload hook).
func newSchema(store *config.Store, tel *telemetry.Telemetry, logger *slog.Logger) *pveschema.Conformance {
	conf := pveschema.NewConformance(func(backend, template string, rule pveschema.Rule, n int) {
		tel.RecordSchemaViolations(backend, template, string(rule), int64(n))
	})
	type key struct {
		on   bool
		path string
	}
	var mu sync.Mutex
	var last *key
	apply := func(snap *config.Snapshot) {
		if snap == nil {
			return
		}
		k := key{on: snap.Compare.Enabled && snap.Compare.Schema, path: snap.Compare.APISchema}
		if k.path == config.DefaultAPISchema {
			// The default file exists only on a PVE node: elsewhere the
			// embedded schema serves without an error.
			k.path = ""
		}
		mu.Lock()
		defer mu.Unlock()
		if last != nil && *last == k {
			return
		}
		last = &k
		if err := conf.Configure(k.on, k.path); err != nil {
			logger.Error("schema conformance: the API schema file cannot be used; the embedded PVE 9.1 schema serves", "api_schema", k.path, "err", err)
		}
	}
	apply(store.Current())
	prev := store.OnReload
	store.OnReload = func(result string, snap *config.Snapshot, err error) {
		if prev != nil {
			prev(result, snap, err)
		}
		if result == config.ResultOK {
			apply(snap)
		}
	}
	return conf
}

// compareWindow is the gate's view of the comparison: compared and
// mismatched reads of a category over the gate's window.
type compareWindow struct {
	report *compare.Report
	config func() *config.Snapshot
}

// d is the span the gate asks for (shorter than its window right after a
// gate reset); 0 means the gate's window from the config.
func (c compareWindow) Window(category string, now time.Time, d time.Duration) (compared, mismatched int) {
	if d <= 0 {
		d = 5 * time.Minute
		if snap := c.config(); snap != nil && snap.Gate.Window > 0 {
			d = snap.Gate.Window
		}
	}
	return c.report.Window(category, now, d)
}

// compareServices registers pvemigration.v1.CompareService.
func compareServices(w *shadow.Worker, schema *pveschema.Conformance, store *config.Store) []func(*grpc.Server) {
	svc := server.NewCompareService(w.Report(), schema, store.Current)
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
