package dataplane

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/internal/extproclocal"
	"github.com/pve-migration/router/internal/telemetry"
	"github.com/pve-migration/router/routing"
	"github.com/pve-migration/router/server"
)

// Environment of the router process that BenchmarkGETNetwork/router-process
// starts: the test binary itself, running TestRouterProcess.
const (
	envRouterConf = "DATAPLANE_ROUTER_PROCESS_CONF"
	envRouterPerl = "DATAPLANE_ROUTER_PROCESS_PERL"
	envRouterRust = "DATAPLANE_ROUTER_PROCESS_RUST"
)

// TestRouterProcess is not a test: it is the router half of
// BenchmarkGETNetwork/router-process, a process of its own like nginx, so
// that its requests per second, latency and resident memory compare with
// nginx's on equal terms (no load generator or backend in the process).
// It is wired as migration-router wires the embedded data plane without
// --ext-proc: config store, decision service with telemetry as shipped
// (metrics on, tracing off without OTEL_* variables) and its DELETE type
// lookup, the in-process ext_proc link, the data plane with envoy.yaml's
// health checks. It prints "LISTEN addr" and serves until stdin closes.
func TestRouterProcess(t *testing.T) {
	confPath := os.Getenv(envRouterConf)
	if confPath == "" {
		t.Skip("the router process of BenchmarkGETNetwork/router-process")
	}
	quiet := slog.New(slog.DiscardHandler)
	snap, err := config.Load(confPath, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	store := config.NewStore(snap)
	ctx := context.Background()
	tel, err := telemetry.Setup(ctx, telemetry.Options{
		Logger:         quiet,
		MetricsEnabled: func() bool { return store.Current().MetricsEnabled },
		LogDecisions:   func() bool { return store.Current().LogDecisions },
		Phase:          func() routing.Phase { return store.Current().Policy.Phase },
	})
	if err != nil {
		t.Fatal(err)
	}
	lookup, err := server.NewPerlLookup(server.PerlLookupOptions{Config: store.Current, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	proc := server.NewProcessor(server.Options{Config: store.Current, Observer: tel.Observer(), Lookup: lookup, Logger: quiet})
	link := extproclocal.New(proc, extproclocal.Options{ServerContext: tel.ExtractStreamContext})
	p, err := New(Options{
		Perl:    Upstream{URL: os.Getenv(envRouterPerl)},
		Rust:    Upstream{URL: os.Getenv(envRouterRust)},
		ExtProc: link,
		Logger:  quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("LISTEN %s\n", ln.Addr())
	sctx, stop := context.WithCancel(ctx)
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); stop() }()
	if err := p.Serve(sctx, ServeOptions{Listener: ln, ShutdownTimeout: 2 * time.Second}); err != nil {
		t.Error(err)
	}
	_ = p.Close()
	_ = link.Close(ctx)
	_ = tel.Shutdown(ctx)
}

// startRouterProcess runs TestRouterProcess in a child process in front of
// e's backends and returns its URL, its resident memory (MB) and a stop
// function.
func startRouterProcess(b *testing.B, e *testEnv) (url string, rss func() float64, stop func()) {
	url, pid, stop := startRouterProcessPID(b, e)
	return url, func() float64 { return processTreeRSS(pid) }, stop
}

// startRouterProcessPID is startRouterProcess returning the child's pid.
func startRouterProcessPID(b *testing.B, e *testEnv) (url string, pid int, stop func()) {
	args := []string{"-test.run=^TestRouterProcess$", "-test.bench=^$", "-test.count=1"}
	if prof := os.Getenv("ROUTER_PROCESS_CPUPROFILE"); prof != "" {
		// To see where the router process spends its time.
		args = append(args, "-test.cpuprofile="+prof)
	}
	if prof := os.Getenv("ROUTER_PROCESS_MEMPROFILE"); prof != "" {
		args = append(args, "-test.memprofile="+prof, "-test.memprofilerate=512")
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), envRouterConf+"="+e.confPath, envRouterPerl+"="+e.perlURL, envRouterRust+"="+e.rustURL)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	stop = func() {
		_ = stdin.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "LISTEN "); ok {
				addr <- a
			}
		}
		_ = cmd.Wait()
		close(done)
	}()
	select {
	case a := <-addr:
		return "http://" + a, cmd.Process.Pid, stop
	case <-done:
		b.Fatal("the router process ended before listening")
	case <-time.After(30 * time.Second):
		stop()
		b.Fatal("the router process did not start listening within 30s")
	}
	return "", 0, nil
}
