package telemetry_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/internal/telemetry"
	"github.com/pve-migration/router/server"
	"github.com/pve-migration/router/server/extproctest"
)

// Credentials a PVE client and the router carry. Each has a distinctive
// part that must appear in no span, log line, metric or error.
const (
	tokenSecret  = "5ec2e7a1-SECRET-UUID-4b1d-9e0f00c0ffee"
	perlToken    = "root@pam!ci=" + tokenSecret
	cookieSecret = "PVE:root@pam:66F1A2B3::SECRETCOOKIESIGNATURE"
	csrfSecret   = "66F1A2B3:SECRETCSRFTOKENVALUE"
	routerToken  = "router@pve!lookup=ROUTER-SECRET-7c1f"
)

var secrets = []string{tokenSecret, "SECRET-UUID", cookieSecret, "SECRETCOOKIE", csrfSecret, "SECRETCSRF", "ROUTER-SECRET", "PVEAPIToken"}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestNoSecretLeaks sends real PVE requests carrying an API token, the
// ticket cookie and the CSRF token through the real ext_proc server, with
// the router's own PERL_API_TOKEN in the environment and a DELETE whose
// interface type lookup fails against a Perl API that echoes credentials,
// and then searches every output the telemetry produces.
func TestNoSecretLeaks(t *testing.T) {
	t.Setenv(config.EnvPerlAPIToken, routerToken)

	// A Perl API that checks the router's token and answers with an error
	// page quoting the request's Authorization header, as a badly behaved
	// proxy would.
	var sawToken sync.Once
	tokenSeen := false
	perl := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "PVEAPIToken="+routerToken {
			sawToken.Do(func() { tokenSeen = true })
		}
		if strings.HasSuffix(r.URL.Path, "/eno1") {
			_, _ = io.WriteString(w, `{"data":{"type":"eth","iface":"eno1"}}`)
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = fmt.Fprintf(w, "upstream error for Authorization: %s", r.Header.Get("Authorization"))
	}))
	defer perl.Close()

	spans := tracetest.NewSpanRecorder()
	logs := &lockedBuf{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{
		Version:        "test",
		Env:            func(string) string { return "" },
		Logger:         logger,
		SpanProcessors: []sdktrace.SpanProcessor{spans},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })

	// The environment reaches the config exactly as in the router.
	snap := snapshot(t, fmt.Sprintf("phase = \"rust-basic-write\"\nperl_api_base_url = %q\n", perl.URL),
		map[string]string{config.EnvPerlAPIToken: routerToken})
	if !snap.PerlAPIToken.IsSet() {
		t.Fatal("PERL_API_TOKEN did not reach the snapshot")
	}
	lookup, err := server.NewPerlLookup(server.PerlLookupOptions{
		Config: func() *config.Snapshot { return snap }, Logger: logger, Timeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	r := startRouter(t, tel, routerOptions{snap: snap, lookup: lookup, log: logger})

	creds := map[string]string{
		"authorization":       "PVEAPIToken=" + perlToken,
		"cookie":              "PVEAuthCookie=" + cookieSecret,
		"csrfpreventiontoken": csrfSecret,
		"x-request-id":        "req-secrets",
	}
	reqs := []extproctest.Request{
		{Method: "GET", Path: "/api2/json/nodes/pve1/network", Headers: creds,
			Upstream: extproctest.Upstream{Status: 200, ServedBy: "rust", Attempts: 1}},
		{Method: "GET", Path: "/api2/json/nodes/pve1/network?ticket=" + cookieSecret + "&csrf=" + csrfSecret, Headers: creds,
			Upstream: extproctest.Upstream{Status: 200, ServedBy: "perl", Attempts: 2}},
		{Method: "PUT", Path: "/api2/extjs/nodes/pve1/network/eno1", Headers: withCT(creds, "application/x-www-form-urlencoded"),
			Body:     []byte("type=eth&comments=" + tokenSecret + "&csrf=" + csrfSecret),
			Upstream: extproctest.Upstream{Status: 200, ServedBy: "rust", Attempts: 1}},
		{Method: "POST", Path: "/api2/json/nodes/pve1/network", Headers: withCT(creds, "application/json"),
			Body:     []byte(`{"iface":"vmbr9","comments":"` + cookieSecret + `"`), // broken JSON: type error path
			Upstream: extproctest.Upstream{Status: 500, ServedBy: "perl", Attempts: 1}},
		{Method: "DELETE", Path: "/api2/json/nodes/pve1/network/bond0", Headers: creds, // lookup fails, echoing the token
			Upstream: extproctest.Upstream{Status: 200, ServedBy: "perl", Attempts: 1}},
		{Method: "DELETE", Path: "/api2/json/nodes/pve1/network/eno1", Headers: creds, // lookup succeeds with the token
			Upstream: extproctest.Upstream{Status: 200, ServedBy: "rust", Attempts: 1}},
		{Method: "GET", Path: "/api2/json/access/ticket", Headers: creds, Upstream: extproctest.Upstream{Status: 401, ServedBy: "perl"}},
		{Method: "GET", Path: "/api2/json/nodes/pve1/network/eno1", Headers: creds, Stop: extproctest.CancelAfterRequest},
	}
	var results []string
	for _, q := range reqs {
		res := r.do(t, context.Background(), q)
		results = append(results, fmt.Sprintf("%+v %v %v", res.FailReason, res.ServerStatus, res.Backend))
	}
	waitSpans(t, spans, len(reqs))
	r.stop()

	if !tokenSeen {
		t.Fatal("the lookup never carried the router's token: the test did not exercise it")
	}

	var out strings.Builder
	for _, s := range spans.Ended() {
		fmt.Fprintf(&out, "span %s status=%v\n", s.Name(), s.Status())
		for _, a := range s.Attributes() {
			fmt.Fprintf(&out, "  %s=%s\n", a.Key, a.Value.String())
		}
		for _, e := range s.Events() {
			fmt.Fprintf(&out, "  event %s\n", e.Name)
			for _, a := range e.Attributes {
				fmt.Fprintf(&out, "    %s=%s\n", a.Key, a.Value.String())
			}
		}
		for _, a := range s.Resource().Attributes() {
			fmt.Fprintf(&out, "  resource %s=%s\n", a.Key, a.Value.String())
		}
	}
	outputs := map[string]string{
		"spans":   out.String(),
		"logs":    logs.String(),
		"metrics": scrapeText(t, tel),
		"stats":   fmt.Sprintf("%+v", tel.Stats()),
		"results": strings.Join(results, "\n"),
	}
	if testing.Verbose() {
		for what, text := range outputs {
			t.Logf("== %s\n%s", what, text)
		}
	}
	for what, text := range outputs {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s contain %q:\n%s", what, s, text)
			}
		}
	}

	// The outputs are not empty by accident: every request has a span and
	// a decision line, the lookup failure is reported, and the broken body
	// and the failed lookup show as type errors.
	if n := strings.Count(logs.String(), `"msg":"decision"`); n != len(reqs) {
		t.Errorf("%d decision log lines, want %d:\n%s", n, len(reqs), logs)
	}
	for _, want := range []string{"pve.migration.type_error", "interface type lookup", "abandoned", "pve.migration.fallback=true"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("spans lack %q:\n%s", want, out.String())
		}
	}
}

func withCT(h map[string]string, ct string) map[string]string {
	out := map[string]string{"content-type": ct}
	for k, v := range h {
		out[k] = v
	}
	return out
}

// waitSpans waits for n ended spans: an abandoned stream is reported by
// the server after the client has already gone.
func waitSpans(t *testing.T, r *tracetest.SpanRecorder, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(r.Ended()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d spans ended", len(r.Ended()), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func scrapeText(t *testing.T, tel *telemetry.Telemetry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), telemetry.MetricRequests) {
		t.Fatalf("/metrics: %d\n%s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}
