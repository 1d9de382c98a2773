package dataplane

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkGETNetworkRatio is BenchmarkGETNetwork's comparison made robust
// for a shared machine: nginx, the router as its own process
// (TestRouterProcess: the in-process ext_proc link, telemetry as shipped),
// the same data plane inside the benchmark process over the link and over
// loopback gRPC, a bare httputil.ReverseProxy (the floor for a proxy on
// net/http), and the backend directly, measured in rotation in blocks
// of 1000 requests from 8 keep-alive clients, so that every target sees
// the same load drift. It reports, over all blocks, each target's req/s
// and p99 and the issue-18 ratios (goal: router-process rps/nginx ≥ 0.8,
// p99/nginx ≤ 1.25), the resident memory of nginx and of the router
// process after the load, the allocations per request of the
// in-benchmark data planes beyond direct's, and the CPU time each proxy
// spends per request (cputime_test.go): on a shared host the rates say
// how much CPU the benchmark got, the CPU time what a request costs. Run
// with a fixed count:
//
//	go test -run '^$' -bench GETNetworkRatio -benchtime 10x -count 5 ./envoy/dataplane
func BenchmarkGETNetworkRatio(b *testing.B) {
	e := newEnv(b, envOptions{phase: "rust-read-only"})
	const path = "/api2/json/nodes/pve1/network"
	nginxURL, nginxPID, stopNginx := startNginxPID(b, e.rustAddr)
	defer stopNginx()
	routerURL, routerPID, stopRouter := startRouterProcessPID(b, e)
	defer stopRouter()
	linkURL, _ := e.linkedProxy(b)
	// The floor for a proxy built on net/http: httputil.ReverseProxy with
	// a keep-alive pool, no ext_proc, no routing, in this process.
	rust, err := url.Parse(e.rustURL)
	if err != nil {
		b.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(rust)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 64}
	floor := httptest.NewServer(rp)
	defer floor.Close()
	// pid: the proxy's own process, whose CPU time is counted (0: the
	// proxy runs in this process).
	targets := []struct {
		name, url string
		pid       int
	}{
		{"direct", e.rustURL, 0}, {"nginx", nginxURL, nginxPID}, {"router-process", routerURL, routerPID},
		{"dataplane-inprocess", linkURL, 0}, {"dataplane-grpc", e.url, 0},
		{"go-reverseproxy", floor.URL, 0},
	}
	clients := make([]*http.Client, len(targets))
	for i, t := range targets {
		clients[i] = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
		defer clients[i].CloseIdleConnections()
		for range 16 { // warm up: connections, pools, caches
			if err := fetch(clients[i], t.url+path); err != nil {
				b.Fatalf("%s: %v", t.name, err)
			}
		}
	}
	const block, conc = 1000, 8
	elapsed := make([]time.Duration, len(targets))
	lat := make([][]time.Duration, len(targets))
	mallocs := make([]uint64, len(targets))
	selfCPUs := make([]time.Duration, len(targets)) // this process: client, backend, in-process proxies
	ownCPUs := make([]time.Duration, len(targets))  // the proxy's own process
	var ms runtime.MemStats
	b.ResetTimer()
	for i := range b.N {
		for k := range targets {
			k := (k + i) % len(targets) // rotate which goes first
			runtime.ReadMemStats(&ms)
			before := ms.Mallocs
			cpu0, own0 := selfCPU(), time.Duration(0)
			if targets[k].pid != 0 {
				own0 = processTreeCPU(targets[k].pid)
			}
			d, l := getBlock(b, clients[k], targets[k].url+path, block, conc)
			selfCPUs[k] += selfCPU() - cpu0
			if targets[k].pid != 0 {
				ownCPUs[k] += processTreeCPU(targets[k].pid) - own0
			}
			runtime.ReadMemStats(&ms)
			mallocs[k] += ms.Mallocs - before
			elapsed[k] += d
			lat[k] = append(lat[k], l...)
		}
	}
	b.StopTimer()
	rps := func(k int) float64 { return float64(len(lat[k])) / elapsed[k].Seconds() }
	p99 := func(k int) float64 {
		slices.Sort(lat[k])
		return float64(lat[k][len(lat[k])*99/100].Microseconds()) / 1000
	}
	allocs := func(k int) float64 { return float64(mallocs[k]) / float64(len(lat[k])) }
	const direct, nginx, router, inproc, grpcDP, floorRP = 0, 1, 2, 3, 4, 5
	var p [6]float64
	for k := range targets {
		p[k] = p99(k)
		b.ReportMetric(rps(k), targets[k].name+"-req/s")
		b.ReportMetric(p[k], targets[k].name+"-p99-ms")
	}
	for _, k := range []int{router, inproc, grpcDP, floorRP} {
		b.ReportMetric(rps(k)/rps(nginx), targets[k].name+"-rps/nginx")
		b.ReportMetric(p[k]/p[nginx], targets[k].name+"-p99/nginx")
	}
	for _, k := range []int{inproc, grpcDP, floorRP} {
		b.ReportMetric(allocs(k)-allocs(direct), targets[k].name+"-proxy-allocs/req")
	}
	// CPU per request: the cost of the proxy whatever the load around it.
	// For nginx and the router process, their own processes' CPU time; for
	// the in-process data planes, this process's beyond direct's.
	perReq := func(d time.Duration, k int) float64 { return float64(d.Microseconds()) / float64(len(lat[k])) }
	nginxCPU, routerCPU := perReq(ownCPUs[nginx], nginx), perReq(ownCPUs[router], router)
	b.ReportMetric(nginxCPU, "nginx-cpu-µs/req")
	b.ReportMetric(routerCPU, "router-process-cpu-µs/req")
	if nginxCPU > 0 {
		b.ReportMetric(routerCPU/nginxCPU, "router-process-cpu/nginx")
	}
	for _, k := range []int{inproc, grpcDP, floorRP} {
		b.ReportMetric(perReq(selfCPUs[k], k)-perReq(selfCPUs[direct], direct), targets[k].name+"-proxy-cpu-µs/req")
	}
	if mb := processTreeRSS(nginxPID); mb > 0 {
		b.ReportMetric(mb, "nginx-rss-MB")
	}
	if mb := processTreeRSS(routerPID); mb > 0 {
		b.ReportMetric(mb, "router-process-rss-MB")
	}
}

// getBlock makes n GETs of url, conc at a time, and returns the wall time
// and each request's latency.
func getBlock(b *testing.B, c *http.Client, url string, n, conc int) (time.Duration, []time.Duration) {
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += conc {
				t0 := time.Now()
				if err := fetch(c, url); err != nil {
					b.Error(err)
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	return time.Since(start), lat
}
