package server_test

// Benchmarks of whole ext_proc streams over loopback gRPC, the router
// against a no-op server in the same run with the same client, so the
// ratio is the router's own cost. Compare with benchstat:
//
//	go test -run '^$' -bench BenchmarkStream -count 10 ./server | tee bench.txt
//	go run golang.org/x/perf/cmd/benchstat@latest -col /server bench.txt
//
// Goal: router streams/s ≥ 90% of noop, p99 within 1.2×. server=fixed
// sends the router's mutation without deciding, separating the cost of the
// router's logic (router vs fixed) from that of the mutation itself.

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/routing"
	"github.com/pve-migration/router/server"
	"github.com/pve-migration/router/server/extproctest"
)

func BenchmarkStream(b *testing.B) {
	// The default config (log_migration_decisions = true) with a logger
	// that drops Info, as a production router logging at Warn would.
	snap := snapshot(routing.RustFull)
	router := server.NewProcessor(server.Options{
		Config: func() *config.Snapshot { return snap },
		Logger: slog.New(slog.DiscardHandler),
	})
	req := extproctest.Request{
		Method:   "GET",
		Path:     "/api2/json/nodes/pve1/network/vmbr0",
		Headers:  map[string]string{"x-request-id": "5e0c6a8e-1b7d-4a8e-9d59-3f5b2c1a0e77", "user-agent": "pve-bench"},
		Upstream: extproctest.Upstream{Status: 200, ServedBy: "rust", Attempts: 1},
	}
	// fixed answers with the router's own request_headers reply without
	// deciding anything: router vs fixed is the cost of the router's
	// logic, fixed vs noop the cost of carrying the mutation at all.
	fixed := fixedServer{resp: routerReply(b, router, req)}
	for _, c := range []struct {
		name string
		srv  extprocv3.ExternalProcessorServer
	}{
		{"noop", extproctest.NoopServer{}},
		{"fixed", fixed},
		{"router", router},
	} {
		b.Run("server="+c.name, func(b *testing.B) { benchStreams(b, c.srv, req) })
	}
}

// routerReply is the router's request_headers answer to req.
func routerReply(b *testing.B, router *server.Processor, req extproctest.Request) *extprocv3.ProcessingResponse {
	res, err := benchServer(b, router, req).Do(context.Background(), req)
	if err != nil || len(res.Replies) == 0 {
		b.Fatalf("router reply: %v", err)
	}
	return res.Replies[0]
}

// fixedServer answers request_headers with resp and everything else with
// an empty reply of the matching type.
type fixedServer struct{ resp *extprocv3.ProcessingResponse }

func (f fixedServer) Process(srv grpc.BidiStreamingServer[extprocv3.ProcessingRequest, extprocv3.ProcessingResponse]) error {
	for {
		req, err := srv.Recv()
		if err != nil {
			return nil
		}
		resp := emptyResponseHeaders
		if _, ok := req.Request.(*extprocv3.ProcessingRequest_RequestHeaders); ok {
			resp = f.resp
		}
		if err := srv.Send(resp); err != nil {
			return nil
		}
	}
}

var emptyResponseHeaders = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}}

// benchServer serves srv on loopback and returns a warmed-up client.
func benchServer(b *testing.B, srv extprocv3.ExternalProcessorServer, req extproctest.Request) *extproctest.Client {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	// Both servers get the router's production settings.
	gs := grpc.NewServer(grpc.MaxConcurrentStreams(10000), grpc.MaxRecvMsgSize(server.MaxRecvMsgSize))
	extprocv3.RegisterExternalProcessorServer(gs, srv)
	go func() { _ = gs.Serve(ln) }()
	b.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	client := extproctest.New(conn, extproctest.Options{MessageTimeout: -1})
	for range 100 { // warm the connection and the router's response cache
		if _, err := client.Do(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
	return client
}

func benchStreams(b *testing.B, srv extprocv3.ExternalProcessorServer, req extproctest.Request) {
	client := benchServer(b, srv, req)
	ctx := context.Background()

	var mu sync.Mutex
	var all []time.Duration
	b.SetParallelism(16) // 16 × GOMAXPROCS concurrent streams, like a busy Envoy
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		lat := make([]time.Duration, 0, 1024)
		for pb.Next() {
			t0 := time.Now()
			res, err := client.Do(ctx, req)
			if err != nil || res.FailedOpen {
				b.Errorf("stream failed: %v %v", err, res.FailReason)
				return
			}
			lat = append(lat, time.Since(t0))
		}
		mu.Lock()
		all = append(all, lat...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "streams/s")
	b.ReportMetric(float64(all[len(all)/2]), "p50-ns")
	b.ReportMetric(float64(all[len(all)*99/100]), "p99-ns")
}

// BenchmarkStreamRatio measures noop, fixed and router in rotation, in
// blocks of 500 streams at 32 in flight, and reports the router's figures
// relative to the other two. On a shared machine, where load drifts between the
// sub-benchmarks of BenchmarkStream, the interleaving exposes both to the
// same noise. Run with a fixed count, e.g. -benchtime 20x.
func BenchmarkStreamRatio(b *testing.B) {
	snap := snapshot(routing.RustFull)
	router := server.NewProcessor(server.Options{Config: func() *config.Snapshot { return snap }, Logger: slog.New(slog.DiscardHandler)})
	req := extproctest.Request{
		Method:   "GET",
		Path:     "/api2/json/nodes/pve1/network/vmbr0",
		Headers:  map[string]string{"x-request-id": "5e0c6a8e-1b7d-4a8e-9d59-3f5b2c1a0e77"},
		Upstream: extproctest.Upstream{Status: 200, ServedBy: "rust", Attempts: 1},
	}
	fixed := fixedServer{resp: routerReply(b, router, req)}
	// 0 noop, 1 fixed, 2 router
	clients := [3]*extproctest.Client{benchServer(b, extproctest.NoopServer{}, req), benchServer(b, fixed, req), benchServer(b, router, req)}
	const block, inFlight = 500, 32
	var elapsed [3]time.Duration
	var lat [3][]time.Duration
	b.ResetTimer()
	for i := range b.N {
		for k := range 3 {
			k := (k + i) % 3 // rotate which goes first
			d, l := runBlock(b, clients[k], req, block, inFlight)
			elapsed[k] += d
			lat[k] = append(lat[k], l...)
		}
	}
	b.StopTimer()
	for k := range lat {
		slices.Sort(lat[k])
	}
	p := func(k int, q float64) float64 { return float64(lat[k][int(float64(len(lat[k])-1)*q)]) }
	rate := func(k int) float64 { return float64(len(lat[k])) / elapsed[k].Seconds() }
	b.ReportMetric(rate(0), "noop-streams/s")
	b.ReportMetric(rate(2), "router-streams/s")
	b.ReportMetric(rate(2)/rate(0), "router/noop-streams/s")
	b.ReportMetric(p(2, 0.5)/p(0, 0.5), "router/noop-p50")
	b.ReportMetric(p(2, 0.99)/p(0, 0.99), "router/noop-p99")
	b.ReportMetric(rate(2)/rate(1), "router/fixed-streams/s")
	b.ReportMetric(p(2, 0.99)/p(1, 0.99), "router/fixed-p99")
}

// runBlock runs n streams, inFlight at a time, and returns the wall time
// and each stream's latency.
func runBlock(b *testing.B, c *extproctest.Client, req extproctest.Request, n, inFlight int) (time.Duration, []time.Duration) {
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += inFlight {
				t0 := time.Now()
				if res, err := c.Do(context.Background(), req); err != nil || res.FailedOpen {
					b.Errorf("stream failed: %v %v", err, res.FailReason)
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	return time.Since(start), lat
}
