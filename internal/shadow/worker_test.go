package shadow

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/pve-migration/router/internal/compare"
	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/routing"
)

// blockingBackend answers {"data":1} once release is closed, and records
// the headers of every request.
type blockingBackend struct {
	*httptest.Server
	release chan struct{}
	mu      sync.Mutex
	headers []http.Header
	arrived chan struct{}
}

func newBlocking(t *testing.T, block bool) *blockingBackend {
	b := &blockingBackend{release: make(chan struct{}), arrived: make(chan struct{}, 16)}
	if !block {
		close(b.release)
	}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.headers = append(b.headers, r.Header.Clone())
		b.mu.Unlock()
		b.arrived <- struct{}{}
		<-b.release
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"data":1}`))
	}))
	t.Cleanup(b.Close)
	return b
}

func snapWith(t *testing.T, cmp string) func() *config.Snapshot {
	s, err := config.Parse("t.conf", []byte("[compare]\n"+cmp), nil)
	if err != nil {
		t.Fatal(err)
	}
	return func() *config.Snapshot { return s }
}

func waitDone(t *testing.T, w *Worker, n uint64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for w.Stats().Done < n {
		if time.Now().After(deadline) {
			t.Fatalf("jobs not done: %+v", w.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func job() Job {
	return Job{Category: routing.NodeNetworkRead, Template: "/nodes/{node}/network", Path: "/api2/json/nodes/pve1/network",
		ServedBy: "perl", Node: "pve1", Authorization: "PVEAPIToken=u@pam!t=s3cr3t", Cookie: "PVEAuthCookie=t1ck3t"}
}

// TestWriteDuringJobSkips: a write to the job's node (or the cluster)
// while the job runs makes it skipped; one to another node does not.
func TestWriteDuringJobSkips(t *testing.T) {
	tests := []struct {
		name, node string
		want       compare.Result
	}{
		{"same node", "pve1", compare.Skipped},
		{"cluster", "", compare.Skipped},
		{"other node", "pve2", compare.Match},
		// localhost is this node (pveproxy does not forward it): a write
		// through either name changes what a read through the other sees.
		{"same node as localhost", "localhost", compare.Skipped},
		{"read as localhost, write by name", "pve1", compare.Skipped},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			perl, rust := newBlocking(t, false), newBlocking(t, true)
			w := New(Options{Config: snapWith(t, "enabled = true\nsample_percent = 100"), PerlURL: perl.URL, RustURL: rust.URL, Node: "pve1"})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go w.Run(ctx)
			j := job()
			if strings.HasPrefix(tt.name, "read as localhost") {
				j.Node, j.Path = "localhost", "/api2/json/nodes/localhost/network"
			}
			w.Submit(j)
			<-rust.arrived // the job is running
			w.WriteDone(tt.node, w.WriteStarted(tt.node), 200)
			close(rust.release)
			waitDone(t, w, 1)
			s := w.Report().Summary()
			ts := s.Templates[0]
			got := map[compare.Result]uint64{compare.Match: ts.Matched, compare.Skipped: ts.Skipped}
			if got[tt.want] != 1 {
				t.Errorf("template %+v, want one %s", ts, tt.want)
			}
			if tt.want == compare.Skipped && ts.Reasons["write during job"] != 1 {
				t.Errorf("reasons %v", ts.Reasons)
			}
		})
	}
	// A write in flight when the job starts or ends may be applied before
	// one of its answers: the job waits for its end and is skipped if it
	// may have changed the state. One the backend refused by
	// authentication changed nothing, so a flood of them (anyone can send
	// one) cannot stop every comparison and blind the gate.
	for _, wt := range []struct {
		name   string
		status int
		want   compare.Result
	}{
		{"write in flight, applied", 200, compare.Skipped},
		{"write in flight, abandoned", 0, compare.Skipped},
		{"write in flight, refused 401", 401, compare.Match},
		{"write in flight, refused 403", 403, compare.Match},
	} {
		t.Run(wt.name, func(t *testing.T) {
			perl, rust := newBlocking(t, false), newBlocking(t, false)
			w := New(Options{Config: snapWith(t, "enabled = true"), PerlURL: perl.URL, RustURL: rust.URL, Node: "pve1"})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go w.Run(ctx)
			id := w.WriteStarted("pve1")
			w.Submit(job())
			// All three answers are in; the job waits for the write.
			for i := 0; i < 3; i++ {
				select {
				case <-perl.arrived:
				case <-rust.arrived:
				case <-time.After(20 * time.Second):
					t.Fatal("shadow requests did not arrive")
				}
			}
			w.WriteDone("pve1", id, wt.status)
			waitDone(t, w, 1)
			ts := w.Report().Summary().Templates[0]
			got := map[compare.Result]uint64{compare.Match: ts.Matched, compare.Skipped: ts.Skipped}
			if got[wt.want] != 1 {
				t.Errorf("template %+v, want one %s", ts, wt.want)
			}
		})
	}
	t.Run("flood of refused writes", func(t *testing.T) {
		perl, rust := newBlocking(t, false), newBlocking(t, false)
		w := New(Options{Config: snapWith(t, "enabled = true"), PerlURL: perl.URL, RustURL: rust.URL, Node: "pve1"})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go w.Run(ctx)
		stop := make(chan struct{})
		flooded := make(chan struct{})
		go func() {
			defer close(flooded)
			for {
				select {
				case <-stop:
					return
				default:
				}
				id := w.WriteStarted("pve1")
				time.Sleep(time.Millisecond)
				w.WriteDone("pve1", id, 401)
			}
		}()
		for i := 0; i < 5; i++ {
			w.Submit(job())
		}
		waitDone(t, w, 5)
		close(stop)
		<-flooded
		if ts := w.Report().Summary().Templates[0]; ts.Matched != 5 {
			t.Errorf("under a flood of 401 writes: %+v, want 5 matched", ts)
		}
	})
}

// TestShadowRequestsCarryCredentialsOnly: the shadow GETs carry the
// caller's credentials and x-pve-shadow, and nothing about a job shows
// them.
func TestShadowRequestsCarryCredentialsOnly(t *testing.T) {
	perl, rust := newBlocking(t, false), newBlocking(t, false)
	var checked []string
	var mu sync.Mutex
	w := New(Options{Config: snapWith(t, "enabled = true"), PerlURL: perl.URL, RustURL: rust.URL,
		Check: func(tmpl, method, backend string, status int, data []byte) {
			mu.Lock()
			checked = append(checked, backend+" "+method+" "+tmpl+" "+string(data))
			mu.Unlock()
		}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	j := job()
	j.RawQuery = "type=bridge"
	w.Submit(j)
	waitDone(t, w, 1)
	if len(perl.headers) != 2 || len(rust.headers) != 1 {
		t.Fatalf("perl asked %d times, rust %d; want 2 and 1", len(perl.headers), len(rust.headers))
	}
	for _, h := range append(perl.headers, rust.headers...) {
		if h.Get("Authorization") != j.Authorization || h.Get("Cookie") != j.Cookie || h.Get(HeaderShadow) != "1" {
			t.Errorf("shadow request headers %v", h)
		}
	}
	if s := j.String() + strings.Join(checked, ""); strings.Contains(s, "s3cr3t") || strings.Contains(s, "t1ck3t") {
		t.Errorf("credentials leak: %s", s)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(checked)
	if want := []string{`perl GET /nodes/{node}/network {"data":1}`, `rust GET /nodes/{node}/network {"data":1}`}; !slices.Equal(checked, want) {
		t.Errorf("checker saw %q, want both backends' answers", checked)
	}
}

// TestSample: sampling follows enabled, categories and sample_percent.
func TestSample(t *testing.T) {
	tests := []struct {
		name, cmp string
		roll      float64
		cat       routing.Category
		rust      string
		want      bool
		node      string // the request's; this router is pve1
	}{
		{"other node", "enabled = true\nsample_percent = 100", 0, routing.NodeNetworkRead, "http://r", false, "pve2"},
		{"this node", "enabled = true\nsample_percent = 100", 0, routing.NodeNetworkRead, "http://r", true, "pve1"},
		{"localhost", "enabled = true\nsample_percent = 100", 0, routing.NodeNetworkRead, "http://r", true, "localhost"},
		{"cluster path", "enabled = true\nsample_percent = 100", 0, routing.SDNRead, "http://r", true, ""},
		{"off", "enabled = false\nsample_percent = 100", 0, routing.NodeNetworkRead, "http://r", false, "pve1"},
		{"in", "enabled = true\nsample_percent = 10", 9.9, routing.NodeNetworkRead, "http://r", true, "pve1"},
		{"out", "enabled = true\nsample_percent = 10", 10, routing.NodeNetworkRead, "http://r", false, "pve1"},
		{"zero", "enabled = true\nsample_percent = 0", 0, routing.NodeNetworkRead, "http://r", false, "pve1"},
		{"unlisted", "enabled = true\nsample_percent = 100\ncategories = [\"sdn-read\"]", 0, routing.NodeNetworkRead, "http://r", false, "pve1"},
		{"write category", "enabled = true\nsample_percent = 100", 0, routing.NodeNetworkBasicWrite, "http://r", false, "pve1"},
		{"no rust url", "enabled = true\nsample_percent = 100", 0, routing.NodeNetworkRead, "", false, "pve1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := New(Options{Config: snapWith(t, tt.cmp), RustURL: tt.rust, Node: "pve1", Rand: func() float64 { return tt.roll }})
			if got := w.Sample(tt.cat, tt.node); got != tt.want {
				t.Errorf("Sample = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestSpanEvent: a job whose request was traced gets a span, child of the
// request's, with a pve.migration.compare event carrying the result and
// no credential.
func TestSpanEvent(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	perl, rust := newBlocking(t, false), newBlocking(t, false)
	w := New(Options{Config: snapWith(t, "enabled = true"), PerlURL: perl.URL, RustURL: rust.URL, Tracer: tp.Tracer("t")})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	_, parent := tp.Tracer("t").Start(context.Background(), "request")
	j := job()
	j.Trace = parent.SpanContext()
	parent.End()
	w.Submit(j)
	waitDone(t, w, 1)
	var found bool
	for _, s := range rec.Ended() {
		if s.Name() == "request" {
			continue
		}
		if s.Parent().SpanID() != j.Trace.SpanID() || s.SpanContext().TraceID() != j.Trace.TraceID() {
			t.Errorf("compare span not a child of the request's")
		}
		for _, ev := range s.Events() {
			if ev.Name != EventCompare {
				continue
			}
			found = true
			for _, a := range ev.Attributes {
				if a.Key == "pve.migration.compare.result" && a.Value.AsString() != "match" {
					t.Errorf("result %s", a.Value.AsString())
				}
				if strings.Contains(a.Value.String(), "s3cr3t") || strings.Contains(a.Value.String(), "t1ck3t") {
					t.Errorf("credential in span: %v", a)
				}
			}
		}
	}
	if !found {
		t.Error("no pve.migration.compare event")
	}
}

// TestTLSFailureHasAReason: a backend whose certificate the shadow client
// does not trust is an error with a reason an operator can act on.
func TestTLSFailureHasAReason(t *testing.T) {
	perl := newBlocking(t, false)
	rust := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{"data":1}`)) }))
	defer rust.Close()
	w := New(Options{Config: snapWith(t, "enabled = true"), PerlURL: perl.URL, RustURL: rust.URL})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	w.Submit(job())
	waitDone(t, w, 1)
	if ts := w.Report().Summary().Templates[0]; ts.Errors != 1 || ts.Reasons["rust: TLS verification failed (--upstream-ca)"] != 1 {
		t.Errorf("template %+v", ts)
	}
}
