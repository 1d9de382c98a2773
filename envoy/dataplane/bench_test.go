package dataplane

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// benchResult is one target's figures from the latest run, so that the
// proxies can report their ratio to the direct baseline and to nginx of the
// same run.
type benchResult struct{ rps, p99, allocs float64 }

var (
	benchMu      sync.Mutex
	benchResults = map[string]benchResult{}
)

// BenchmarkGETNetwork measures GET /api2/json/nodes/{node}/network in one
// run: straight at the demo rust backend (the baseline); through nginx as a
// plain keep-alive reverse proxy to the same backend (the pace to keep);
// through the embedded data plane talking to the real decision service
// over loopback gRPC (as with --ext-proc, or behind Envoy's protocol); and
// through the data plane with the decision service in process over
// internal/extproclocal, the router's default without --ext-proc; and
// that same wiring, telemetry as shipped included, as a process of its own
// (router-process, see TestRouterProcess), the fairest comparison with
// nginx, which also has its own process. Each
// reports req/s and p99 latency, and allocs/req (every allocation of the
// process during the run over the requests made: client, backend and
// proxy); the proxies also report their ratios to direct and to nginx and
// proxy-allocs/req, their own allocations per request (allocs/req minus
// direct's; for router-process, whose allocations happen in its own
// process, it is meaningless). nginx and router-process also report
// their resident memory after the load (rss-MB; nginx: master and
// workers). Load is bounded and loopback only:
// 4×GOMAXPROCS client goroutines for -benchtime.
//
//	go test -run '^$' -bench GETNetwork -count 5 ./envoy/dataplane | tee bench.txt
//	go run golang.org/x/perf/cmd/benchstat@latest bench.txt
func BenchmarkGETNetwork(b *testing.B) {
	e := newEnv(b, envOptions{phase: "rust-read-only"})
	const path = "/api2/json/nodes/pve1/network"
	b.Run("direct", func(b *testing.B) { loadTest(b, "direct", e.rustURL+path) })
	b.Run("nginx", func(b *testing.B) {
		nginxURL, rss, stop := startNginx(b, e.rustAddr)
		defer stop()
		loadTest(b, "nginx", nginxURL+path)
		if mb := rss(); mb > 0 {
			b.ReportMetric(mb, "rss-MB")
		}
	})
	b.Run("dataplane", func(b *testing.B) { loadTest(b, "dataplane", e.url+path) })
	link, m := e.linkedProxy(b)
	b.Run("dataplane-inprocess", func(b *testing.B) { loadTest(b, "dataplane-inprocess", link+path) })
	b.Run("router-process", func(b *testing.B) {
		url, rss, stop := startRouterProcess(b, e)
		defer stop()
		loadTest(b, "router-process", url+path)
		if mb := rss(); mb > 0 {
			b.ReportMetric(mb, "rss-MB")
		}
	})
	// A saturated 2-core machine can starve the decision service past the
	// 500 ms message_timeout; those requests fail open to perl, exactly as
	// behind Envoy. A handful is load, not a bug; more means the figures
	// measure perl instead of the data plane.
	for _, m := range []Metrics{e.proxy.Metrics(), m()} {
		if limit := m.Requests/1000 + 1; m.FailOpen > limit || m.ServedBy["perl"] > limit {
			b.Errorf("the data plane did not route (nearly) every request to rust: %+v", m)
		} else if m.FailOpen > 0 {
			b.Logf("%d of %d requests failed open under load", m.FailOpen, m.Requests)
		}
	}
}

// linkedProxy serves a second data plane on e's backends, with e's
// decision service behind the in-process link instead of gRPC.
func (e *testEnv) linkedProxy(b *testing.B) (string, func() Metrics) {
	client, stopLink := linkTo(e.proc)
	opts := e.opts
	opts.ExtProc = client
	opts.AccessLog = nil
	p, err := New(opts)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = p.Serve(ctx, ServeOptions{Listener: ln, ShutdownTimeout: 2 * time.Second})
	}()
	b.Cleanup(func() { cancel(); <-done; _ = p.Close(); stopLink() })
	return "http://" + ln.Addr().String(), p.Metrics
}

func loadTest(b *testing.B, name, url string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
	defer client.CloseIdleConnections()
	// Warm the connection pools outside the measurement.
	for range 8 {
		if err := fetch(client, url); err != nil {
			b.Fatal(err)
		}
	}
	var (
		mu  sync.Mutex
		lat []time.Duration
		ms  runtime.MemStats
	)
	runtime.ReadMemStats(&ms)
	mallocs := ms.Mallocs
	b.SetParallelism(4)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		mine := make([]time.Duration, 0, 1024)
		for pb.Next() {
			t0 := time.Now()
			if err := fetch(client, url); err != nil {
				b.Error(err)
				return
			}
			mine = append(mine, time.Since(t0))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	runtime.ReadMemStats(&ms)
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	p99 := float64(lat[(len(lat)*99)/100].Microseconds()) / 1000
	rps := float64(len(lat)) / elapsed.Seconds()
	allocs := float64(ms.Mallocs-mallocs) / float64(len(lat))
	b.ReportMetric(rps, "req/s")
	b.ReportMetric(p99, "p99-ms")
	b.ReportMetric(allocs, "allocs/req")
	benchMu.Lock()
	defer benchMu.Unlock()
	benchResults[name] = benchResult{rps, p99, allocs}
	if name == "direct" || name == "nginx" {
		if base, ok := benchResults["direct"]; ok && name == "nginx" && base.rps > 0 && base.p99 > 0 {
			b.ReportMetric(rps/base.rps, "rps/direct")
			b.ReportMetric(p99/base.p99, "p99/direct")
		}
		return
	}
	if base, ok := benchResults["direct"]; ok && base.rps > 0 && base.p99 > 0 {
		b.ReportMetric(rps/base.rps, "rps/direct")
		b.ReportMetric(p99/base.p99, "p99/direct")
		if name != "router-process" {
			b.ReportMetric(allocs-base.allocs, "proxy-allocs/req")
		}
	}
	if ng, ok := benchResults["nginx"]; ok && ng.rps > 0 && ng.p99 > 0 {
		b.ReportMetric(rps/ng.rps, "rps/nginx")
		b.ReportMetric(p99/ng.p99, "p99/nginx")
	}
}

func fetch(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return err
}

// startNginx runs Debian's nginx as a plain keep-alive reverse proxy to
// backend on a loopback port, with a generated configuration in a temp
// directory. It skips the benchmark when nginx is not installed. rss
// reports the resident memory of nginx's processes in MB.
func startNginx(b *testing.B, backend string) (url string, rss func() float64, stop func()) {
	url, pid, stop := startNginxPID(b, backend)
	return url, func() float64 { return processTreeRSS(pid) }, stop
}

// startNginxPID is startNginx returning nginx's master pid.
func startNginxPID(b *testing.B, backend string) (url string, pid int, stop func()) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			b.Skip("nginx is not installed (apt-get install -y nginx-light); skipping the nginx comparison")
		}
		bin = "/usr/sbin/nginx"
	}
	dir := b.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	conf := fmt.Sprintf(`daemon off;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  upstream backend { server %[2]s; keepalive 64; }
  server {
    listen %[3]s;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
    }
  }
}
`, dir, backend, addr)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log"))
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		b.Skipf("cannot start nginx: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stop = func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err == nil {
			_ = c.Close()
			break
		}
		if ctx.Err() != nil {
			stop()
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			b.Fatalf("nginx did not start: %s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "http://" + addr, cmd.Process.Pid, stop
}

// processTreeRSS sums VmRSS of pid and its children (nginx's workers), in
// MB; 0 when /proc cannot tell.
func processTreeRSS(pid int) float64 {
	kb := rssKB(pid)
	if kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)); err == nil {
		for _, f := range strings.Fields(string(kids)) {
			if c, err := strconv.Atoi(f); err == nil {
				kb += rssKB(c)
			}
		}
	}
	return float64(kb) / 1024
}

func rssKB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}
