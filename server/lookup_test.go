package server_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/routing"
	"github.com/pve-migration/router/server"
	"github.com/pve-migration/router/server/extproctest"
)

const (
	testToken       = "root@pam!router=7c1e3b2a-5d4f-4e8a-9b6c-0123456789ab"
	testTokenSecret = "7c1e3b2a-5d4f-4e8a-9b6c-0123456789ab"
)

// fakePVE is a pveproxy stand-in for GET /api2/json/nodes/{node}/network/{iface}.
type fakePVE struct {
	srv   *httptest.Server
	hits  atomic.Int64
	mu    sync.Mutex
	auth  []string
	paths []string
	types map[string]string // iface -> type
	delay time.Duration
}

func newFakePVE(t *testing.T) *fakePVE {
	f := &fakePVE{types: map[string]string{"eth0": "eth", "eth0:1": "alias", "vmbr0": "bridge", "bond0": "bond", "a b": "eth"}}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		f.mu.Lock()
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		f.paths = append(f.paths, r.URL.EscapedPath())
		f.mu.Unlock()
		if r.Header.Get("Authorization") != "PVEAPIToken="+testToken {
			http.Error(w, "authentication failure", http.StatusUnauthorized)
			return
		}
		rest, ok := strings.CutPrefix(r.URL.Path, "/api2/json/nodes/pve1/network/")
		if !ok {
			http.Error(w, "Method not implemented", http.StatusNotImplemented)
			return
		}
		switch rest {
		case "slow":
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
			return
		case "garbage":
			_, _ = w.Write([]byte("<html>"))
			return
		}
		if f.delay > 0 {
			time.Sleep(f.delay)
		}
		typ, ok := f.types[rest]
		if !ok {
			w.Header().Set("Content-Type", "application/json;charset=UTF-8")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"errors":{"iface":"interface does not exist"},"message":"Parameter verification failed.\n","data":null}`))
			return
		}
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
		fmt.Fprintf(w, `{"data":{"type":%q,"method":"static","active":1,"autostart":1,"families":["inet"]}}`, typ)
	}))
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // expected TLS failures
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func lookupFor(t *testing.T, f *fakePVE, snap *config.Snapshot, logger *slog.Logger, mutate ...func(*server.PerlLookupOptions)) *server.PerlLookup {
	t.Helper()
	opts := server.PerlLookupOptions{
		Config:  func() *config.Snapshot { return snap },
		Timeout: time.Second, // generous: -race on shared cores is slow
		TLS:     server.TLSOptions{RootCAs: certPool(f.srv)},
		Logger:  logger,
	}
	for _, m := range mutate {
		m(&opts)
	}
	l, err := server.NewPerlLookup(opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func certPool(s *httptest.Server) *x509.CertPool {
	return s.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
}

// TestDeleteLookupOverWire: a DELETE's category comes from the type
// pveproxy reports, through the whole stack.
func TestDeleteLookupOverWire(t *testing.T) {
	f := newFakePVE(t)
	snap := snapshot(routing.RustBasicWrite, func(s *config.Snapshot) {
		s.PerlAPIBaseURL = f.srv.URL
		s.PerlAPIToken = config.Secret(testToken)
	})
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	lookup := lookupFor(t, f, snap, logger, func(o *server.PerlLookupOptions) { o.Timeout = 300 * time.Millisecond })
	// Envoy's message timeout is off here: this test is about answers, and
	// a loaded machine under -race must not turn them into fail-opens.
	h := newHarness(t, snap, harnessOpts{lookup: lookup, client: extproctest.Options{MessageTimeout: -1}})
	cases := []struct {
		iface, want, wantType string
		wantErr               bool
	}{
		{"eth0", "rust", "eth", false},
		{"vmbr0?type=eth", "perl", "bridge", false}, // a DELETE's query cannot claim a type
		{"eth0:1", "rust", "alias", false},
		{"vmbr0", "perl", "bridge", false},
		{"missing0", "perl", "", true},
		{"slow", "perl", "", true},
		{"garbage", "perl", "", true},
	}
	for _, c := range cases {
		t.Run(c.iface, func(t *testing.T) {
			id := "del-" + c.iface // unique per case
			start := time.Now()
			res := h.do(t, extproctest.Request{Method: "DELETE", Path: "/api2/json/nodes/pve1/network/" + c.iface,
				Headers: map[string]string{"x-request-id": id}, Upstream: extproctest.Upstream{ServedBy: c.want, Attempts: 1}})
			if res.FailedOpen {
				t.Fatalf("failed open after %s: %v", time.Since(start), res.FailReason)
			}
			if res.Backend != c.want {
				t.Errorf("backend %s, want %s", res.Backend, c.want)
			}
			ev := h.obs.byRequestID(t, id, 1)
			if len(ev) == 0 {
				t.Fatal("no decision recorded")
			}
			d := ev[0].dec
			if d.IfaceType != c.wantType || (d.TypeError != "") != c.wantErr {
				t.Errorf("type %q (source %s, error %q), want %q error=%v", d.IfaceType, d.TypeSource, d.TypeError, c.wantType, c.wantErr)
			}
		})
	}
	f.mu.Lock()
	for _, a := range f.auth {
		if a != "PVEAPIToken="+testToken {
			t.Errorf("lookup sent Authorization %q", a)
		}
	}
	f.mu.Unlock()
	for name, out := range map[string]string{"processor": h.logs.String(), "lookup": logs.String()} {
		if strings.Contains(out, testTokenSecret) {
			t.Errorf("%s log contains the token secret:\n%s", name, out)
		}
	}
	if !strings.Contains(logs.String(), "interface type lookup failed") {
		t.Errorf("lookup failures were not logged at debug level; logs:\n%s", logs.String())
	}
}

// TestPerlLookup covers the lookup itself: escaping, caching,
// de-duplication, invalidation, errors without the token.
func TestPerlLookup(t *testing.T) {
	ctx := context.Background()
	t.Run("escapes node and iface", func(t *testing.T) {
		f := newFakePVE(t)
		snap := snapshot(routing.PerlOnly, func(s *config.Snapshot) { s.PerlAPIBaseURL = f.srv.URL + "/"; s.PerlAPIToken = testToken })
		typ, err := lookupFor(t, f, snap, nil).LookupType(ctx, "pve1", "a b")
		if err != nil || typ != "eth" {
			t.Fatalf("got %q, %v", typ, err)
		}
		if f.paths[0] != "/api2/json/nodes/pve1/network/a%20b" {
			t.Errorf("path %q", f.paths[0])
		}
	})
	t.Run("cache hit and invalidation", func(t *testing.T) {
		f := newFakePVE(t)
		snap := snapshot(routing.PerlOnly, func(s *config.Snapshot) { s.PerlAPIBaseURL = f.srv.URL; s.PerlAPIToken = testToken })
		now := time.Unix(1000, 0)
		var mu sync.Mutex
		l := lookupFor(t, f, snap, nil, func(o *server.PerlLookupOptions) {
			o.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		})
		for range 3 {
			if typ, err := l.LookupType(ctx, "pve1", "vmbr0"); err != nil || typ != "bridge" {
				t.Fatalf("got %q, %v", typ, err)
			}
		}
		if n := f.hits.Load(); n != 1 {
			t.Fatalf("%d requests for 3 lookups, want 1 (cache)", n)
		}
		l.Invalidate("pve1", "")
		_, _ = l.LookupType(ctx, "pve1", "vmbr0")
		if n := f.hits.Load(); n != 2 {
			t.Fatalf("%d requests after invalidation, want 2", n)
		}
		mu.Lock()
		now = now.Add(11 * time.Second)
		mu.Unlock()
		_, _ = l.LookupType(ctx, "pve1", "vmbr0")
		if n := f.hits.Load(); n != 3 {
			t.Fatalf("%d requests after TTL, want 3", n)
		}
	})
	t.Run("concurrent lookups share one request", func(t *testing.T) {
		f := newFakePVE(t)
		f.delay = 50 * time.Millisecond
		snap := snapshot(routing.PerlOnly, func(s *config.Snapshot) { s.PerlAPIBaseURL = f.srv.URL; s.PerlAPIToken = testToken })
		l := lookupFor(t, f, snap, nil)
		var wg sync.WaitGroup
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if typ, err := l.LookupType(ctx, "pve1", "bond0"); err != nil || typ != "bond" {
					t.Errorf("got %q, %v", typ, err)
				}
			}()
		}
		wg.Wait()
		if n := f.hits.Load(); n != 1 {
			t.Fatalf("%d requests for 20 concurrent lookups, want 1", n)
		}
	})
	t.Run("errors never carry the token", func(t *testing.T) {
		f := newFakePVE(t)
		for name, snap := range map[string]*config.Snapshot{
			"wrong token": snapshot(routing.PerlOnly, func(s *config.Snapshot) {
				s.PerlAPIBaseURL = f.srv.URL
				s.PerlAPIToken = "root@pam!x=" + testTokenSecret
			}),
			"timeout": snapshot(routing.PerlOnly, func(s *config.Snapshot) { s.PerlAPIBaseURL = f.srv.URL; s.PerlAPIToken = testToken }),
			"refused": snapshot(routing.PerlOnly, func(s *config.Snapshot) { s.PerlAPIBaseURL = "https://127.0.0.1:1"; s.PerlAPIToken = testToken }),
		} {
			iface := "eth0"
			if name == "timeout" {
				iface = "slow"
			}
			typ, err := lookupFor(t, f, snap, nil).LookupType(ctx, "pve1", iface)
			if err == nil || typ != "" {
				t.Errorf("%s: got %q, %v; want an error", name, typ, err)
				continue
			}
			if strings.Contains(err.Error(), testTokenSecret) {
				t.Errorf("%s: error contains the token: %v", name, err)
			}
		}
	})
	t.Run("not found", func(t *testing.T) {
		f := newFakePVE(t)
		snap := snapshot(routing.PerlOnly, func(s *config.Snapshot) { s.PerlAPIBaseURL = f.srv.URL; s.PerlAPIToken = testToken })
		_, err := lookupFor(t, f, snap, nil).LookupType(ctx, "pve1", "nope0")
		if !errors.Is(err, server.ErrInterfaceNotFound) {
			t.Fatalf("err %v, want ErrInterfaceNotFound", err)
		}
	})
	t.Run("verifies TLS", func(t *testing.T) {
		f := newFakePVE(t)
		snap := snapshot(routing.PerlOnly, func(s *config.Snapshot) { s.PerlAPIBaseURL = f.srv.URL; s.PerlAPIToken = testToken })
		l := lookupFor(t, f, snap, nil, func(o *server.PerlLookupOptions) { o.TLS = server.TLSOptions{} })
		if _, err := l.LookupType(ctx, "pve1", "eth0"); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("err %v, want a certificate error", err)
		}
		if f.hits.Load() != 0 {
			t.Fatal("request reached an unverified server")
		}
		l = lookupFor(t, f, snap, nil, func(o *server.PerlLookupOptions) { o.TLS = server.TLSOptions{InsecureSkipVerify: true} })
		if typ, err := l.LookupType(ctx, "pve1", "eth0"); err != nil || typ != "eth" {
			t.Fatalf("insecure: %q, %v", typ, err)
		}
	})
	t.Run("caller cancellation", func(t *testing.T) {
		f := newFakePVE(t)
		snap := snapshot(routing.PerlOnly, func(s *config.Snapshot) { s.PerlAPIBaseURL = f.srv.URL; s.PerlAPIToken = testToken })
		cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := lookupFor(t, f, snap, nil).LookupType(cctx, "pve1", "slow")
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 500*time.Millisecond {
			t.Fatalf("err %v after %s", err, time.Since(start))
		}
	})
}
