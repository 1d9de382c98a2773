// Package shadow runs the shadow comparison: after a GET in a compared
// category has been answered, it asks the backend that did not serve it the
// same GET with the caller's credentials, asks the serving backend twice more
// (one answer stands for the client's, which the filter never sees; the
// other calibrates noise), and hands the three answers to internal/compare.
//
// The client's answer never waits for it: jobs go into a bounded queue
// that a bounded pool drains, and a job that finds the queue full is
// dropped and counted as skipped. Credentials live only in the job while
// it runs; they are never logged, traced, stored or reported. Shadow
// requests carry x-pve-shadow: 1 and go straight to the backends, not
// through the data plane, so they never count as served traffic.
package shadow

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/pve-migration/router/internal/compare"
	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/routing"
)

// HeaderShadow marks a shadow request, so backends and their logs can tell
// it from client traffic.
const HeaderShadow = "x-pve-shadow"

// EventCompare is the span event that carries a job's result.
const EventCompare = "pve.migration.compare"

// DefaultQueue is the number of jobs that may wait for a free slot.
const DefaultQueue = 64

// nodeBuckets is the number of write-tracking buckets.
const nodeBuckets = 64

// bucket is node's write-tracking bucket; 0 is the cluster's alone.
func bucket(node string) int {
	if node == "" {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(node))
	return 1 + int(h.Sum32()%(nodeBuckets-1))
}

// Job is one served GET to compare. It holds the caller's credentials
// until it has run; nothing else about it is secret.
type Job struct {
	// Category is the request's category (a read category).
	Category routing.Category
	// Template is the catalogue template without format prefix.
	Template string
	// Path is the normalised request path (/api2/json/...), RawQuery its
	// query string as the client sent it.
	Path     string
	RawQuery string
	// ServedBy is the backend that answered the client: "perl" or "rust".
	ServedBy string
	// Node is the {node} the path names, "" for cluster paths.
	Node string
	// Authorization and Cookie are the caller's credentials, sent with
	// the shadow requests and dropped with the job.
	Authorization string
	Cookie        string
	// Trace is the request's span context; the job's span is its child.
	Trace trace.SpanContext

	gen uint64 // write generation when submitted
}

// String never shows the credentials, whatever prints a Job.
func (j Job) String() string {
	return fmt.Sprintf("shadow job GET %s (served by %s)", j.Path, j.ServedBy)
}

// Checker is the schema-conformance hook: it sees each backend's answer of
// a job (backend "perl" or "rust"), e.g. to check it against PVE's API
// schema. It must be safe for concurrent use.
type Checker func(template, method, backend string, status int, data []byte)

// Options configures a Worker.
type Options struct {
	// Config returns the snapshot in force; its Compare table decides
	// sampling, limits and ignores at the time of each job.
	Config func() *config.Snapshot
	// PerlURL and RustURL are the backends' base URLs. An empty PerlURL
	// means the snapshot's perl_api_base_url. With either unknown, no job
	// runs (Sample says no).
	PerlURL, RustURL string
	// Client sends the shadow requests; nil means a plain http.Client.
	// PerlClient and RustClient, when set, replace it for one backend (a
	// certificate pinned for that backend only).
	Client, PerlClient, RustClient *http.Client
	// Report receives every verdict; nil means a new one.
	Report *compare.Report
	// Check, when set, sees both backends' answers of every job.
	Check Checker
	// Tracer starts the job's span; nil means none.
	Tracer trace.Tracer
	// Logger receives job failures (never credentials); nil: slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Queue is the queue length; 0 means DefaultQueue.
	Queue int
	// Rand returns a number in [0, 100) for sampling; nil means math/rand.
	Rand func() float64
	// Node is this router's node name: a GET whose path names another node
	// (pveproxy forwards it there, where that node's router decides) is not
	// shadowed. "" treats every node as this one; "localhost" always is.
	Node string
	// Delay holds each job back this long after its answer was served, so
	// the shadow requests do not compete with the client's own response
	// (still streaming its body when the job is queued); 0 means
	// DefaultDelay, negative none.
	Delay time.Duration
}

// DefaultDelay is Options.Delay's default.
const DefaultDelay = 2 * time.Millisecond

// Worker owns the queue and the pool. Its methods are safe for concurrent
// use; Submit, Sample and the write notes never block.
type Worker struct {
	o      Options
	queue  chan Job
	report *compare.Report

	mu       sync.Mutex
	cond     *sync.Cond
	inflight int
	// Write generations and writes in flight per node, in a fixed number
	// of buckets by a hash of the node name (node names come from request
	// paths, so a map could be grown by any client; two nodes sharing a
	// bucket only cost a few extra skips). Bucket 0 is the cluster ("").
	gens   [nodeBuckets]uint64
	writes [nodeBuckets]map[uint64]struct{} // writes in flight, by id
	lastID uint64

	submitted, dropped, done atomic.Uint64
}

// New returns a Worker; Run starts its pool.
func New(o Options) *Worker {
	if o.Config == nil {
		o.Config = func() *config.Snapshot { return nil }
	}
	if o.Client == nil {
		o.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if o.PerlClient == nil {
		o.PerlClient = o.Client
	}
	if o.RustClient == nil {
		o.RustClient = o.Client
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
	if o.Rand == nil {
		o.Rand = func() float64 { return rand.Float64() * 100 }
	}
	if o.Delay == 0 {
		o.Delay = DefaultDelay
	}
	if o.Tracer == nil {
		o.Tracer = noop.NewTracerProvider().Tracer("")
	}
	w := &Worker{o: o, queue: make(chan Job, o.Queue), report: o.Report}
	if w.report == nil {
		w.report = compare.NewReport(o.Now())
	}
	w.cond = sync.NewCond(&w.mu)
	return w
}

// Report is the report the worker fills.
func (w *Worker) Report() *compare.Report { return w.report }

// Stats are the worker's counters, for tests and the admin page.
type Stats struct {
	Submitted, Dropped, Done uint64
	Inflight, Queued         int
}

// Stats returns the counters.
func (w *Worker) Stats() Stats {
	w.mu.Lock()
	in := w.inflight
	w.mu.Unlock()
	return Stats{Submitted: w.submitted.Load(), Dropped: w.dropped.Load(), Done: w.done.Load(), Inflight: in, Queued: len(w.queue)}
}

// Sample decides, at request headers, whether a GET of category c for node
// ("" for cluster paths) is shadowed: compare enabled, c listed, the node
// this one, both backends known, and the dice within sample_percent. Only
// then does the caller keep credentials.
func (w *Worker) Sample(c routing.Category, node string) bool {
	s := w.o.Config()
	if s == nil || !s.Compare.Wants(c) || w.o.RustURL == "" || (w.o.PerlURL == "" && s.PerlAPIBaseURL == "") {
		return false
	}
	if w.o.Node != "" && node != "" && node != "localhost" && node != w.o.Node {
		return false
	}
	p := s.Compare.SamplePercent
	return p >= 100 || (p > 0 && w.o.Rand() < p)
}

// WriteStarted notes a write to node ("" for a cluster-wide one) that the
// router has routed, and returns its id for WriteDone. A job that runs
// while it is in flight waits for its end: if it may have been applied,
// the job compared two different states and is skipped.
func (w *Worker) WriteStarted(node string) uint64 {
	b := w.bucket(node)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lastID++
	if w.writes[b] == nil {
		w.writes[b] = map[uint64]struct{}{}
	}
	w.writes[b][w.lastID] = struct{}{}
	return w.lastID
}

// WriteDone notes that write id's answer came back with status (0: it
// was abandoned, so nobody knows). A write the backend refused by its
// authentication (401, 403) changed nothing: anyone can send one, and a
// stream of them must not stop every comparison (the gate would then
// never see a mismatch). Any other write may have changed the state.
func (w *Worker) WriteDone(node string, id uint64, status int) {
	b := w.bucket(node)
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.writes[b], id)
	if status != http.StatusUnauthorized && status != http.StatusForbidden {
		w.gens[b]++
	}
}

// bucket is node's write-tracking bucket, with "localhost" standing for
// this router's node: both name the same interfaces file.
func (w *Worker) bucket(node string) int {
	if node == "localhost" && w.o.Node != "" {
		node = w.o.Node
	}
	return bucket(node)
}

// stateGen is the write generation a job on node depends on. Caller holds
// mu.
func (w *Worker) stateGen(node string) uint64 {
	g := w.gens[0]
	if b := w.bucket(node); b != 0 {
		g += w.gens[b]
	}
	return g
}

// inFlight lists the writes in flight that a job on node depends on.
// Caller holds mu.
func (w *Worker) inFlight(node string) []uint64 {
	var ids []uint64
	for id := range w.writes[0] {
		ids = append(ids, id)
	}
	if b := w.bucket(node); b != 0 {
		for id := range w.writes[b] {
			ids = append(ids, id)
		}
	}
	return ids
}

// anyInFlight reports whether one of ids is still in flight. Caller holds
// mu.
func (w *Worker) anyInFlight(node string, ids []uint64) bool {
	b := w.bucket(node)
	for _, id := range ids {
		if _, ok := w.writes[0][id]; ok {
			return true
		}
		if _, ok := w.writes[b][id]; ok {
			return true
		}
	}
	return false
}

// writesSettled waits until the writes in flight when the job's answers
// were all in have ended (they may have been applied before an answer),
// at most timeout. It reports false when they have not.
func (w *Worker) writesSettled(ctx context.Context, node string, timeout time.Duration) bool {
	w.mu.Lock()
	ids := w.inFlight(node)
	w.mu.Unlock()
	if len(ids) == 0 {
		return true
	}
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		w.mu.Lock()
		busy := w.anyInFlight(node, ids)
		w.mu.Unlock()
		if !busy {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// Submit queues a job without blocking. A full queue drops it and counts
// it skipped ("queue full").
func (w *Worker) Submit(j Job) {
	w.submitted.Add(1)
	w.mu.Lock()
	j.gen = w.stateGen(j.Node)
	w.mu.Unlock()
	select {
	case w.queue <- j:
	default:
		w.dropped.Add(1)
		w.finish(j, compare.Verdict{Result: compare.Skipped, Reason: "queue full"})
	}
}

// Run drains the queue with at most max_inflight jobs at once (read from
// the config for every job, so a reload resizes the pool) until ctx ends.
func (w *Worker) Run(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() {
		w.mu.Lock()
		w.cond.Broadcast()
		w.mu.Unlock()
	})
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		var j Job
		select {
		case <-ctx.Done():
			return
		case j = <-w.queue:
		}
		w.mu.Lock()
		for w.inflight >= w.maxInflight() && ctx.Err() == nil {
			w.cond.Wait()
		}
		if ctx.Err() != nil {
			w.mu.Unlock()
			return
		}
		w.inflight++
		w.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx, j)
			w.mu.Lock()
			w.inflight--
			w.cond.Broadcast()
			w.mu.Unlock()
		}()
	}
}

func (w *Worker) maxInflight() int {
	if s := w.o.Config(); s != nil && s.Compare.MaxInflight > 0 {
		return s.Compare.MaxInflight
	}
	return 1
}

// run does one job: the serving backend, the other one and the serving one
// again, one after the other, then the verdict.
func (w *Worker) run(ctx context.Context, j Job) {
	if w.o.Delay > 0 {
		t := time.NewTimer(w.o.Delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
	s := w.o.Config()
	if s == nil {
		w.finish(j, compare.Verdict{Result: compare.Skipped, Reason: "no config"})
		return
	}
	c := s.Compare
	perlURL := w.o.PerlURL
	if perlURL == "" {
		perlURL = s.PerlAPIBaseURL
	}
	perl, rust := target{perlURL, w.o.PerlClient}, target{w.o.RustURL, w.o.RustClient}
	other, otherT, servingT := "rust", rust, perl
	if j.ServedBy == "rust" {
		other, otherT, servingT = "perl", perl, rust
	}
	// The client's answer was never seen (Envoy sends the filter no
	// response body), so the serving backend is asked twice: one answer
	// stands for the client's, the other calibrates noise against it. The
	// other backend is asked in between, so both serving answers bracket
	// it in time. One after the other, not in parallel: a burst of three
	// requests would compete with clients' requests for the CPU.
	first, fErr := w.get(ctx, servingT, j, c)
	oAns, oErr := w.get(ctx, otherT, j, c)
	again, aErr := w.get(ctx, servingT, j, c)
	if fErr == nil {
		fErr = aErr
	}

	settled := w.writesSettled(ctx, j.Node, c.Timeout)
	w.mu.Lock()
	g := w.stateGen(j.Node)
	w.mu.Unlock()
	switch {
	case !settled || g != j.gen:
		w.finish(j, compare.Verdict{Result: compare.Skipped, Reason: "write during job"})
		return
	case errors.Is(oErr, errTooLarge) || errors.Is(fErr, errTooLarge):
		w.finish(j, compare.Verdict{Result: compare.Skipped, Reason: "answer over max_body_bytes"})
		return
	case oErr != nil:
		w.finish(j, compare.Verdict{Result: compare.Error, Reason: other + ": " + reason(oErr)})
		return
	case fErr != nil:
		w.finish(j, compare.Verdict{Result: compare.Error, Reason: j.ServedBy + ": " + reason(fErr)})
		return
	}
	if w.o.Check != nil {
		w.o.Check(j.Template, "GET", other, oAns.Status, oAns.Body)
		w.o.Check(j.Template, "GET", j.ServedBy, first.Status, first.Body)
	}
	in := compare.Input{
		Extjs:    strings.HasPrefix(j.Path, "/api2/extjs/"),
		Again:    again,
		ServedBy: j.ServedBy,
		Ignore:   c.Ignore[j.Template],
		Learned:  w.report.Learned(j.Template),
	}
	if j.ServedBy == "rust" {
		in.Perl, in.Rust = oAns, first
	} else {
		in.Perl, in.Rust = first, oAns
	}
	w.finish(j, compare.Compare(in))
}

// finish records a verdict and emits the span event.
func (w *Worker) finish(j Job, v compare.Verdict) {
	w.report.Record(j.Category.String(), j.Template, "GET", v, w.o.Now())
	w.done.Add(1)
	if j.Trace.IsValid() {
		ctx := trace.ContextWithRemoteSpanContext(context.Background(), j.Trace)
		_, span := w.o.Tracer.Start(ctx, "compare "+j.Template, trace.WithSpanKind(trace.SpanKindInternal))
		if span.IsRecording() {
			attrs := []attribute.KeyValue{
				attribute.String("pve.migration.compare.result", string(v.Result)),
				attribute.String("http.route", j.Template),
				attribute.String("pve.migration.served_by", j.ServedBy),
				attribute.Int("pve.migration.compare.fields", len(v.Fields)),
			}
			if v.Reason != "" {
				attrs = append(attrs, attribute.String("pve.migration.compare.reason", v.Reason))
			}
			span.AddEvent(EventCompare, trace.WithAttributes(attrs...))
		}
		span.End()
	}
	if v.Result == compare.Error {
		w.o.Logger.Debug("shadow comparison failed", "template", j.Template, "reason", v.Reason)
	}
}

var errTooLarge = errors.New("answer over max_body_bytes")

// target is a backend: its base URL and the client that reaches it.
type target struct {
	base   string
	client *http.Client
}

// get sends the shadow GET to t. The request carries only what the
// backend needs: the credentials and x-pve-shadow.
func (w *Worker) get(ctx context.Context, t target, j Job, c config.Compare) (compare.Answer, error) {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	u := strings.TrimRight(t.base, "/") + j.Path
	if j.RawQuery != "" {
		u += "?" + j.RawQuery
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return compare.Answer{}, errors.New("bad shadow URL")
	}
	req.Header.Set(HeaderShadow, "1")
	req.Header.Set("Accept", "application/json")
	if j.Authorization != "" {
		req.Header.Set("Authorization", j.Authorization)
	}
	if j.Cookie != "" {
		req.Header.Set("Cookie", j.Cookie)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return compare.Answer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.MaxBodyBytes+1))
	if err != nil {
		return compare.Answer{}, err
	}
	if int64(len(body)) > c.MaxBodyBytes {
		return compare.Answer{}, errTooLarge
	}
	return compare.Answer{Status: resp.StatusCode, Body: body}, nil
}

// reason turns a transport error into a short, credential-free reason.
func reason(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case strings.Contains(err.Error(), "connection refused"):
		return "connection refused"
	case strings.Contains(err.Error(), "x509:") || strings.Contains(err.Error(), "tls:"):
		return "TLS verification failed (--upstream-ca)"
	case strings.Contains(err.Error(), "connection reset"), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection reset"
	}
	return "request failed"
}
