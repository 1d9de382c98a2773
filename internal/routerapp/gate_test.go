package routerapp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pve-migration/router/examples/pvedemo"
	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/internal/ctl"
)

// router is a whole migration-router run in-process for a test.
type router struct {
	conf, sock, admin, proxy string
	perl, rust               string
	stderr                   *syncBuffer
}

// startRouter runs the program with the embedded data plane in front of
// two demo backends, config body conf (perl_api_base_url is added).
func startRouter(t *testing.T, conf string) *router {
	t.Helper()
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	r := &router{perl: demoBackend(t, pvedemo.FlavorPerl, state), rust: demoBackend(t, pvedemo.FlavorRust, state),
		conf: filepath.Join(dir, "network-migration.conf"), sock: filepath.Join(dir, "grpc.sock"),
		admin: freeAddr(t), proxy: freeAddr(t), stderr: &syncBuffer{}}
	r.write(t, conf)
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() {
		code <- Run(ctx, []string{"--config", r.conf, "--grpc-listen", "unix:" + r.sock, "--admin-listen", r.admin,
			"--proxy-listen", r.proxy, "--perl-upstream", r.perl, "--rust-upstream", r.rust, "--reload-interval", "100ms", "--node", "pve1", "--kill-switch", filepath.Join(filepath.Dir(r.conf), "kill"), "--state-file", "off"},
			&bytes.Buffer{}, r.stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case c := <-code:
			if c != ExitOK {
				t.Errorf("Run returned %d; log:\n%s", c, r.stderr.String())
			}
		case <-time.After(20 * time.Second):
			t.Error("Run did not stop after its context ended")
		}
	})
	waitFor(t, "router serving", func() bool {
		resp, err := http.Get("http://" + r.admin + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK && r.send(t, "GET", "/api2/json/version", nil).served != ""
	})
	return r
}

func (r *router) write(t *testing.T, body string) {
	t.Helper()
	body = fmt.Sprintf("perl_api_base_url = %q\n", r.perl) + body
	tmp := r.conf + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, r.conf); err != nil {
		t.Fatal(err)
	}
}

type answer struct {
	status        int
	served, tries string
}

// send makes one client request through the data plane.
func (r *router) send(t *testing.T, method, path string, hdr map[string]string) answer {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+r.proxy+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return answer{status: resp.StatusCode, served: resp.Header.Get("x-pve-served-by"), tries: resp.Header.Get("x-envoy-attempt-count")}
}

func setFaults(t *testing.T, base, body string) {
	t.Helper()
	resp, err := http.Post(base+"/debug/faults", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /debug/faults %s: %d", body, resp.StatusCode)
	}
}

// ctlRun runs migration-ctl against this router.
func (r *router) ctl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	args = append(args, "--config", r.conf, "--router", "unix:"+r.sock)
	code := ctl.Run(context.Background(), args, strings.NewReader(""), &out, &errb, func(string) string { return "" })
	return code, out.String(), errb.String()
}

func (r *router) status(t *testing.T) map[string]any {
	t.Helper()
	code, out, errs := r.ctl(t, "status", "--json")
	if code != 0 {
		t.Fatalf("status exit %d: %s", code, errs)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func trippedList(m map[string]any) string {
	g, _ := m["gate"].(map[string]any)
	var out []string
	for _, c := range g["tripped"].([]any) {
		out = append(out, c.(string))
	}
	return strings.Join(out, ",")
}

func metricsText(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestGateTripsFailingRustReads: with 30% of rust's reads failing (hidden
// from clients by the fallback), the gate trips node-network-read within
// its window; from then on every read goes to perl in one attempt; the
// trip shows in status, /status, the metric and the log; gate reset
// brings rust back.
func TestGateTripsFailingRustReads(t *testing.T) {
	r := startRouter(t, "phase = \"rust-read-only\"\n[gate]\nenabled = true\nwindow = 60\nmin_requests = 20\n")
	setFaults(t, r.rust, `{"error_rate":0.3}`)

	const list = "/api2/json/nodes/pve1/network"
	sent := 0
	for trippedList(r.status(t)) == "" {
		if sent >= 400 {
			t.Fatalf("no trip after %d reads; log:\n%s", sent, r.stderr.String())
		}
		for i := 0; i < 10; i++ {
			if a := r.send(t, "GET", list, nil); a.status != http.StatusOK {
				t.Fatalf("read %d: status %d (the fallback should hide rust's errors)", sent, a.status)
			}
			sent++
		}
	}
	if got := trippedList(r.status(t)); got != "node-network-read" {
		t.Fatalf("tripped %q", got)
	}
	for i := 0; i < 30; i++ {
		if a := r.send(t, "GET", list, nil); a.served != "perl" || a.tries != "1" {
			t.Fatalf("read %d after the trip: served by %q in %s attempts, want perl in 1", i, a.served, a.tries)
		}
	}
	if code, out, _ := r.ctl(t, "status"); code != 0 || !strings.Contains(out, "tripped node-network-read") {
		t.Errorf("status text does not show the trip:\n%s", out)
	}
	resp, err := http.Get("http://" + r.admin + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Gate struct{ Tripped []string } `json:"gate"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if len(st.Gate.Tripped) != 1 || st.Gate.Tripped[0] != "node-network-read" {
		t.Errorf("/status gate %+v", st.Gate)
	}
	m := metricsText(t, r.admin)
	for _, want := range []string{`pve_migration_gate_trips_total{category="node-network-read"} 1`, `pve_migration_gate_trips_total{category="sdn-write"} 0`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if log := r.stderr.String(); !strings.Contains(log, "gate tripped") || !strings.Contains(log, "limit=max_rust_error_rate") {
		t.Errorf("no trip log line naming the limit:\n%s", log)
	}

	// A reload that does not touch reads keeps the trip.
	r.write(t, "phase = \"rust-read-only\"\nfallback_timeout = 20\n[gate]\nenabled = true\nwindow = 60\nmin_requests = 20\n")
	waitFor(t, "reload", func() bool { return r.status(t)["fallback_timeout_seconds"] == 20.0 })
	if got := trippedList(r.status(t)); got != "node-network-read" {
		t.Fatalf("the trip did not survive an unrelated reload: %q", got)
	}

	setFaults(t, r.rust, `{"error_rate":0}`)
	if code, out, errs := r.ctl(t, "gate", "reset", "node-network-read"); code != 0 || !strings.Contains(out, "reset: node-network-read") {
		t.Fatalf("gate reset: %d %s %s", code, out, errs)
	}
	if a := r.send(t, "GET", list, nil); a.served != "rust" {
		t.Fatalf("after gate reset a read is served by %q", a.served)
	}
	if got := trippedList(r.status(t)); got != "" {
		t.Fatalf("still tripped after reset: %q", got)
	}
}

// fakeCompare stands in for the shadow comparison engine (another
// package), which the router will wire as compareEvidence.
type fakeCompare struct {
	mu                   sync.Mutex
	compared, mismatched int
}

func (f *fakeCompare) Window(c string, _ time.Time, _ time.Duration) (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c != "node-network-read" {
		return 0, 0
	}
	return f.compared, f.mismatched
}

func (f *fakeCompare) set(c, m int) { f.mu.Lock(); f.compared, f.mismatched = c, m; f.mu.Unlock() }

func filePhase(t *testing.T, path string) string {
	t.Helper()
	s, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s.Policy.Phase.String()
}

// TestAdvanceNeedsEvidence: advance refuses with mismatching reads and
// with no write evidence, and moves with clean evidence; a canary
// token's basic writes go to rust one phase early while other tokens'
// stay on perl and advanced writes never move early.
func TestAdvanceNeedsEvidence(t *testing.T) {
	cmp := &fakeCompare{}
	compareEvidence = cmp
	defer func() { compareEvidence = nil }()
	// Latency is judged in the gate's unit tests: a p99 over 25 writes on
	// a busy test machine is scheduling noise.
	const gateConf = "[gate]\nenabled = true\nmin_requests = 20\nmax_latency_ratio = 1000\n[canary]\nusers = [\"terraform@pve!ci\"]\n"
	r := startRouter(t, "phase = \"perl-only\"\n"+gateConf)

	// Reads: perl-only → rust-read-only needs clean comparisons.
	cmp.set(40, 4)
	code, _, errs := r.ctl(t, "advance")
	if code != 1 || !strings.Contains(errs, "node-network-read: mismatch rate 0.1000") {
		t.Fatalf("advance with 10%% mismatching reads: exit %d\n%s", code, errs)
	}
	if got := filePhase(t, r.conf); got != "perl-only" {
		t.Fatalf("a refused advance changed the file to %s", got)
	}
	cmp.set(40, 0)
	if code, out, errs := r.ctl(t, "advance"); code != 0 || !strings.Contains(out, "evidence holds for node-network-read") {
		t.Fatalf("advance with clean reads: exit %d\n%s\n%s", code, out, errs)
	}
	if got := filePhase(t, r.conf); got != "rust-read-only" {
		t.Fatalf("file phase %s after advance", got)
	}
	waitFor(t, "router at rust-read-only", func() bool { return r.status(t)["phase"] == "rust-read-only" })

	// Writes: rust-read-only → rust-basic-write needs canary traffic.
	code, _, errs = r.ctl(t, "advance", "--dry-run")
	if code != 1 || !strings.Contains(errs, "node-network-basic-write: only 0 requests served by rust") {
		t.Fatalf("advance without write evidence: exit %d\n%s", code, errs)
	}
	canary := map[string]string{"Authorization": "PVEAPIToken=terraform@pve!ci=00000000-aaaa-bbbb-cccc-000000000000"}
	other := map[string]string{"Authorization": "PVEAPIToken=ops@pve!ci=00000000-aaaa-bbbb-cccc-000000000000"}
	for i := 0; i < 25; i++ {
		basic := fmt.Sprintf("/api2/json/nodes/pve1/network?type=eth&iface=eth%d", 10+i)
		if a := r.send(t, "POST", basic, canary); a.served != "rust" || a.status >= 500 {
			t.Fatalf("canary basic write %d: served by %q, status %d", i, a.served, a.status)
		}
		if a := r.send(t, "POST", basic, other); a.served != "perl" {
			t.Fatalf("other token's basic write served by %q", a.served)
		}
		if a := r.send(t, "POST", fmt.Sprintf("/api2/json/nodes/pve1/network?type=bridge&iface=vmbr%d", 10+i), canary); a.served != "perl" {
			t.Fatalf("canary advanced write moved early: served by %q", a.served)
		}
	}
	waitFor(t, "canary evidence in the plan", func() bool {
		code, out, _ := r.ctl(t, "plan", "--json")
		var p struct {
			Phase, Next string
			Categories  []struct {
				Category  string
				Requests  uint64
				WouldMove uint64 `json:"would_move"`
				Evidence  struct {
					OK     bool
					Canary uint64
				}
			}
		}
		if code != 0 || json.Unmarshal([]byte(out), &p) != nil {
			return false
		}
		return p.Phase == "rust-read-only" && p.Next == "rust-basic-write" && p.Categories[1].Category == "node-network-basic-write" &&
			p.Categories[1].Evidence.OK && p.Categories[1].Evidence.Canary == 25 && p.Categories[1].WouldMove == 25
	})
	if code, out, errs := r.ctl(t, "advance"); code != 0 {
		_, plan, _ := r.ctl(t, "plan", "--json")
		t.Logf("plan: %s", plan)
		t.Fatalf("advance with canary evidence: exit %d\n%s\n%s", code, out, errs)
	}
	if got := filePhase(t, r.conf); got != "rust-basic-write" {
		t.Fatalf("file phase %s after advance", got)
	}
	if strings.Contains(r.stderr.String(), "00000000-aaaa") {
		t.Fatal("the router logged a token secret")
	}
}
