package server_test

import (
	"context"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/routing"
	"github.com/pve-migration/router/server"
)

const (
	rustHost = `filter_metadata { key: "pve" value { fields { key: "backend" value { string_value: "rust" } } } }`
	perlHost = `filter_metadata { key: "pve" value { fields { key: "backend" value { string_value: "perl" } } } }`
)

// upstreamHeaders is the first message of an upstream-stage stream, as
// envoy.yaml's rust_then_perl_extjs filter sends it.
func upstreamHeaders(method, path, host string, status string, extra ...string) *extprocv3.ProcessingRequest {
	hs := []*corev3.HeaderValue{
		{Key: ":status", RawValue: []byte(status)},
		{Key: "content-type", RawValue: []byte("application/json;charset=UTF-8")},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		hs = append(hs, &corev3.HeaderValue{Key: extra[i], RawValue: []byte(extra[i+1])})
	}
	return &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: hs}}},
		Attributes: map[string]*structpb.Struct{"envoy.filters.http.ext_proc": {Fields: map[string]*structpb.Value{
			"request.method":             structpb.NewStringValue(method),
			"request.path":               structpb.NewStringValue(path),
			"xds.upstream_host_metadata": structpb.NewStringValue(host),
		}}},
	}
}

// TestUpstreamExtjsStage drives the upstream ext_proc stage over real gRPC
// with the messages Envoy's upstream filter sends: it asks for the body only
// of rust's 200 JSON answers to extjs GETs with fallback on, and turns a
// body failure with status >= 500 into that :status.
func TestUpstreamExtjsStage(t *testing.T) {
	noFallback := func(s *config.Snapshot) { s.Policy.FallbackEnabled = false }
	cases := []struct {
		name       string
		snap       *config.Snapshot
		first      *extprocv3.ProcessingRequest
		body       string // "" = no body message expected
		wantBuffer bool
		wantStatus string // :status set in the body answer, "" = none
	}{
		{"rust extjs failure", snapshot(routing.RustReadOnly), upstreamHeaders("GET", "/api2/extjs/nodes/pve1/network", rustHost, "200"),
			`{"data":null,"success":0,"status":500,"message":"boom"}`, true, "500"},
		{"rust extjs 4xx is an answer", snapshot(routing.RustReadOnly), upstreamHeaders("GET", "/api2/extjs/nodes/pve1/network/x", rustHost, "200"),
			`{"data":null,"success":0,"status":400,"errors":{"iface":"interface does not exist"}}`, true, ""},
		{"rust extjs success", snapshot(routing.RustReadOnly), upstreamHeaders("GET", "/api2/extjs/nodes/pve1/network", rustHost, "200"),
			`{"data":[],"success":1}`, true, ""},
		{"perl answer", snapshot(routing.RustReadOnly), upstreamHeaders("GET", "/api2/extjs/nodes/pve1/network", perlHost, "200"), "", false, ""},
		{"json format", snapshot(routing.RustReadOnly), upstreamHeaders("GET", "/api2/json/nodes/pve1/network", rustHost, "200"), "", false, ""},
		{"write", snapshot(routing.RustBasicWrite), upstreamHeaders("PUT", "/api2/extjs/nodes/pve1/network/eno1", rustHost, "200"), "", false, ""},
		{"fallback off", snapshot(routing.RustReadOnly, noFallback), upstreamHeaders("GET", "/api2/extjs/nodes/pve1/network", rustHost, "200"), "", false, ""},
		{"marked by rust", snapshot(routing.RustReadOnly), upstreamHeaders("GET", "/api2/extjs/nodes/pve1/network", rustHost, "200", server.HeaderFallback, "500"), "", false, ""},
		{"already a 5xx", snapshot(routing.RustReadOnly), upstreamHeaders("GET", "/api2/extjs/nodes/pve1/network", rustHost, "500"), "", false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.snap, harnessOpts{})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ctx = metadata.AppendToOutgoingContext(ctx, server.StageMetadataKey, server.StageUpstreamExtjs)
			st, err := extprocv3.NewExternalProcessorClient(h.conn).Process(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Send(tc.first); err != nil {
				t.Fatal(err)
			}
			ans, err := st.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if ans.GetResponseHeaders() == nil {
				t.Fatalf("answer to response headers: %v", ans)
			}
			if hm := ans.GetResponseHeaders().GetResponse().GetHeaderMutation(); hm != nil {
				t.Errorf("the headers answer mutates headers: %v", hm)
			}
			ov := ans.GetModeOverride()
			buffered := ov.GetResponseBodyMode() == extprocfilterv3.ProcessingMode_BUFFERED
			if buffered != tc.wantBuffer {
				t.Fatalf("mode override %v, want BUFFERED %v", ov, tc.wantBuffer)
			}
			if buffered && (ov.GetResponseHeaderMode() != extprocfilterv3.ProcessingMode_SEND || ov.GetRequestBodyMode() != extprocfilterv3.ProcessingMode_NONE) {
				t.Errorf("override %v does not equal envoy.yaml's allowed_override_modes entry", ov)
			}
			if tc.body != "" {
				if err := st.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: []byte(tc.body), EndOfStream: true}}}); err != nil {
					t.Fatal(err)
				}
				ans, err := st.Recv()
				if err != nil {
					t.Fatal(err)
				}
				if ans.GetResponseBody() == nil {
					t.Fatalf("answer to the body: %v", ans)
				}
				var got string
				for _, sh := range ans.GetResponseBody().GetResponse().GetHeaderMutation().GetSetHeaders() {
					if sh.GetHeader().GetKey() == ":status" {
						got = string(sh.GetHeader().GetRawValue())
					} else {
						t.Errorf("the stage sets %s", sh.GetHeader().GetKey())
					}
				}
				if got != tc.wantStatus {
					t.Errorf(":status %q, want %q", got, tc.wantStatus)
				}
			}
			_ = st.CloseSend()
		})
	}

	t.Run("request headers are refused", func(t *testing.T) {
		h := newHarness(t, snapshot(routing.RustFull), harnessOpts{})
		ctx := metadata.AppendToOutgoingContext(context.Background(), server.StageMetadataKey, server.StageUpstreamExtjs)
		st, err := extprocv3.NewExternalProcessorClient(h.conn).Process(ctx)
		if err != nil {
			t.Fatal(err)
		}
		req := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: ":method", RawValue: []byte("GET")}, {Key: ":path", RawValue: []byte("/api2/json/nodes/pve1/network")}}},
		}}}
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
		if ans, err := st.Recv(); err == nil {
			t.Fatalf("the upstream stage answered request headers: %v", ans)
		}
	})
}
