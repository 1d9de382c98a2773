package server

// BenchmarkDecisionGateCanary is the request path's decision as the
// Processor makes it (classify, read the canary user from the request's
// credentials, decide), with gate and canary on, against the same
// decision with them off, in the same run:
//
//	go test -run '^$' -bench BenchmarkDecisionGateCanary -count 10 ./server | tee bench.txt
//	go run golang.org/x/perf/cmd/benchstat@latest -col /mode bench.txt
//
// Goal: gate+canary within 1.2× of plain. The outcome sub-benchmarks are
// the gate's per-request share of recording (a non-blocking queue send),
// against telemetry's no-op observer.

import (
	"context"
	"testing"
	"time"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/internal/gate"
	"github.com/pve-migration/router/internal/localstate"
	"github.com/pve-migration/router/internal/outcome"
	"github.com/pve-migration/router/routing"
)

// decideAsProcessor is onRequestHeaders' decision: note the credential,
// decide, and read the user only when a canary could change the decision.
func decideAsProcessor(st *stream, method, path string, auth []byte) routing.Decision {
	st.user, st.userResolved, st.authz = "", false, nil
	if st.policy.Canary.Enabled() {
		st.noteCredential("authorization", auth)
	}
	c := routing.Classify(method, path, "")
	d := routing.DecideClassified(st.policy, method, "", c)
	if st.canaryUser(d) {
		d = routing.DecideClassified(st.policy, method, st.user, c)
	}
	return d
}

// benchPolicies are the plain policy and the same with gate trips and
// canaries on.
func benchPolicies() (plain, full routing.Policy) {
	plain = routing.DefaultPolicy()
	plain.Phase = routing.RustReadOnly
	full = plain
	full.Canary = routing.Canary{Users: []string{"terraform@pve!ci", "alice@pve", "ops@pam"}, Percent: 10}
	full.Local = routing.Local{Tripped: routing.CategorySet(0).With(routing.SDNRead)}
	return plain, full
}

// BenchmarkDecisionGateCanaryRatio alternates plain and gate+canary in
// blocks within one loop, so both see the same load on a shared machine,
// and reports gate+canary/plain per request kind. Run with a fixed count,
// e.g. -benchtime 200x.
func BenchmarkDecisionGateCanaryRatio(b *testing.B) {
	plain, full := benchPolicies()
	const auth = "PVEAPIToken=bob@pve!tf=0b8c4a1e-5f7d-4c1b-9a2e-3d4f5a6b7c8d"
	cases := []struct{ name, method, path, auth string }{
		{"read", "GET", "/api2/json/nodes/pve1/network", auth},
		{"not-network", "GET", "/api2/json/nodes/pve1/qemu/100/status/current", auth},
		{"basic-write-other", "PUT", "/api2/json/nodes/pve1/network", auth},
		{"basic-write-canary", "PUT", "/api2/json/nodes/pve1/network", "PVEAPIToken=terraform@pve!ci=0b8c4a1e-5f7d-4c1b-9a2e-3d4f5a6b7c8d"},
	}
	const block = 1000
	var el [4][2]time.Duration
	sts := [2]*stream{{policy: &plain}, {policy: &full}}
	b.ResetTimer()
	for i := range b.N {
		for k, tc := range cases {
			a := []byte(tc.auth)
			for j := range 2 {
				m := (j + i) % 2
				t0 := time.Now()
				for range block {
					decideAsProcessor(sts[m], tc.method, tc.path, a)
				}
				el[k][m] += time.Since(t0)
			}
		}
	}
	b.StopTimer()
	for k, tc := range cases {
		b.ReportMetric(float64(el[k][1])/float64(el[k][0]), tc.name+"-ratio")
	}
}

func BenchmarkDecisionGateCanary(b *testing.B) {
	plain, full := benchPolicies()
	cases := []struct {
		name, method, path, auth string
	}{
		{"read", "GET", "/api2/json/nodes/pve1/network", "PVEAPIToken=bob@pve!tf=0b8c4a1e-5f7d-4c1b-9a2e-3d4f5a6b7c8d"},
		{"basic-write-canary", "PUT", "/api2/json/nodes/pve1/network", "PVEAPIToken=terraform@pve!ci=0b8c4a1e-5f7d-4c1b-9a2e-3d4f5a6b7c8d"},
		{"basic-write-other", "PUT", "/api2/json/nodes/pve1/network", "PVEAPIToken=bob@pve!tf=0b8c4a1e-5f7d-4c1b-9a2e-3d4f5a6b7c8d"},
		{"not-network", "GET", "/api2/json/nodes/pve1/qemu/100/status/current", "PVEAPIToken=bob@pve!tf=0b8c4a1e-5f7d-4c1b-9a2e-3d4f5a6b7c8d"},
	}
	decide := func(b *testing.B, p *routing.Policy, method, path, auth string) {
		st, auth0 := &stream{policy: p}, []byte(auth)
		b.ReportAllocs()
		for b.Loop() {
			decideAsProcessor(st, method, path, auth0)
		}
	}
	for _, tc := range cases {
		b.Run("mode=plain/"+tc.name, func(b *testing.B) { decide(b, &plain, tc.method, tc.path, tc.auth) })
		b.Run("mode=gate+canary/"+tc.name, func(b *testing.B) { decide(b, &full, tc.method, tc.path, tc.auth) })
	}

	snap := &config.Snapshot{Policy: full, Gate: config.DefaultGate()}
	snap.Gate.Enabled = true
	g := gate.New(gate.Options{Config: func() *config.Snapshot { return snap }, State: localstate.New("")})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = g.Run(ctx) }()
	d := &outcome.Decision{Start: time.Now(), Decision: routing.Decision{Backend: routing.Rust, Category: routing.NodeNetworkRead, Reason: routing.ReasonPhase}}
	r := outcome.Result{ServedBy: "rust", Status: 200, Attempts: 1, Duration: time.Millisecond}
	for _, o := range []struct {
		name string
		obs  outcome.Observer
	}{{"mode=plain/outcome", outcome.Nop{}}, {"mode=gate+canary/outcome", outcome.Tee(outcome.Nop{}, g)}} {
		b.Run(o.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				o.obs.Finished(o.obs.Decided(ctx, d), d, r)
			}
		})
	}
}
