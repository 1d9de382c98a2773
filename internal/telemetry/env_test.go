package telemetry

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/pve-migration/router/internal/outcome"
	"github.com/pve-migration/router/routing"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseExport(t *testing.T) {
	cases := map[string]struct {
		env     map[string]string
		want    exportConfig
		wantErr string
	}{
		"nothing set: off": {env: nil, want: exportConfig{}},
		"none wins over endpoint": {env: map[string]string{EnvTracesExporter: "none", EnvOTLPEndpoint: "http://jaeger:4317"},
			want: exportConfig{}},
		"generic endpoint, default protocol http": {env: map[string]string{EnvOTLPEndpoint: "http://collector:4318"},
			want: exportConfig{enabled: true, protocol: ProtocolHTTPProtobuf, endpoint: "http://collector:4318/v1/traces"}},
		"generic endpoint grpc": {env: map[string]string{EnvOTLPEndpoint: "http://jaeger:4317", EnvOTLPProtocol: "grpc"},
			want: exportConfig{enabled: true, protocol: ProtocolGRPC, endpoint: "http://jaeger:4317"}},
		"traces endpoint used as is": {env: map[string]string{EnvOTLPEndpoint: "http://a:4318", EnvOTLPTracesEndpoint: "https://b/custom/path"},
			want: exportConfig{enabled: true, protocol: ProtocolHTTPProtobuf, endpoint: "https://b/custom/path"}},
		"traces protocol beats generic": {env: map[string]string{EnvOTLPEndpoint: "http://a:4317", EnvOTLPProtocol: "http/protobuf", EnvOTLPTracesProtocol: "grpc"},
			want: exportConfig{enabled: true, protocol: ProtocolGRPC, endpoint: "http://a:4317"}},
		"port 4317 without protocol is grpc": {env: map[string]string{EnvOTLPEndpoint: "http://jaeger:4317"},
			want: exportConfig{enabled: true, protocol: ProtocolGRPC, endpoint: "http://jaeger:4317"}},
		"port 4317 with explicit http stays http": {env: map[string]string{EnvOTLPEndpoint: "http://odd:4317", EnvOTLPProtocol: "http/protobuf"},
			want: exportConfig{enabled: true, protocol: ProtocolHTTPProtobuf, endpoint: "http://odd:4317/v1/traces"}},
		"traces endpoint on 4317 is grpc": {env: map[string]string{EnvOTLPTracesEndpoint: "http://jaeger:4317"},
			want: exportConfig{enabled: true, protocol: ProtocolGRPC, endpoint: "http://jaeger:4317"}},
		"exporter otlp, default endpoint": {env: map[string]string{EnvTracesExporter: "otlp"},
			want: exportConfig{enabled: true, protocol: ProtocolHTTPProtobuf, endpoint: "http://localhost:4318/v1/traces"}},
		"exporter otlp grpc, default endpoint": {env: map[string]string{EnvTracesExporter: "otlp", EnvOTLPProtocol: "grpc"},
			want: exportConfig{enabled: true, protocol: ProtocolGRPC, endpoint: "http://localhost:4317"}},
		"bare host insecure": {env: map[string]string{EnvOTLPEndpoint: "jaeger:4317", EnvOTLPProtocol: "grpc", "OTEL_EXPORTER_OTLP_INSECURE": "true"},
			want: exportConfig{enabled: true, protocol: ProtocolGRPC, endpoint: "http://jaeger:4317"}},
		"bare host is https": {env: map[string]string{EnvOTLPEndpoint: "jaeger:4317", EnvOTLPProtocol: "grpc"},
			want: exportConfig{enabled: true, protocol: ProtocolGRPC, endpoint: "https://jaeger:4317"}},
		"headers timeout compression": {env: map[string]string{EnvOTLPEndpoint: "http://c:4318", "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20x,tenant=pve",
			"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "2500", "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"},
			want: exportConfig{enabled: true, protocol: ProtocolHTTPProtobuf, endpoint: "http://c:4318/v1/traces",
				headers: map[string]string{"authorization": "Bearer x", "tenant": "pve"}, timeout: 2500 * time.Millisecond, compression: "gzip"}},
		"unsupported exporter":  {env: map[string]string{EnvTracesExporter: "zipkin"}, wantErr: "OTEL_TRACES_EXPORTER"},
		"unsupported protocol":  {env: map[string]string{EnvOTLPEndpoint: "http://c", EnvOTLPProtocol: "http/json"}, wantErr: "OTEL_EXPORTER_OTLP_PROTOCOL"},
		"bad scheme":            {env: map[string]string{EnvOTLPEndpoint: "ftp://c"}, wantErr: "OTEL_EXPORTER_OTLP_ENDPOINT"},
		"bad timeout":           {env: map[string]string{EnvOTLPEndpoint: "http://c", "OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}, wantErr: "OTEL_EXPORTER_OTLP_TIMEOUT"},
		"bad headers, no value": {env: map[string]string{EnvOTLPEndpoint: "http://c", "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%zzSECRET"}, wantErr: "OTEL_EXPORTER_OTLP_HEADERS"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := parseExport(envOf(c.env))
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err %v, want mention of %s", err, c.wantErr)
				}
				if strings.Contains(err.Error(), "SECRET") {
					t.Errorf("error echoes a header value: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.enabled != c.want.enabled || got.protocol != c.want.protocol || got.endpoint != c.want.endpoint ||
				got.timeout != c.want.timeout || got.compression != c.want.compression || len(got.headers) != len(c.want.headers) {
				t.Fatalf("got %+v\nwant %+v", got, c.want)
			}
			for k, v := range c.want.headers {
				if got.headers[k] != v {
					t.Errorf("header %s = %q, want %q", k, got.headers[k], v)
				}
			}
		})
	}
}

func TestSamplerAndResource(t *testing.T) {
	for _, s := range []string{"", "always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"} {
		if _, _, err := parseSampler(envOf(map[string]string{EnvTracesSampler: s, EnvTracesSamplerArg: "0.5"})); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	if _, name, _ := parseSampler(envOf(nil)); name != "parentbased_always_on" {
		t.Errorf("default sampler %q", name)
	}
	for _, bad := range []map[string]string{{EnvTracesSampler: "jaeger_remote"}, {EnvTracesSampler: "traceidratio", EnvTracesSamplerArg: "2"}} {
		if _, _, err := parseSampler(envOf(bad)); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}

	attrs, name, err := resourceAttrs(envOf(map[string]string{EnvResourceAttributes: "deployment.environment=lab,service.name=from-list"}), "v9")
	if err != nil || name != "from-list" {
		t.Fatalf("name %q err %v", name, err)
	}
	got := attrMap(attrs)
	if got["deployment.environment"].AsString() != "lab" || got["service.version"].AsString() != "v9" {
		t.Errorf("resource %v", attrs)
	}
	if _, name, _ = resourceAttrs(envOf(map[string]string{EnvServiceName: "router-a", EnvResourceAttributes: "service.name=b"}), ""); name != "router-a" {
		t.Errorf("OTEL_SERVICE_NAME must win, got %q", name)
	}
	if _, name, _ = resourceAttrs(envOf(nil), ""); name != DefaultServiceName {
		t.Errorf("default service %q", name)
	}
}

func TestSetupReportsEveryProblem(t *testing.T) {
	_, err := Setup(context.Background(), Options{Logger: slog.New(slog.DiscardHandler), Env: envOf(map[string]string{
		EnvOTLPEndpoint: "http://user:PASSWORD@c:4318", EnvOTLPProtocol: "carrier-pigeon", EnvTracesSampler: "sometimes",
		"OTEL_EXPORTER_OTLP_HEADERS": "x-token", EnvResourceAttributes: "=oops",
	})})
	if err == nil {
		t.Fatal("Setup accepted a bad environment")
	}
	for _, v := range []string{EnvOTLPProtocol, EnvTracesSampler, "OTEL_EXPORTER_OTLP_HEADERS", EnvResourceAttributes} {
		if !strings.Contains(err.Error(), v) {
			t.Errorf("error does not name %s: %v", v, err)
		}
	}
	if strings.Contains(err.Error(), "PASSWORD") {
		t.Errorf("error leaks the endpoint password: %v", err)
	}
}

// One request through the observer, then Shutdown: the span must reach the
// collector although the batch timeout (5 s by default) has not passed.
func exportOne(t *testing.T, env map[string]string) {
	t.Helper()
	env[EnvServiceName] = "export-test"
	tel, err := Setup(context.Background(), Options{Env: envOf(env), Logger: slog.New(slog.DiscardHandler), LogDecisions: func() bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	p := routing.DefaultPolicy()
	p.Phase = routing.RustFull
	d := &outcome.Decision{Method: "GET", Path: "/api2/json/nodes/n/network", Phase: p.Phase, Start: time.Now(),
		Decision: routing.Decide(&p, routing.Request{Method: "GET", Path: "/api2/json/nodes/n/network"})}
	obs := tel.Observer()
	obs.Finished(obs.Decided(context.Background(), d), d, outcome.Result{ServedBy: "rust", Status: 200, Attempts: 1, Duration: time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func checkExport(t *testing.T, req *collectortrace.ExportTraceServiceRequest, header string) {
	t.Helper()
	if req == nil {
		t.Fatal("collector received nothing: Shutdown did not flush")
	}
	rs := req.GetResourceSpans()
	if len(rs) != 1 {
		t.Fatalf("%d resource spans", len(rs))
	}
	var svc string
	for _, a := range rs[0].GetResource().GetAttributes() {
		if a.GetKey() == "service.name" {
			svc = a.GetValue().GetStringValue()
		}
	}
	if svc != "export-test" {
		t.Errorf("service.name %q", svc)
	}
	spans := rs[0].GetScopeSpans()[0].GetSpans()
	if len(spans) != 1 || spans[0].GetName() != "pve-migration GET /nodes/{node}/network" {
		t.Errorf("spans %v", spans)
	}
	if header != "pve" {
		t.Errorf("OTEL_EXPORTER_OTLP_HEADERS not sent: %q", header)
	}
}

func TestExportOTLPHTTP(t *testing.T) {
	var mu sync.Mutex
	var got *collectortrace.ExportTraceServiceRequest
	var tenant string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" {
			http.NotFound(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		req := &collectortrace.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(body, req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		got, tenant = req, r.Header.Get("x-tenant")
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	defer srv.Close()
	exportOne(t, map[string]string{EnvOTLPEndpoint: srv.URL, "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=pve"})
	mu.Lock()
	defer mu.Unlock()
	checkExport(t, got, tenant)
}

type fakeCollector struct {
	collectortrace.UnimplementedTraceServiceServer
	mu     sync.Mutex
	got    *collectortrace.ExportTraceServiceRequest
	tenant string
}

func (c *fakeCollector) Export(ctx context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = req
	if v := md.Get("x-tenant"); len(v) > 0 {
		c.tenant = v[0]
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func TestExportOTLPGRPC(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &fakeCollector{}
	gs := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(gs, c)
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()
	exportOne(t, map[string]string{EnvOTLPEndpoint: "http://" + lis.Addr().String(), EnvOTLPProtocol: "grpc", "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=pve"})
	c.mu.Lock()
	defer c.mu.Unlock()
	checkExport(t, c.got, c.tenant)
}
