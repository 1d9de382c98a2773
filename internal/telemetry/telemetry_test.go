package telemetry

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pve-migration/router/internal/logsink"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/pve-migration/router/internal/outcome"
	"github.com/pve-migration/router/routing"
)

// fixture is a Telemetry with every output captured: spans in a recorder,
// log lines in a buffer, switches in atomics.
type fixture struct {
	tel     *Telemetry
	spans   *tracetest.SpanRecorder
	logs    *syncBuffer
	metrics atomic.Bool
	logOn   atomic.Bool
	phase   atomic.Uint32
}

// syncBuffer is a log sink safe for concurrent writers, with a reader
// for JSON log lines.
type syncBuffer struct{ logsink.Buffer }

// lines returns the JSON log lines whose msg is msg.
func (s *syncBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for l := range strings.SplitSeq(strings.TrimSpace(s.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func newFixture(t testing.TB, env map[string]string) *fixture {
	t.Helper()
	f := &fixture{spans: tracetest.NewSpanRecorder(), logs: &syncBuffer{}}
	f.metrics.Store(true)
	f.logOn.Store(true)
	f.phase.Store(uint32(routing.RustReadOnly))
	tel, err := Setup(context.Background(), Options{
		Version:        "1.2.3-test",
		Env:            func(k string) string { return env[k] },
		Logger:         slog.New(slog.NewJSONHandler(f.logs, nil)),
		MetricsEnabled: f.metrics.Load,
		LogDecisions:   f.logOn.Load,
		Phase:          func() routing.Phase { return routing.Phase(f.phase.Load()) },
		SpanProcessors: []sdktrace.SpanProcessor{f.spans},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	f.tel = tel
	return f
}

// scrape reads /metrics through the handler and parses it as Prometheus
// does, so a name the exporter mangles fails here.
func scrape(t testing.TB, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("/metrics Content-Type %q, want text format", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func find(t *testing.T, f *dto.MetricFamily, want map[string]string) *dto.Metric {
	t.Helper()
	for _, m := range f.GetMetric() {
		got := labels(m)
		ok := true
		for k, v := range want {
			if got[k] != v {
				ok = false
			}
		}
		if ok {
			return m
		}
	}
	t.Fatalf("%s: no series with %v", f.GetName(), want)
	return nil
}

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func decision(method, path string, ifaceType string, src outcome.TypeSource, p routing.Policy) *outcome.Decision {
	d := routing.Decide(&p, routing.Request{Method: method, Path: path, IfaceType: ifaceType})
	return &outcome.Decision{
		RequestID: "req-" + method, Method: method, Path: path, Phase: p.Phase, Decision: d,
		IfaceType: ifaceType, TypeSource: src, Start: t0, DecideDuration: 150 * time.Microsecond,
	}
}

func policy(ph routing.Phase) routing.Policy {
	p := routing.DefaultPolicy()
	p.Phase = ph
	return p
}

func TestMetricFamiliesAreTheContractsNames(t *testing.T) {
	f := newFixture(t, nil)
	obs := f.tel.Observer()
	ctx := context.Background()

	read := decision("GET", "/api2/json/nodes/pve1/network", "", "", policy(routing.RustReadOnly))
	obs.Finished(obs.Decided(ctx, read), read, outcome.Result{ServedBy: "perl", Attempts: 2, Status: 200, Fallback: true, Duration: 40 * time.Millisecond})
	obs.Finished(obs.Decided(ctx, read), read, outcome.Result{ServedBy: "rust", Attempts: 1, Status: 200, Duration: 3 * time.Millisecond})
	write := decision("PUT", "/api2/json/nodes/pve1/network/eno1", "eth", outcome.TypeBody, policy(routing.RustReadOnly))
	obs.Abandoned(obs.Decided(ctx, write), write, "client gone")
	f.tel.RecordReload("ok")
	f.tel.RecordReload("error")
	f.tel.RecordReload("error")

	fams := scrape(t, f.tel.MetricsHandler())
	want := map[string]dto.MetricType{
		MetricRequests:         dto.MetricType_COUNTER,
		MetricFallbacks:        dto.MetricType_COUNTER,
		MetricUpstreamDuration: dto.MetricType_HISTOGRAM,
		MetricDecisionDuration: dto.MetricType_HISTOGRAM,
		MetricConfigReloads:    dto.MetricType_COUNTER,
		MetricPhaseInfo:        dto.MetricType_GAUGE,
	}
	for name, typ := range want {
		fam, ok := fams[name]
		if !ok {
			var have []string
			for n := range fams {
				if strings.HasPrefix(n, "pve") {
					have = append(have, n)
				}
			}
			slices.Sort(have)
			t.Fatalf("family %s missing; pve families: %v", name, have)
		}
		if fam.GetType() != typ {
			t.Errorf("%s: type %v, want %v", name, fam.GetType(), typ)
		}
		for _, m := range fam.GetMetric() {
			for k := range labels(m) {
				if strings.HasPrefix(k, "otel_") {
					t.Errorf("%s carries label %s", name, k)
				}
			}
		}
	}
	for n := range fams {
		if strings.HasPrefix(n, "pve_migration") {
			if _, ok := want[n]; !ok {
				t.Errorf("unexpected family %s (suffix added by the exporter?)", n)
			}
		}
	}

	// Exact label set of the requests counter.
	m := find(t, fams[MetricRequests], map[string]string{"served_by": "perl"})
	if got := slices.Sorted(func(yield func(string) bool) {
		for k := range labels(m) {
			if !yield(k) {
				return
			}
		}
	}); !slices.Equal(got, []string{"backend", "category", "outcome", "served_by"}) {
		t.Errorf("%s labels %v", MetricRequests, got)
	}
	checks := []struct {
		fam    string
		labels map[string]string
		value  float64
	}{
		{MetricRequests, map[string]string{"backend": "rust", "served_by": "perl", "category": "node-network-read", "outcome": "success"}, 1},
		{MetricRequests, map[string]string{"backend": "rust", "served_by": "rust", "category": "node-network-read", "outcome": "success"}, 1},
		{MetricRequests, map[string]string{"backend": "perl", "served_by": "none", "category": "node-network-basic-write", "outcome": "abandoned"}, 1},
		{MetricFallbacks, map[string]string{"category": "node-network-read"}, 1},
		{MetricConfigReloads, map[string]string{"result": "error"}, 2},
		{MetricConfigReloads, map[string]string{"result": "ok"}, 1},
	}
	for _, c := range checks {
		if got := find(t, fams[c.fam], c.labels).GetCounter().GetValue(); got != c.value {
			t.Errorf("%s%v = %v, want %v", c.fam, c.labels, got, c.value)
		}
	}
	ph := fams[MetricPhaseInfo].GetMetric()
	if len(ph) != 1 || labels(ph[0])["phase"] != "rust-read-only" || ph[0].GetGauge().GetValue() != 1 {
		t.Errorf("phase_info = %v", ph)
	}
	h := find(t, fams[MetricUpstreamDuration], map[string]string{"served_by": "perl"}).GetHistogram()
	if h.GetSampleCount() != 1 || h.GetSampleSum() != 0.04 {
		t.Errorf("upstream perl: count %d sum %v", h.GetSampleCount(), h.GetSampleSum())
	}
	var bounds []float64
	for _, b := range h.GetBucket() {
		bounds = append(bounds, b.GetUpperBound())
	}
	if bounds[0] != 0.001 || bounds[len(bounds)-2] != 60 {
		t.Errorf("upstream buckets %v, want 1ms..60s", bounds)
	}
	if n := find(t, fams[MetricDecisionDuration], map[string]string{"category": "node-network-read"}).GetHistogram().GetSampleCount(); n != 2 {
		t.Errorf("decision_duration count %d, want 2", n)
	}

	// A phase change shows on the next scrape.
	f.phase.Store(uint32(routing.PerlOnly))
	ph = scrape(t, f.tel.MetricsHandler())[MetricPhaseInfo].GetMetric()
	if len(ph) != 1 || labels(ph[0])["phase"] != "perl-only" {
		t.Errorf("phase_info after rollback = %v", ph)
	}
}

func TestMetricsDisabledRecordsNothing(t *testing.T) {
	f := newFixture(t, nil)
	f.metrics.Store(false)
	obs := f.tel.Observer()
	d := decision("GET", "/api2/json/nodes/pve1/network", "", "", policy(routing.RustReadOnly))
	obs.Finished(obs.Decided(context.Background(), d), d, outcome.Result{ServedBy: "rust", Status: 200, Duration: time.Millisecond})
	f.tel.RecordReload("ok")
	fams := scrape(t, f.tel.MetricsHandler())
	for _, n := range []string{MetricRequests, MetricUpstreamDuration, MetricDecisionDuration, MetricConfigReloads} {
		fam, ok := fams[n]
		if !ok {
			continue
		}
		for _, m := range fam.GetMetric() {
			// The reload counters exist from the start at 0 (see
			// TestReloadCountersStartAtZero); nothing may be added to them.
			if n == MetricConfigReloads && m.GetCounter().GetValue() == 0 {
				continue
			}
			t.Errorf("%s recorded with metrics_enabled=false: %v", n, m)
		}
	}
	// The alert counters exist from the start, at zero; nothing is added.
	for _, n := range []string{MetricConfigReloads, MetricFallbacks} {
		for _, m := range fams[n].GetMetric() {
			if v := m.GetCounter().GetValue(); v != 0 {
				t.Errorf("%s%v = %v with metrics_enabled=false", n, labels(m), v)
			}
		}
	}
	if st := f.tel.Stats(); st.TotalRequests != 0 {
		t.Errorf("Stats with metrics off: %+v", st)
	}
}

// With metrics, logs and tracing all off the observer must cost nothing:
// metrics_enabled=false is how an operator takes telemetry off the
// request path.
func TestEverythingOffAllocatesNothing(t *testing.T) {
	off := func() bool { return false }
	tel, err := Setup(context.Background(), Options{
		Env: func(string) string { return "" }, Logger: slog.New(slog.DiscardHandler),
		MetricsEnabled: off, LogDecisions: off,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	obs := tel.Observer()
	d := decision("GET", "/api2/json/nodes/pve1/network", "", "", policy(routing.RustReadOnly))
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() {
		obs.Finished(obs.Decided(ctx, d), d, outcome.Result{ServedBy: "rust", Status: 200})
	}); n != 0 {
		t.Errorf("allocs with everything off: %v", n)
	}
}

// Recording metrics with precomputed label sets must not allocate either.
func TestMetricsOnlyAllocatesNothing(t *testing.T) {
	off := func() bool { return false }
	tel, err := Setup(context.Background(), Options{
		Env: func(string) string { return "" }, Logger: slog.New(slog.DiscardHandler), LogDecisions: off,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	obs := tel.Observer()
	d := decision("GET", "/api2/json/nodes/pve1/network", "", "", policy(routing.RustReadOnly))
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() {
		obs.Finished(obs.Decided(ctx, d), d, outcome.Result{ServedBy: "perl", Status: 200, Fallback: true})
	}); n != 0 {
		t.Errorf("allocs with metrics only: %v", n)
	}
}

func attrMap(kvs []attribute.KeyValue) map[string]attribute.Value {
	m := map[string]attribute.Value{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value
	}
	return m
}

func TestDecisionSpan(t *testing.T) {
	f := newFixture(t, nil)
	obs := f.tel.Observer()

	// The span Envoy put in the gRPC metadata, as GRPCServerOptions leaves it in
	// the stream context.
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6}, TraceFlags: trace.FlagsSampled, Remote: true,
	})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), parent)

	d := decision("PUT", "/api2/json/nodes/pve1/network/vmbr1", "bridge", outcome.TypeBody, policy(routing.RustAdvanced))
	sctx := obs.Decided(ctx, d)
	if !trace.SpanContextFromContext(sctx).IsValid() {
		t.Fatal("Decided returned a context without span")
	}
	obs.Finished(sctx, d, outcome.Result{ServedBy: "perl", Attempts: 2, Status: 502, Fallback: true, Duration: 80 * time.Millisecond})

	spans := f.spans.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	s := spans[0]
	if s.Name() != "pve-migration PUT /nodes/{node}/network/{iface}" {
		t.Errorf("name %q", s.Name())
	}
	if s.SpanKind() != trace.SpanKindServer {
		t.Errorf("kind %v", s.SpanKind())
	}
	if s.Parent().SpanID() != parent.SpanID() || s.SpanContext().TraceID() != parent.TraceID() {
		t.Errorf("parent %v / trace %v, want child of %v", s.Parent(), s.SpanContext().TraceID(), parent)
	}
	if !s.StartTime().Equal(t0) || !s.EndTime().Equal(t0.Add(80*time.Millisecond)) {
		t.Errorf("span %v..%v, want %v + 80ms", s.StartTime(), s.EndTime(), t0)
	}
	a := attrMap(s.Attributes())
	want := map[string]any{
		AttrPhase: "rust-advanced", AttrBackend: "rust", AttrReason: "phase",
		AttrCategory: "node-network-advanced-write", AttrMethod: "PUT", AttrRoute: "/nodes/{node}/network/{iface}",
		AttrServedBy: "perl", AttrAttempts: int64(2), AttrFallback: true, AttrStatusCode: int64(502),
		AttrOutcome: "server_error", AttrIfaceType: "bridge", AttrTypeSource: "body",
	}
	for k, v := range want {
		if got, ok := a[k]; !ok || got.AsInterface() != v {
			t.Errorf("attribute %s = %v, want %v", k, got.AsInterface(), v)
		}
	}
	if s.Status().Code != codes.Error || !strings.Contains(s.Status().Description, "502") {
		t.Errorf("status %+v, want error for a 5xx", s.Status())
	}
	ev := s.Events()
	if len(ev) != 1 || ev[0].Name != EventClassified {
		t.Fatalf("events %+v", ev)
	}
	if ea := attrMap(ev[0].Attributes); ea[AttrTypeSource].AsString() != "body" || ea[AttrIfaceType].AsString() != "bridge" {
		t.Errorf("classified event %v", ev[0].Attributes)
	}
	if !ev[0].Time.Equal(t0.Add(150 * time.Microsecond)) {
		t.Errorf("classified at %v", ev[0].Time)
	}
}

func TestSpanOutcomes(t *testing.T) {
	cases := map[string]struct {
		method, path, typ string
		src               outcome.TypeSource
		typeErr           string
		res               outcome.Result
		wantCode          codes.Code
		wantOutcome       string
		wantEvent         bool
	}{
		"rust ok":           {method: "GET", path: "/api2/json/nodes/pve1/network", res: outcome.Result{ServedBy: "rust", Attempts: 1, Status: 200}, wantCode: codes.Unset, wantOutcome: "success"},
		"4xx is not error":  {method: "GET", path: "/api2/json/nodes/pve1/network/x", res: outcome.Result{ServedBy: "rust", Attempts: 1, Status: 404}, wantCode: codes.Unset, wantOutcome: "client_error"},
		"local 504":         {method: "GET", path: "/api2/json/nodes/pve1/network", res: outcome.Result{Status: 504}, wantCode: codes.Error, wantOutcome: "no_response"},
		"lookup classified": {method: "DELETE", path: "/api2/json/nodes/pve1/network/eno1", typ: "eth", src: outcome.TypeLookup, res: outcome.Result{ServedBy: "perl", Status: 200}, wantCode: codes.Unset, wantOutcome: "success", wantEvent: true},
		"absent type":       {method: "POST", path: "/api2/json/nodes/pve1/network", src: outcome.TypeAbsent, typeErr: "body is not JSON", res: outcome.Result{ServedBy: "perl", Status: 200}, wantCode: codes.Unset, wantOutcome: "success", wantEvent: true},
		"query type no event": {method: "POST", path: "/api2/json/nodes/pve1/network", typ: "eth", src: outcome.TypeQuery,
			res: outcome.Result{ServedBy: "perl", Status: 200}, wantCode: codes.Unset, wantOutcome: "success"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, nil)
			obs := f.tel.Observer()
			d := decision(c.method, c.path, c.typ, c.src, policy(routing.RustFull))
			d.TypeError = c.typeErr
			obs.Finished(obs.Decided(context.Background(), d), d, c.res)
			s := f.spans.Ended()[0]
			if s.Status().Code != c.wantCode {
				t.Errorf("status %v, want %v", s.Status(), c.wantCode)
			}
			if got := attrMap(s.Attributes())[AttrOutcome].AsString(); got != c.wantOutcome {
				t.Errorf("outcome %q, want %q", got, c.wantOutcome)
			}
			if got := len(s.Events()) == 1 && s.Events()[0].Name == EventClassified; got != c.wantEvent {
				t.Errorf("classified event %v, want %v", s.Events(), c.wantEvent)
			}
			if c.typeErr != "" && attrMap(s.Events()[0].Attributes)[AttrTypeError].AsString() != c.typeErr {
				t.Errorf("type_error missing from %v", s.Events()[0].Attributes)
			}
		})
	}
}

func TestNotNetworkAndOddMethods(t *testing.T) {
	f := newFixture(t, nil)
	obs := f.tel.Observer()
	for _, m := range []string{"GET", "BREW"} {
		d := decision(m, "/api2/json/nodes/pve1/qemu", "", "", policy(routing.RustFull))
		obs.Finished(obs.Decided(context.Background(), d), d, outcome.Result{ServedBy: "perl", Status: 200})
	}
	spans := f.spans.Ended()
	if spans[0].Name() != "pve-migration GET" || spans[1].Name() != "pve-migration _OTHER" {
		t.Errorf("names %q, %q", spans[0].Name(), spans[1].Name())
	}
	a := attrMap(spans[1].Attributes())
	if a[AttrMethod].AsString() != "_OTHER" || a[AttrMethodOriginal].AsString() != "BREW" {
		t.Errorf("method attributes %v", spans[1].Attributes())
	}
	if _, ok := a[AttrRoute]; ok {
		t.Errorf("not-network span has http.route")
	}
}

func TestAbandonedSpan(t *testing.T) {
	f := newFixture(t, nil)
	obs := f.tel.Observer()
	d := decision("GET", "/api2/json/nodes/pve1/network", "", "", policy(routing.RustFull))
	obs.Abandoned(obs.Decided(context.Background(), d), d, "ext_proc stream cancelled")
	s := f.spans.Ended()
	if len(s) != 1 {
		t.Fatalf("%d spans", len(s))
	}
	ev := s[0].Events()
	if len(ev) != 1 || ev[0].Name != EventAbandoned || attrMap(ev[0].Attributes)[AttrAbandonReason].AsString() != "ext_proc stream cancelled" {
		t.Errorf("events %+v", ev)
	}
	if s[0].Status().Code == codes.Error {
		t.Errorf("abandoned is not an error: %v", s[0].Status())
	}
}

func TestDecisionLog(t *testing.T) {
	f := newFixture(t, nil)
	obs := f.tel.Observer()
	parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{9}, SpanID: trace.SpanID{9}, TraceFlags: trace.FlagsSampled, Remote: true})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), parent)

	d := decision("DELETE", "/api2/json/nodes/pve1/network/bond0", "bond", outcome.TypeLookup, policy(routing.RustBasicWrite))
	obs.Finished(obs.Decided(ctx, d), d, outcome.Result{ServedBy: "perl", Status: 200})
	lines := f.logs.lines(t, "decision")
	if len(lines) != 1 {
		t.Fatalf("%d decision lines:\n%s", len(lines), f.logs)
	}
	l := lines[0]
	want := map[string]string{
		"level": "INFO", "request_id": "req-DELETE", "method": "DELETE", "template": "/nodes/{node}/network/{iface}",
		"backend": "perl", "reason": "phase", "category": "node-network-advanced-write", "phase": "rust-basic-write",
		"iface_type": "bond", "type_source": "lookup", "trace_id": parent.TraceID().String(),
	}
	for k, v := range want {
		if l[k] != v {
			t.Errorf("%s = %v, want %q", k, l[k], v)
		}
	}

	f.logOn.Store(false)
	obs.Finished(obs.Decided(ctx, d), d, outcome.Result{ServedBy: "perl", Status: 200})
	if n := len(f.logs.lines(t, "decision")); n != 1 {
		t.Errorf("log_migration_decisions=false still logged (%d lines)", n)
	}
}

func TestStatsFromTheSameInstruments(t *testing.T) {
	f := newFixture(t, nil)
	obs := f.tel.Observer()
	ctx := context.Background()
	rust := decision("GET", "/api2/json/nodes/pve1/network", "", "", policy(routing.RustReadOnly))
	perl := decision("GET", "/api2/json/version", "", "", policy(routing.RustReadOnly))
	run := func(d *outcome.Decision, r outcome.Result, n int) {
		for range n {
			obs.Finished(obs.Decided(ctx, d), d, r)
		}
	}
	run(rust, outcome.Result{ServedBy: "rust", Status: 200, Duration: 4 * time.Millisecond}, 6)
	run(rust, outcome.Result{ServedBy: "rust", Status: 404, Duration: 4 * time.Millisecond}, 1)
	run(rust, outcome.Result{ServedBy: "perl", Status: 200, Fallback: true, Duration: 200 * time.Millisecond}, 2)
	run(rust, outcome.Result{Status: 504, Duration: 30 * time.Second}, 1)
	run(perl, outcome.Result{ServedBy: "perl", Status: 200, Duration: 20 * time.Millisecond}, 7)
	run(perl, outcome.Result{ServedBy: "perl", Status: 500, Duration: 20 * time.Millisecond}, 1)
	obs.Abandoned(obs.Decided(ctx, rust), rust, "client gone")

	st := f.tel.Stats()
	if st.TotalRequests != 19 {
		t.Errorf("TotalRequests %d, want 19", st.TotalRequests)
	}
	if st.RustDecisions != 10 || st.RustSuccesses != 7 || st.Fallbacks != 2 {
		t.Errorf("rust decisions/successes/fallbacks = %d/%d/%d, want 10/7/2", st.RustDecisions, st.RustSuccesses, st.Fallbacks)
	}
	if st.RustSuccessRate != 0.7 || st.FallbackRate != 0.2 {
		t.Errorf("rates %v %v", st.RustSuccessRate, st.FallbackRate)
	}
	r, p, n := st.ByBackend["rust"], st.ByBackend["perl"], st.ByBackend["none"]
	if r.Requests != 7 || r.Errors != 0 || p.Requests != 10 || p.Errors != 1 || n.Requests != 1 || n.Errors != 1 {
		t.Errorf("by backend %+v", st.ByBackend)
	}
	if p.ErrorRate != 0.1 || n.ErrorRate != 1 {
		t.Errorf("error rates perl %v none %v", p.ErrorRate, n.ErrorRate)
	}
	if d := r.AvgSeconds - 0.004; d > 1e-9 || d < -1e-9 {
		t.Errorf("rust avg %v", r.AvgSeconds)
	}
	// All rust samples are 4 ms, in the (2.5ms, 5ms] bucket.
	if r.P50Seconds <= 0.0025 || r.P50Seconds > 0.005 || r.P99Seconds <= 0.0025 || r.P99Seconds > 0.005 {
		t.Errorf("rust p50 %v p99 %v", r.P50Seconds, r.P99Seconds)
	}
	// Perl: 8 samples at 20 ms, 2 at 200 ms: p50 in (10,25] ms, p99 in (100,250] ms.
	if p.P50Seconds <= 0.01 || p.P50Seconds > 0.025 || p.P99Seconds <= 0.1 || p.P99Seconds > 0.25 {
		t.Errorf("perl p50 %v p99 %v", p.P50Seconds, p.P99Seconds)
	}

	// The figures are the scrape's: total requests agree with /metrics.
	var sum float64
	for _, m := range scrape(t, f.tel.MetricsHandler())[MetricRequests].GetMetric() {
		sum += m.GetCounter().GetValue()
	}
	if uint64(sum) != st.TotalRequests {
		t.Errorf("/metrics says %v requests, Stats %d", sum, st.TotalRequests)
	}
}

func TestQuantile(t *testing.T) {
	b := func(ub float64, c uint64) *dto.Bucket { return &dto.Bucket{UpperBound: &ub, CumulativeCount: &c} }
	count := uint64(10)
	h := &dto.Histogram{SampleCount: &count, Bucket: []*dto.Bucket{b(1, 0), b(2, 5), b(4, 10), b(posInf(), 10)}}
	for q, want := range map[float64]float64{0.5: 2, 0.25: 1.5, 0.75: 3, 1: 4} {
		if got := quantile(q, h); got != want {
			t.Errorf("q%v = %v, want %v", q, got, want)
		}
	}
	over := uint64(4)
	h = &dto.Histogram{SampleCount: &over, Bucket: []*dto.Bucket{b(1, 0), b(posInf(), 4)}}
	if got := quantile(0.5, h); got != 1 {
		t.Errorf("all in +Inf: %v, want highest bound 1", got)
	}
}

func posInf() float64 { return float64(1) / zero }

var zero = 0.0

func TestConcurrentUse(t *testing.T) {
	f := newFixture(t, nil)
	f.logOn.Store(false)
	obs := f.tel.Observer()
	d := decision("GET", "/api2/json/nodes/pve1/network", "", "", policy(routing.RustReadOnly))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				obs.Finished(obs.Decided(context.Background(), d), d, outcome.Result{ServedBy: "rust", Status: 200})
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			f.tel.Stats()
			scrape(t, f.tel.MetricsHandler())
			f.tel.RecordReload("unchanged")
		}
	})
	wg.Wait()
	if st := f.tel.Stats(); st.TotalRequests != 1600 {
		t.Errorf("TotalRequests %d, want 1600", st.TotalRequests)
	}
}

var _ io.Writer = (*syncBuffer)(nil)
