package shadow_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pve-migration/router/examples/pvedemo"
	"github.com/pve-migration/router/internal/compare"
)

const on100 = "enabled = true\nsample_percent = 100\nmax_inflight = 8"

// TestIdenticalAnswersNeverMismatch: 1,000 sampled GETs of two backends
// that answer alike give no mismatch, whoever serves.
func TestIdenticalAnswersNeverMismatch(t *testing.T) {
	tests := []struct {
		phase, servedBy string
		n               int
	}{
		{"perl-only", "perl", 1000},
		{"rust-read-only", "rust", 200},
	}
	for _, tt := range tests {
		t.Run(tt.phase, func(t *testing.T) {
			e := newEnv(t, envOpts{phase: tt.phase, compare: on100, queue: 4096})
			e.gets(tt.n, 4, tt.servedBy, netList, netList+"/eno1", netList+"?type=bridge", "/api2/extjs/nodes/pve1/network/vmbr0")
			st := e.settle(uint64(tt.n))
			if st.Dropped != 0 {
				t.Fatalf("%d jobs dropped with a queue of 4096", st.Dropped)
			}
			var compared, mismatched, errors uint64
			for _, ts := range e.worker.Report().Summary().Templates {
				compared += ts.Compared
				mismatched += ts.Mismatched
				errors += ts.Errors
				if ts.Mismatched > 0 || ts.Errors > 0 {
					t.Errorf("%s: %d mismatched, %d errors (%v): %+v", ts.Template, ts.Mismatched, ts.Errors, ts.Reasons, ts.Fields)
				}
			}
			if compared != uint64(tt.n) {
				t.Errorf("compared %d of %d sampled GETs", compared, tt.n)
			}
			c, m := e.worker.Report().Window("node-network-read", time.Now(), 5*time.Minute)
			if c != tt.n || m != 0 {
				t.Errorf("Window = %d compared, %d mismatched; want %d, 0", c, m, tt.n)
			}
			// The caller's credentials reached the shadow requests (the
			// backends demand them), and appear in no report.
			b, _ := json.Marshal(e.worker.Report().Summary())
			if strings.Contains(string(b), "5ecret") || strings.Contains(string(b), "PVEAPIToken") {
				t.Errorf("report shows a credential: %s", b)
			}
		})
	}
}

// TestDivergingFieldReported: a field rust alters is reported with its
// path in (at least 99% of) the samples.
func TestDivergingFieldReported(t *testing.T) {
	e := newEnv(t, envOpts{compare: on100, queue: 4096, rustFaults: pvedemo.Faults{Diverge: "data[].method"}})
	const n = 200
	e.gets(n, 4, "perl", netList)
	e.settle(n)
	ts := e.template("/nodes/{node}/network")
	if ts.Compared != n || float64(ts.Mismatched) < 0.99*n {
		t.Fatalf("%d of %d compared GETs mismatched, want ≥ 99%%: %+v", ts.Mismatched, ts.Compared, ts)
	}
	if len(ts.Fields) == 0 || ts.Fields[0].Path != "data[].method" || ts.Fields[0].Kind != compare.KindValue || float64(ts.Fields[0].Count) < 0.99*n {
		t.Fatalf("worst field = %+v, want data[].method (value) in ≥ 99%% of samples", ts.Fields)
	}
	ex := ts.Fields[0].Example
	if !strings.HasSuffix(string(ex.Rust), `-diverged"`) || strings.Contains(string(ex.Perl), "diverged") {
		t.Errorf("example = perl %s, rust %s", ex.Perl, ex.Rust)
	}
	if c, m := e.worker.Report().Window("node-network-read", time.Now(), time.Minute); c != n || m < n*99/100 {
		t.Errorf("Window = %d/%d", c, m)
	}
}

// TestRandomFieldIsNoise: a field random on both sides is noise, never a
// mismatch.
func TestRandomFieldIsNoise(t *testing.T) {
	f := pvedemo.Faults{Noise: "method"}
	e := newEnv(t, envOpts{compare: on100, queue: 4096, perlFaults: f, rustFaults: f})
	const n = 200
	e.gets(n, 4, "perl", netList)
	e.settle(n)
	ts := e.template("/nodes/{node}/network")
	if ts.Mismatched != 0 || ts.Noise != n {
		t.Fatalf("mismatched %d, noise %d of %d: %+v", ts.Mismatched, ts.Noise, n, ts.Fields)
	}
	if len(ts.Fields) != 1 || ts.Fields[0].Path != "data[].method" || ts.Fields[0].Kind != compare.KindNoise {
		t.Errorf("fields = %+v, want data[].method as noise", ts.Fields)
	}
}

// TestWritesNeverShadowedAndPerlOnlyServesPerl: in perl-only with compare
// on, clients are served by perl alone and rust sees nothing but shadow
// GETs: no write reaches it (its own request log is the proof).
func TestWritesNeverShadowedAndPerlOnlyServesPerl(t *testing.T) {
	e := newEnv(t, envOpts{compare: on100, queue: 4096})
	for i := range 10 {
		if st, by := e.do("POST", netList, "iface=vmbr"+string(rune('a'+i))+"&type=bridge"); st != 200 || by != "perl" {
			t.Fatalf("POST: %d from %q", st, by)
		}
		if st, by := e.do("GET", netList, ""); st != 200 || by != "perl" {
			t.Fatalf("GET: %d from %q", st, by)
		}
	}
	if st, by := e.do("DELETE", netList, ""); st != 200 || by != "perl" {
		t.Fatalf("revert: %d from %q", st, by)
	}
	if st, by := e.do("PUT", "/api2/json/cluster/sdn", ""); by != "perl" {
		t.Fatalf("sdn apply: %d from %q", st, by)
	}
	e.settle(10)
	// Shadow requests are no served traffic: the data plane saw only the
	// client's 22 requests.
	if n := e.proxy.Metrics().Requests; n != 22 {
		t.Errorf("data plane counted %d requests, want the client's 22", n)
	}
	reqs := e.rust.Requests()
	if len(reqs) == 0 {
		t.Fatal("rust saw no shadow request at all")
	}
	for _, r := range reqs {
		if r.Method != "GET" || !r.Shadow {
			t.Errorf("rust got a non-shadow or non-GET request: %+v", r)
		}
	}
	if n := len(e.rust.Applied()); n != 0 {
		t.Errorf("rust applied writes: %v", e.rust.Applied())
	}
	for _, r := range e.perl.Requests() {
		if r.Method != "GET" && r.Shadow {
			t.Errorf("a write was shadowed to perl: %+v", r)
		}
	}
}

// TestCompareOffSendsRustNothing: enabled = false means rust gets nothing
// while perl serves.
func TestCompareOffSendsRustNothing(t *testing.T) {
	e := newEnv(t, envOpts{compare: "enabled = false\nsample_percent = 100"})
	e.gets(20, 2, "perl", netList)
	if n := len(e.rust.Requests()); n != 0 {
		t.Errorf("rust got %d requests with compare off", n)
	}
	if st := e.worker.Stats(); st.Submitted != 0 {
		t.Errorf("jobs submitted with compare off: %+v", st)
	}
}

// TestSlowShadowDoesNotDelayClient: with rust taking 1.5 s, the client's
// GET is answered before rust has answered its shadow request. The check
// is an order of events, not a duration: had the client waited for the
// shadow, its answer would come after rust's (which is at least 1.5 s
// after rust received the request).
func TestSlowShadowDoesNotDelayClient(t *testing.T) {
	const latency = 1500 * time.Millisecond
	e := newEnv(t, envOpts{compare: on100, rustFaults: pvedemo.Faults{Latency: latency}})
	start := time.Now()
	if st, by := e.do("GET", netList, ""); st != 200 || by != "perl" {
		t.Fatalf("GET: %d from %q", st, by)
	}
	answered := time.Now()
	st := e.settle(1)
	if st.Done != 1 {
		t.Fatalf("stats %+v", st)
	}
	reqs := e.rust.Requests()
	if len(reqs) != 1 || !reqs[0].Shadow {
		t.Fatalf("rust requests %+v, want the one shadow GET", reqs)
	}
	if rustAnswered := reqs[0].Time.Add(latency); !answered.Before(rustAnswered) {
		t.Errorf("the client was answered at %v, after rust answered the shadow (%v)", answered.Sub(start), rustAnswered.Sub(start))
	}
	t.Logf("client answered after %v; rust answered the shadow after %v", answered.Sub(start), reqs[0].Time.Add(latency).Sub(start))
	if ts := e.template("/nodes/{node}/network"); ts.Matched != 1 {
		t.Errorf("slow but identical answer not a match: %+v", ts)
	}
}

// TestFullQueueDropsAndCounts: jobs beyond the queue are dropped and
// counted skipped, and the client never waits.
func TestFullQueueDropsAndCounts(t *testing.T) {
	e := newEnv(t, envOpts{compare: "enabled = true\nsample_percent = 100\nmax_inflight = 1", queue: 1,
		rustFaults: pvedemo.Faults{Latency: time.Second}})
	e.gets(20, 4, "perl", netList)
	st := e.settle(20)
	ts := e.template("/nodes/{node}/network")
	if st.Dropped == 0 || ts.Skipped != st.Dropped || ts.Reasons["queue full"] != st.Dropped {
		t.Errorf("stats %+v, template %+v", st, ts)
	}
	if ts.Compared+ts.Skipped != 20 {
		t.Errorf("compared %d + skipped %d != 20", ts.Compared, ts.Skipped)
	}
}

// TestShadowErrorsAreNotMatches: a refused or timed-out shadow is an
// error with a reason, and an answer over max_body_bytes is skipped.
func TestShadowErrorsAreNotMatches(t *testing.T) {
	tests := []struct {
		name, compare, reason string
		result                compare.Result
		faults                pvedemo.Faults
	}{
		{"timeout", on100 + "\ntimeout = 1", "rust: timeout", compare.Error, pvedemo.Faults{Latency: 4 * time.Second}},
		{"5xx", on100, "", compare.Mismatch, pvedemo.Faults{ErrorRate: 1}},
		{"too large", on100 + "\nmax_body_bytes = 64", "answer over max_body_bytes", compare.Skipped, pvedemo.Faults{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOpts{compare: tt.compare, rustFaults: tt.faults})
			e.gets(3, 1, "perl", netList)
			e.settle(3)
			ts := e.template("/nodes/{node}/network")
			var got uint64
			switch tt.result {
			case compare.Error:
				got = ts.Errors
			case compare.Mismatch:
				got = ts.Mismatched
			case compare.Skipped:
				got = ts.Skipped
			}
			if got != 3 || ts.Matched != 0 || (tt.reason != "" && ts.Reasons[tt.reason] != 3) {
				t.Errorf("template %+v, want 3 %s (%s)", ts, tt.result, tt.reason)
			}
		})
	}
	t.Run("refused", func(t *testing.T) {
		e := newEnv(t, envOpts{compare: on100, rustFaults: pvedemo.Faults{Refuse: true}})
		e.gets(3, 1, "perl", netList)
		e.settle(3)
		if ts := e.template("/nodes/{node}/network"); ts.Errors != 3 || ts.Reasons["rust: connection refused"] != 3 {
			t.Errorf("template %+v", ts)
		}
	})
}
