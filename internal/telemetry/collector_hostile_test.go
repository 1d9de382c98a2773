package telemetry_test

// Jaeger (or any OTLP collector) down, refusing or hanging must cost the
// request path nothing: spans are batched and exported in the background,
// dropped when the queue is full, and Shutdown gives up at its deadline.

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pve-migration/router/internal/outcome"
	"github.com/pve-migration/router/internal/telemetry"
	"github.com/pve-migration/router/routing"
)

// blackhole accepts connections and never answers: a collector that hangs.
func blackhole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() { _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String()
}

func refusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func TestCollectorDown(t *testing.T) {
	for _, c := range []struct {
		name, protocol string
		addr           func(*testing.T) string
	}{
		{"grpc refused", "grpc", refusedAddr},
		{"grpc hangs", "grpc", blackhole},
		{"http refused", "http/protobuf", refusedAddr},
		{"http hangs", "http/protobuf", blackhole},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := map[string]string{
				telemetry.EnvOTLPEndpoint: "http://" + c.addr(t),
				telemetry.EnvOTLPProtocol: c.protocol,
				telemetry.EnvServiceName:  "collector-down-test",
			}
			tel, err := telemetry.Setup(context.Background(), telemetry.Options{
				Env: func(k string) string { return env[k] }, Logger: slog.New(slog.DiscardHandler),
				LogDecisions: func() bool { return false },
			})
			if err != nil {
				t.Fatalf("Setup must not need the collector: %v", err)
			}
			p := routing.DefaultPolicy()
			p.Phase = routing.RustFull
			obs := tel.Observer()
			// More spans than the batch queue holds (2048): the overflow is
			// dropped, never waited for.
			const n = 5000
			start := time.Now()
			for i := 0; i < n; i++ {
				d := &outcome.Decision{Method: "GET", Path: "/api2/json/nodes/pve1/network", Phase: p.Phase, Start: time.Now(),
					Decision: routing.Decide(&p, routing.Request{Method: "GET", Path: "/api2/json/nodes/pve1/network"})}
				obs.Finished(obs.Decided(context.Background(), d), d, outcome.Result{ServedBy: "rust", Status: 200, Attempts: 1, Duration: time.Millisecond})
			}
			took := time.Since(start)
			// Generous for -race on a loaded machine; a blocking export
			// would take seconds per batch.
			if took > 5*time.Second {
				t.Fatalf("%d decisions took %v with the collector down", n, took)
			}
			t.Logf("%d decisions recorded in %v (%v each)", n, took, took/n)

			// Metrics do not depend on the collector.
			rec := httptest.NewRecorder()
			tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
			if !strings.Contains(rec.Body.String(), "pve_migration_requests_total") {
				t.Fatalf("/metrics without pve_migration_requests_total while the collector is down")
			}

			// Shutdown flushes what it can and gives up at its deadline.
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			sstart := time.Now()
			err = tel.Shutdown(ctx)
			if d := time.Since(sstart); d > 3*time.Second {
				t.Fatalf("Shutdown took %v with a 1s deadline", d)
			}
			t.Logf("Shutdown: %v after %v", err, time.Since(sstart))
		})
	}
}
