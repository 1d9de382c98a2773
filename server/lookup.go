package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/pve-migration/router/internal/config"
)

// PerlLookupOptions configures a PerlLookup. Zero values are the defaults.
type PerlLookupOptions struct {
	// Config gives the Perl API base URL and token per lookup, so a reload
	// that changes them applies at once. Required.
	Config func() *config.Snapshot
	// Timeout bounds one lookup (default 250ms). It must stay well below
	// Envoy's ext_proc message_timeout (500ms in envoy.yaml): a slower
	// lookup would make Envoy give up on the router and fail open.
	Timeout time.Duration
	// CacheSize is the most interface types kept (default 1024).
	CacheSize int
	// CacheTTL is how long a type is trusted (default 10s). Types rarely
	// change, and the Processor drops an entry after a write to it, so the
	// TTL only bounds changes made around the router (pvesh on the node).
	CacheTTL time.Duration
	// TLS verifies pveproxy's certificate.
	TLS TLSOptions
	// Client replaces the HTTP client built from TLS (tests, embedders).
	Client *http.Client
	// Logger receives lookup failures at debug level; nil means
	// slog.Default(). The token is never logged.
	Logger *slog.Logger
	// Now is the cache clock; nil means time.Now.
	Now func() time.Time
}

// PerlLookup is the TypeLookup that asks pveproxy:
// GET {perl_api_base_url}/api2/json/nodes/{node}/network/{iface}, with
// the configured API token. Answers are cached briefly, and concurrent
// lookups of one interface share a single request, so a burst of DELETEs
// costs pveproxy one call.
type PerlLookup struct {
	config  func() *config.Snapshot
	timeout time.Duration
	ttl     time.Duration
	size    int
	client  *http.Client
	logger  *slog.Logger
	now     func() time.Time

	mu       sync.Mutex
	cache    map[lookupKey]cacheEntry
	inflight map[lookupKey]*lookupCall
}

var (
	_ TypeLookup       = (*PerlLookup)(nil)
	_ CacheInvalidator = (*PerlLookup)(nil)
)

// lookupKey includes the base URL, so a config change to another API
// never serves the old one's answers.
type lookupKey struct{ base, node, iface string }

type cacheEntry struct {
	typ     string
	expires time.Time
}

type lookupCall struct {
	done chan struct{}
	typ  string
	err  error
}

// ErrInterfaceNotFound is returned when pveproxy says the interface does
// not exist (PVE answers 400 "interface does not exist", or 404).
var ErrInterfaceNotFound = errors.New("interface not found")

// NewPerlLookup returns a PerlLookup; it fails only when the TLS options
// cannot be loaded (a missing or empty CA file).
func NewPerlLookup(opts PerlLookupOptions) (*PerlLookup, error) {
	l := &PerlLookup{
		config: opts.Config, timeout: opts.Timeout, ttl: opts.CacheTTL, size: opts.CacheSize,
		client: opts.Client, logger: opts.Logger, now: opts.Now,
		cache: map[lookupKey]cacheEntry{}, inflight: map[lookupKey]*lookupCall{},
	}
	if l.config == nil {
		return nil, errors.New("PerlLookupOptions.Config is required")
	}
	if l.timeout <= 0 {
		l.timeout = 250 * time.Millisecond
	}
	if l.ttl <= 0 {
		l.ttl = 10 * time.Second
	}
	if l.size <= 0 {
		l.size = 1024
	}
	if l.logger == nil {
		l.logger = slog.Default()
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.client == nil {
		c, err := opts.TLS.httpClient()
		if err != nil {
			return nil, fmt.Errorf("perl lookup: %w", err)
		}
		l.client = c
	}
	return l, nil
}

// LookupType returns the interface's type ("eth", "bridge", ...), or ""
// and an error when pveproxy cannot tell in time. ctx cancels the wait of
// this caller only; the shared request runs to its own timeout so that
// other waiters still get the answer.
func (l *PerlLookup) LookupType(ctx context.Context, node, iface string) (string, error) {
	snap := l.config()
	if snap == nil || snap.PerlAPIBaseURL == "" {
		return "", errors.New("no Perl API base URL configured")
	}
	k := lookupKey{base: snap.PerlAPIBaseURL, node: node, iface: iface}

	l.mu.Lock()
	if e, ok := l.cache[k]; ok {
		if l.now().Before(e.expires) {
			l.mu.Unlock()
			return e.typ, nil
		}
		delete(l.cache, k)
	}
	c, ok := l.inflight[k]
	if !ok {
		c = &lookupCall{done: make(chan struct{})}
		l.inflight[k] = c
		go l.fetch(context.WithoutCancel(ctx), k, snap.PerlAPIToken, c)
	}
	l.mu.Unlock()

	select {
	case <-c.done:
		return c.typ, c.err
	case <-ctx.Done():
		return "", fmt.Errorf("waiting for interface type: %w", ctx.Err())
	}
}

// fetch performs one shared lookup and publishes its answer.
func (l *PerlLookup) fetch(ctx context.Context, k lookupKey, token config.Secret, c *lookupCall) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	c.typ, c.err = l.get(ctx, k, token)
	l.mu.Lock()
	delete(l.inflight, k)
	if c.err == nil {
		l.store(k, c.typ)
	}
	l.mu.Unlock()
	close(c.done)
	if c.err != nil {
		l.logger.LogAttrs(ctx, slog.LevelDebug, "interface type lookup failed",
			slog.String("node", k.node), slog.String("iface", k.iface), slog.String("error", c.err.Error()))
	}
}

// store adds an entry; l.mu is held. When full, expired entries go first,
// then arbitrary ones: a lost entry only costs one more lookup.
func (l *PerlLookup) store(k lookupKey, typ string) {
	if len(l.cache) >= l.size {
		now := l.now()
		for key, e := range l.cache {
			if !now.Before(e.expires) {
				delete(l.cache, key)
			}
		}
		for key := range l.cache {
			if len(l.cache) < l.size {
				break
			}
			delete(l.cache, key)
		}
	}
	l.cache[k] = cacheEntry{typ: typ, expires: l.now().Add(l.ttl)}
}

// Invalidate forgets the cached type of node's iface, or of all of node's
// interfaces when iface is "".
func (l *PerlLookup) Invalidate(node, iface string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := range l.cache {
		if k.node == node && (iface == "" || k.iface == iface) {
			delete(l.cache, k)
		}
	}
}

// maxLookupBody bounds what is read of pveproxy's answer: one interface's
// object is a few hundred bytes.
const maxLookupBody = 64 << 10

func (l *PerlLookup) get(ctx context.Context, k lookupKey, token config.Secret) (string, error) {
	u := apiURL(k.base, "/api2/json/nodes/"+url.PathEscape(k.node)+"/network/"+url.PathEscape(k.iface))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if token.IsSet() {
		req.Header.Set("Authorization", "PVEAPIToken="+token.Reveal())
	}
	resp, err := l.client.Do(req)
	if err != nil {
		// *url.Error names the URL (never the token, which is a header).
		return "", fmt.Errorf("GET interface: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxLookupBody))
	if err != nil {
		return "", fmt.Errorf("read answer: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound,
		resp.StatusCode == http.StatusBadRequest && strings.Contains(string(body), "does not exist"):
		return "", ErrInterfaceNotFound
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("perl API answered %d", resp.StatusCode)
	}
	var env struct {
		Data *struct {
			Type string `json:"type"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return "", fmt.Errorf("decode answer: %w", err)
	}
	if env.Data == nil || env.Data.Type == "" {
		return "", errors.New("answer has no interface type")
	}
	return env.Data.Type, nil
}
