// Package jaegertest runs a real Jaeger (v2, the OpenTelemetry-collector
// based cmd/jaeger) on free loopback ports for end-to-end trace tests, and
// reads traces back through its HTTP query API. A test that only checks
// what the SDK recorded cannot see exporter, propagation or attribute-type
// mistakes that Jaeger would; this one does, without a container runtime.
//
// The binary comes from scripts/jaeger.sh build; tests find it through the
// JAEGER_BIN environment variable and skip when it is unset.
package jaegertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnvBinary names the variable holding the Jaeger binary's path.
const EnvBinary = "JAEGER_BIN"

// Binary returns $JAEGER_BIN, or skips the test when it is unset: the
// Jaeger binary takes minutes to build, so ordinary `go test` runs do not
// require it.
func Binary(t testing.TB) string {
	t.Helper()
	bin := os.Getenv(EnvBinary)
	if bin == "" {
		t.Skipf("%s not set; run scripts/jaeger.sh test (or make test-jaeger)", EnvBinary)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s: %v", EnvBinary, err)
	}
	return bin
}

// Jaeger is a running Jaeger with memory storage.
type Jaeger struct {
	// OTLPGRPC is the host:port of the OTLP/gRPC receiver.
	OTLPGRPC string
	// OTLPHTTP is the host:port of the OTLP/HTTP receiver.
	OTLPHTTP string
	// QueryURL is the base URL of the query service's HTTP API and UI.
	QueryURL string

	cmd    *exec.Cmd
	done   chan struct{}
	output *lockedBuffer
}

// config is a minimal Jaeger v2 configuration: OTLP in, memory storage,
// the query extension out. No batch processor, so spans are queryable as
// soon as they arrive; collector self-telemetry off, so nothing listens on
// the fixed port 8888; query self-tracing off, so Jaeger's own spans do
// not mix with the test's.
const config = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 10000
  jaeger_query:
    storage:
      traces: mem
    enable_tracing: false
    http:
      endpoint: %s
    grpc:
      endpoint: %s
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
      http:
        endpoint: %s
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`

// Start runs Jaeger and waits until its query API answers. It is stopped
// (and its output shown, if the test failed) by t.Cleanup.
func Start(t testing.TB, bin string) *Jaeger {
	t.Helper()
	var lastErr error
	// Free ports are found by binding and releasing them; another process
	// may take one in between, so a failed start is retried on new ports.
	for range 3 {
		j, err := start(t, bin)
		if err == nil {
			return j
		}
		lastErr = err
	}
	t.Fatalf("jaeger did not start: %v", lastErr)
	return nil
}

func start(t testing.TB, bin string) (*Jaeger, error) {
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	j := &Jaeger{
		OTLPGRPC: ports[0], OTLPHTTP: ports[1], QueryURL: "http://" + ports[2],
		done: make(chan struct{}), output: &lockedBuffer{},
	}
	cfg := filepath.Join(t.TempDir(), "jaeger.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, config, ports[2], ports[3], ports[0], ports[1]), 0o600); err != nil {
		return nil, err
	}
	j.cmd = exec.Command(bin, "--config", cfg)
	j.cmd.Stdout, j.cmd.Stderr = j.output, j.output
	// Jaeger must not pick up the developer's OTEL_* settings.
	j.cmd.Env = cleanEnv()
	if err := j.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = j.cmd.Wait(); close(j.done) }()

	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-j.done:
			return nil, fmt.Errorf("jaeger exited: %s", j.output.String())
		default:
		}
		resp, err := http.Get(j.QueryURL + "/api/services")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			j.stop()
			return nil, fmt.Errorf("query API not ready after 20s: %s", j.output.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() {
		j.stop()
		if t.Failed() {
			t.Logf("jaeger output:\n%s", j.output.String())
		}
	})
	return j, nil
}

// stop ends Jaeger: SIGINT for a clean collector shutdown, then a kill if
// it has not exited after 5 s, so a test never leaks the process.
func (j *Jaeger) stop() {
	_ = j.cmd.Process.Signal(os.Interrupt)
	select {
	case <-j.done:
	case <-time.After(5 * time.Second):
		_ = j.cmd.Process.Kill()
		<-j.done
	}
}

func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") {
			out = append(out, kv)
		}
	}
	return out
}

func freePorts(n int) ([]string, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var out []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	return out, nil
}

// Trace is one trace as the query API returns it (the v1 JSON model the
// Jaeger UI reads).
type Trace struct {
	TraceID   string             `json:"traceID"`
	Spans     []Span             `json:"spans"`
	Processes map[string]Process `json:"processes"`
}

// Process is the resource a span was reported under.
type Process struct {
	ServiceName string `json:"serviceName"`
	Tags        []KV   `json:"tags"`
}

// Span is one span of a Trace.
type Span struct {
	TraceID       string      `json:"traceID"`
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []Reference `json:"references"`
	// StartTime and Duration are in microseconds.
	StartTime int64  `json:"startTime"`
	Duration  int64  `json:"duration"`
	Tags      []KV   `json:"tags"`
	Logs      []Log  `json:"logs"`
	ProcessID string `json:"processID"`
}

// Reference links a span to its parent (refType CHILD_OF).
type Reference struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// KV is a tag or log field. Value is a string, bool, or float64 (numbers
// in JSON), as Jaeger typed it.
type KV struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// Log is a span event.
type Log struct {
	Timestamp int64 `json:"timestamp"`
	Fields    []KV  `json:"fields"`
}

// Tag returns the value of the span's tag key and whether it is present.
func (s Span) Tag(key string) (any, bool) {
	for _, kv := range s.Tags {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// Parent returns the span id of the CHILD_OF reference, "" for a root.
func (s Span) Parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// Event returns the log whose "event" field is name.
func (s Span) Event(name string) (Log, bool) {
	for _, l := range s.Logs {
		for _, f := range l.Fields {
			if f.Key == "event" && f.Value == name {
				return l, true
			}
		}
	}
	return Log{}, false
}

// Traces returns the service's traces of the last hour.
func (j *Jaeger) Traces(ctx context.Context, service string) ([]Trace, error) {
	q := url.Values{"service": {service}, "limit": {"1000"}, "lookback": {"1h"}}
	return j.get(ctx, "/api/traces?"+q.Encode())
}

// Trace returns one trace by its hex id; not found is an error.
func (j *Jaeger) Trace(ctx context.Context, traceID string) (Trace, error) {
	ts, err := j.get(ctx, "/api/traces/"+url.PathEscape(traceID))
	if err != nil {
		return Trace{}, err
	}
	if len(ts) != 1 {
		return Trace{}, fmt.Errorf("trace %s: %d traces returned", traceID, len(ts))
	}
	return ts[0], nil
}

func (j *Jaeger) get(ctx context.Context, path string) ([]Trace, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.QueryURL+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(body))
	}
	var out struct {
		Data []Trace `json:"data"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	return out.Data, nil
}

// Spans polls until the service's traces hold at least n spans named with
// prefix, or the timeout passes, and returns those spans. Export is
// asynchronous even after a flush (the collector stores in its own
// pipeline), so a test must wait rather than read once.
func (j *Jaeger) Spans(t testing.TB, service, prefix string, n int, timeout time.Duration) []Span {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last []Span
	var lastErr error
	for {
		ts, err := j.Traces(ctx, service)
		if err == nil {
			last = last[:0]
			for _, tr := range ts {
				for _, s := range tr.Spans {
					if strings.HasPrefix(s.OperationName, prefix) {
						last = append(last, s)
					}
				}
			}
			if len(last) >= n {
				return last
			}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("jaeger: %d of %d %q spans of %s after %v (last error: %v)", len(last), n, prefix, service, timeout, lastErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
