package dataplane

import (
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pve-migration/router/examples/pvedemo"
)

func form(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

// categoryCase is one representative request of a contract category.
type categoryCase struct {
	name     string
	category string
	method   string
	path     string
	form     url.Values
}

// phaseMatrix is the contract's phase matrix with the SDN flag on:
// category -> phases (in order) where rust serves.
var rustFrom = map[string]int{
	"node-network-read":           1, // rust-read-only and later
	"node-network-basic-write":    2,
	"node-network-advanced-write": 3,
	"sdn-read":                    4,
	"sdn-write":                   4,
	"not-network":                 99,
}

var phases = []string{"perl-only", "rust-read-only", "rust-basic-write", "rust-advanced", "rust-sdn", "rust-full"}

// TestPhaseMatrixThroughDataPlane sends representative requests of every
// category through the data plane, the real decision service over gRPC and
// the demo backends, in every phase, and checks who served each one twice:
// x-pve-served-by and the backends' own request logs.
func TestPhaseMatrixThroughDataPlane(t *testing.T) {
	const net = "/api2/json/nodes/pve1/network"
	for pi, phase := range phases {
		t.Run(phase, func(t *testing.T) {
			e := newEnv(t, envOptions{phase: phase, extra: "[features]\nenable_sdn_migration = true\n"})
			bridge := fmt.Sprintf("vmbr%d", 10+pi)
			zone := fmt.Sprintf("zone%d", pi)
			cases := []categoryCase{
				{"list", "node-network-read", "GET", net, nil},
				{"get extjs", "node-network-read", "GET", "/api2/extjs/nodes/pve1/network/eno1", nil},
				{"update eth", "node-network-basic-write", "PUT", net + "/eno1", form("type", "eth", "mtu", "9000")},
				{"create bridge", "node-network-advanced-write", "POST", net, form("iface", bridge, "type", "bridge")},
				{"delete bridge (type looked up)", "node-network-advanced-write", "DELETE", net + "/" + bridge, nil},
				{"apply", "node-network-basic-write", "PUT", net, nil},
				{"revert", "node-network-basic-write", "DELETE", net, nil},
				{"sdn zones", "sdn-read", "GET", "/api2/json/cluster/sdn/zones", nil},
				{"sdn create zone", "sdn-write", "POST", "/api2/json/cluster/sdn/zones", form("zone", zone, "type", "simple")},
				{"version", "not-network", "GET", "/api2/json/version", nil},
				{"non-json format", "not-network", "GET", "/api2/html/nodes/pve1/network", nil},
			}
			for _, c := range cases {
				want := "perl"
				if pi >= rustFrom[c.category] {
					want = "rust"
				}
				path := strings.SplitN(c.path, "?", 2)[0]
				beforeP, beforeR := seen(e.perl, c.method, path), seen(e.rust, c.method, path)
				r := e.do(c.method, c.path, c.form, nil)
				if r.status >= 300 && c.category != "not-network" {
					t.Errorf("%s: status %d: %s", c.name, r.status, r.body)
				}
				if r.servedBy != want || r.attempts != "1" {
					t.Errorf("%s (%s): served by %q after %s attempts, want %s after 1", c.name, c.category, r.servedBy, r.attempts, want)
				}
				dP, dR := seen(e.perl, c.method, path)-beforeP, seen(e.rust, c.method, path)-beforeR
				if (want == "perl" && (dP != 1 || dR != 0)) || (want == "rust" && (dR != 1 || dP != 0)) {
					t.Errorf("%s: backends' logs: perl saw %d, rust saw %d; want only %s", c.name, dP, dR, want)
				}
			}
			if m := e.proxy.Metrics(); m.FailOpen != 0 || m.ExtProcErrors != 0 || m.ExtProcTimeouts != 0 || m.RejectedHeaderMutations != 0 {
				t.Errorf("metrics: %+v", m)
			}
		})
	}
}

// TestLivePhaseChangeAndRollback edits the config file under steady
// traffic: no request fails, rust takes over after the edit, and the
// rollback to perl-only takes effect within one reload interval.
func TestLivePhaseChangeAndRollback(t *testing.T) {
	const reload = 100 * time.Millisecond // the watcher's poll interval here
	e := newEnv(t, envOptions{phase: "perl-only", watch: true})
	type obs struct {
		start    time.Time
		servedBy string
	}
	var (
		mu       sync.Mutex
		seenObs  []obs
		failures atomic.Int64
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5000 && !stop.Load(); i++ {
				start := time.Now()
				path := "/api2/json/nodes/pve1/network"
				if (i+w)%3 == 0 {
					path = "/api2/json/nodes/pve1/network/eno1"
				}
				r, err := e.try("GET", path, nil, nil)
				if err != nil || r.status != 200 {
					failures.Add(1)
					t.Errorf("request failed: %v %d %s", err, r.status, r.body)
					continue
				}
				mu.Lock()
				seenObs = append(seenObs, obs{start, r.servedBy})
				mu.Unlock()
			}
		}()
	}
	servedSince := func(since time.Time, by string) (n, total int) {
		mu.Lock()
		defer mu.Unlock()
		for _, o := range seenObs {
			if !o.start.Before(since) {
				total++
				if o.servedBy == by {
					n++
				}
			}
		}
		return n, total
	}
	time.Sleep(200 * time.Millisecond)
	e.writeConfig("rust-read-only", "")
	promoted := time.Now()
	waitFor(t, 5*time.Second, "rust to serve reads", func() bool { n, _ := servedSince(promoted, "rust"); return n > 20 })
	e.writeConfig("perl-only", "")
	rolledBack := time.Now()
	// One reload interval plus the debounce and a request in flight.
	deadline := rolledBack.Add(reload + 150*time.Millisecond)
	waitFor(t, 5*time.Second, "traffic after the rollback", func() bool { _, total := servedSince(deadline, ""); return total > 50 })
	stop.Store(true)
	wg.Wait()
	if n, total := servedSince(deadline, "rust"); n != 0 {
		t.Errorf("%d of %d requests started more than one reload interval after the rollback were served by rust", n, total)
	}
	if failures.Load() != 0 {
		t.Errorf("%d requests failed during the phase changes", failures.Load())
	}
	if r := e.store.LastReload(); r.Err != nil {
		t.Errorf("last reload: %v", r.Err)
	}
}

const (
	netPath   = "/api2/json/nodes/pve1/network"
	putIface  = "PUT /nodes/{node}/network/{iface}"
	postIface = "POST /nodes/{node}/network"
)

// TestRustFaults: whatever rust does, reads still succeed through perl,
// and a write that rust may have applied is never replayed on perl.
func TestRustFaults(t *testing.T) {
	t.Run("down", func(t *testing.T) {
		e := newEnv(t, envOptions{phase: "rust-basic-write", rustFaults: pvedemo.Faults{Refuse: true}})
		for i := range 5 {
			r := e.do("GET", netPath, nil, nil)
			if r.status != 200 || r.servedBy != "perl" {
				t.Fatalf("GET %d: %d served by %q", i, r.status, r.servedBy)
			}
		}
		// A refused connection never reached rust: the write goes to perl.
		r := e.do("PUT", netPath+"/eno1", form("type", "eth", "mtu", "9000"), nil)
		if r.status != 200 || r.servedBy != "perl" {
			t.Fatalf("PUT: %d served by %q: %s", r.status, r.servedBy, r.body)
		}
		if p, ru := applied(e.perl, putIface), applied(e.rust, putIface); p != 1 || ru != 0 {
			t.Errorf("applied: perl %d rust %d, want 1 and 0", p, ru)
		}
		// Three consecutive gateway failures eject rust (outlier_detection):
		// later requests go to perl on the first attempt.
		h := e.proxy.Health()
		if h.Rust.Available || h.Rust.EjectedUntil.IsZero() {
			t.Errorf("rust health after connect failures: %+v", h.Rust)
		}
		r = e.do("GET", netPath, nil, nil)
		if r.servedBy != "perl" || r.attempts != "1" {
			t.Errorf("GET with rust ejected: served by %q after %s attempts, want perl after 1", r.servedBy, r.attempts)
		}
		if m := e.proxy.Metrics(); m.Retries["connect-failure"] == 0 || m.Ejections == 0 {
			t.Errorf("metrics: %+v", m)
		}
	})

	t.Run("500s", func(t *testing.T) {
		e := newEnv(t, envOptions{phase: "rust-basic-write", rustFaults: pvedemo.Faults{ErrorRate: 1}})
		r := e.do("GET", netPath, nil, nil)
		if r.status != 200 || r.servedBy != "perl" || r.attempts != "2" {
			t.Fatalf("GET: %d served by %q after %s attempts", r.status, r.servedBy, r.attempts)
		}
		// rust answered 500 to a write: it may have applied it, so the
		// 500 stands and perl never sees the write.
		r = e.do("PUT", netPath+"/eno1", form("type", "eth", "mtu", "9000"), nil)
		if r.status != 500 || r.servedBy != "rust" || r.attempts != "1" {
			t.Fatalf("PUT: %d served by %q after %s attempts: %s", r.status, r.servedBy, r.attempts, r.body)
		}
		if seen(e.perl, "PUT", netPath+"/eno1") != 0 || applied(e.perl, putIface) != 0 {
			t.Errorf("the write reached perl")
		}
	})

	t.Run("slow", func(t *testing.T) {
		// rust_timeout 1 s for both network templates; rust takes 1.5 s.
		extra := "[endpoints.\"/api2/json/nodes/{node}/network\"]\nrust_timeout = 1\n" +
			"[endpoints.\"/api2/json/nodes/{node}/network/{iface}\"]\nrust_timeout = 1\n"
		e := newEnv(t, envOptions{phase: "rust-basic-write", extra: extra, rustFaults: pvedemo.Faults{Latency: 1500 * time.Millisecond}})
		start := time.Now()
		r := e.do("GET", netPath, nil, nil)
		if r.status != 200 || r.servedBy != "perl" || r.attempts != "2" {
			t.Fatalf("GET: %d served by %q after %s attempts", r.status, r.servedBy, r.attempts)
		}
		if d := time.Since(start); d < time.Second || d > 1400*time.Millisecond {
			t.Errorf("GET took %v, want the 1 s per-try timeout plus perl", d)
		}
		// A write that timed out is not retried: 504, and rust applies it
		// once when its latency is over, perl never.
		r = e.do("PUT", netPath+"/eno1", form("type", "eth", "mtu", "9000"), nil)
		if r.status != 504 || r.attempts != "1" {
			t.Fatalf("PUT: %d after %s attempts: %s", r.status, r.attempts, r.body)
		}
		waitFor(t, 3*time.Second, "rust to apply the timed-out write", func() bool { return applied(e.rust, putIface) == 1 })
		if p := applied(e.perl, putIface); p != 0 || seen(e.perl, "PUT", netPath+"/eno1") != 0 {
			t.Errorf("the timed-out write was replayed on perl (applied %d)", p)
		}
	})

	t.Run("crash mid-request", func(t *testing.T) {
		// rust serves one request, then drops the next connection and
		// closes its listener.
		e := newEnv(t, envOptions{phase: "rust-basic-write", rustFaults: pvedemo.Faults{CrashAfter: 1}})
		if r := e.do("GET", netPath, nil, nil); r.servedBy != "rust" {
			t.Fatalf("first GET served by %q", r.servedBy)
		}
		// The write reaches rust, which dies without answering: it may
		// have applied it, so it is not replayed: 503.
		r := e.do("PUT", netPath+"/eno1", form("type", "eth", "mtu", "9000"), nil)
		if r.status != 503 || r.attempts != "1" {
			t.Fatalf("PUT into the crash: %d after %s attempts: %s", r.status, r.attempts, r.body)
		}
		if seen(e.perl, "PUT", netPath+"/eno1") != 0 {
			t.Errorf("a write that reached rust was replayed on perl")
		}
		// rust is gone now: reads and writes are served by perl.
		r = e.do("GET", netPath, nil, nil)
		if r.status != 200 || r.servedBy != "perl" {
			t.Errorf("GET after the crash: %d served by %q", r.status, r.servedBy)
		}
		r = e.do("PUT", netPath+"/eno1", form("type", "eth", "mtu", "9000"), nil)
		if r.status != 200 || r.servedBy != "perl" || applied(e.perl, putIface) != 1 {
			t.Errorf("PUT after the crash: %d served by %q, perl applied %d", r.status, r.servedBy, applied(e.perl, putIface))
		}
	})

	t.Run("crash during a read", func(t *testing.T) {
		e := newEnv(t, envOptions{phase: "rust-read-only", rustFaults: pvedemo.Faults{CrashAfter: 1}})
		e.do("GET", netPath, nil, nil)
		r := e.do("GET", netPath+"/eno1", nil, nil)
		if r.status != 200 || r.servedBy != "perl" || r.attempts != "2" {
			t.Fatalf("GET into the crash: %d served by %q after %s attempts", r.status, r.servedBy, r.attempts)
		}
	})
}

// TestRust501WriteServedByPerlOnce: rust says "not implemented here" (501)
// for a write; it did nothing, so perl serves it, exactly once.
func TestRust501WriteServedByPerlOnce(t *testing.T) {
	e := newEnv(t, envOptions{phase: "rust-advanced", unimplemented: []string{"PUT:/nodes/{node}/network/{iface}", "POST:/nodes/{node}/network"}})
	r := e.do("PUT", netPath+"/eno1", form("type", "eth", "mtu", "9000"), nil)
	if r.status != 200 || r.servedBy != "perl" || r.attempts != "2" {
		t.Fatalf("PUT: %d served by %q after %s attempts: %s", r.status, r.servedBy, r.attempts, r.body)
	}
	r = e.do("POST", netPath, form("iface", "vmbr5", "type", "bridge"), nil)
	if r.status != 200 || r.servedBy != "perl" || r.attempts != "2" {
		t.Fatalf("POST: %d served by %q after %s attempts: %s", r.status, r.servedBy, r.attempts, r.body)
	}
	for _, k := range []string{putIface, postIface} {
		if p, ru := applied(e.perl, k), applied(e.rust, k); p != 1 || ru != 0 {
			t.Errorf("%s applied: perl %d, rust %d; want 1 and 0", k, p, ru)
		}
	}
	if n := seen(e.rust, "PUT", netPath+"/eno1"); n != 1 {
		t.Errorf("rust saw the PUT %d times, want 1", n)
	}
	if m := e.proxy.Metrics(); m.Retries["retriable-status-codes"] != 2 {
		t.Errorf("retries: %v", m.Retries)
	}
}

// TestDecisionServiceDown: with the decision service unreachable every
// request fails open to perl, including one that claims x-pve-backend: rust.
func TestDecisionServiceDown(t *testing.T) {
	e := newEnv(t, envOptions{phase: "rust-full", noExtProc: true})
	reqs := []struct{ method, path string }{
		{"GET", netPath}, {"GET", netPath + "/eno1"}, {"GET", "/api2/json/cluster/sdn/zones"}, {"GET", "/api2/json/version"},
	}
	for _, q := range reqs {
		r := e.do(q.method, q.path, nil, map[string]string{"X-Pve-Backend": "rust"})
		if r.status != 200 || r.servedBy != "perl" {
			t.Errorf("%s %s: %d served by %q", q.method, q.path, r.status, r.servedBy)
		}
	}
	r := e.do("PUT", netPath+"/eno1", form("type", "eth", "mtu", "1400"), nil)
	if r.status != 200 || r.servedBy != "perl" || applied(e.perl, putIface) != 1 {
		t.Errorf("PUT: %d served by %q", r.status, r.servedBy)
	}
	if len(e.rust.Requests()) != 0 {
		t.Errorf("rust saw %d requests", len(e.rust.Requests()))
	}
	if m := e.proxy.Metrics(); m.FailOpen != uint64(len(reqs)+1) {
		t.Errorf("fail-open count %d, want %d", m.FailOpen, len(reqs)+1)
	}
}

// TestDecisionServiceStopped stops the gRPC server mid-run.
func TestDecisionServiceStopped(t *testing.T) {
	e := newEnv(t, envOptions{phase: "rust-read-only"})
	if r := e.do("GET", netPath, nil, nil); r.servedBy != "rust" {
		t.Fatalf("before: served by %q", r.servedBy)
	}
	e.grpcStop()
	for i := range 5 {
		r := e.do("GET", netPath, nil, nil)
		if r.status != 200 || r.servedBy != "perl" {
			t.Fatalf("after stop %d: %d served by %q", i, r.status, r.servedBy)
		}
	}
}

// TestClientBackendHeaderNeverReachesRust: a client's x-pve-backend: rust
// and its own retry policy are removed before anything else.
func TestClientBackendHeaderNeverReachesRust(t *testing.T) {
	e := newEnv(t, envOptions{phase: "perl-only"})
	spoof := map[string]string{
		"X-Pve-Backend":                  "rust",
		"X-Envoy-Retry-On":               "5xx",
		"X-Envoy-Max-Retries":            "5",
		"X-Envoy-Upstream-Rq-Timeout-Ms": "1",
	}
	for _, q := range []struct {
		method, path string
		form         url.Values
	}{
		{"GET", netPath, nil}, {"PUT", netPath + "/eno1", form("type", "eth", "mtu", "9000")}, {"GET", "/api2/json/version", nil},
	} {
		r := e.do(q.method, q.path, q.form, spoof)
		if r.status != 200 || r.servedBy != "perl" {
			t.Errorf("%s %s: %d served by %q", q.method, q.path, r.status, r.servedBy)
		}
	}
	if n := len(e.rust.Requests()); n != 0 {
		t.Errorf("rust saw %d requests", n)
	}
}
