package dataplane

import (
	"net/http"
	"strings"
	"testing"

	"github.com/pve-migration/router/envoy"
)

// TestRetriableHeaders: a response carrying a header of retriable_headers
// (x-pve-fallback) is retried on the web UI and read routes, never on the
// write route; x-envoy-retriable-header-names adds names.
func TestRetriableHeaders(t *testing.T) {
	b, err := envoy.LoadBootstrap(envoy.DemoConfig())
	if err != nil {
		t.Fatal(err)
	}
	rt, err := envoy.NewRouteTable(b)
	if err != nil {
		t.Fatal(err)
	}
	marked := &http.Response{StatusCode: 200, Header: http.Header{"X-Pve-Fallback": {"500"}}}
	other := &http.Response{StatusCode: 200, Header: http.Header{"X-Other": {"1"}}}
	cases := []struct {
		method, path string
		hdr          http.Header
		resp         *http.Response
		want         bool
	}{
		{"GET", "/api2/extjs/nodes/pve1/network", http.Header{}, marked, true},
		{"HEAD", "/api2/extjs/nodes/pve1/network", http.Header{}, marked, true},
		{"GET", "/api2/json/nodes/pve1/network", http.Header{}, marked, true},
		{"GET", "/api2/extjs/nodes/pve1/network", http.Header{}, other, false},
		{"GET", "/api2/extjs/nodes/pve1/network", http.Header{"X-Envoy-Retriable-Header-Names": {"x-other"}}, other, true},
		{"PUT", "/api2/extjs/nodes/pve1/network/eno1", http.Header{}, marked, false},
		{"DELETE", "/api2/extjs/nodes/pve1/network/eno1", http.Header{"X-Envoy-Retriable-Header-Names": {"x-pve-fallback"}}, marked, false},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			p, ok := rt.Match(tc.method, tc.path, map[string]string{"x-pve-backend": "rust"})
			if !ok {
				t.Fatal("no route")
			}
			if got := newRetryPolicy(p, tc.hdr).headerRetry(tc.resp); got != tc.want {
				t.Errorf("route %s: retry %v, want %v", p.Name, got, tc.want)
			}
		})
	}
}

// TestNewRefusesUpstreamFilters: an upstream filter chain the data plane
// cannot run as Envoy would is an error in New, never ignored.
func TestNewRefusesUpstreamFilters(t *testing.T) {
	client, stop, err := InProcessExtProc(&fakeExtProc{})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	const stage = "            failure_mode_allow: true\n            message_timeout: 0.2s\n"
	cases := []struct{ name, old, new, want string }{
		{"fails closed", stage, strings.Replace(stage, "true", "false", 1), "failure_mode_allow"},
		{"request headers", "              request_header_mode: SKIP\n", "              request_header_mode: SEND\n", "request_header_mode"},
		{"streamed body", "              response_body_mode: BUFFERED\n", "              response_body_mode: STREAMED\n", "STREAMED"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			y := string(envoy.DemoConfig())
			if strings.Count(y, tc.old) != 1 {
				t.Fatalf("envoy.yaml has %q %d times", tc.old, strings.Count(y, tc.old))
			}
			b, err := envoy.LoadBootstrap([]byte(strings.Replace(y, tc.old, tc.new, 1)))
			if err != nil {
				t.Fatal(err)
			}
			p, err := New(Options{ExtProc: client, Bootstrap: b, Perl: Upstream{URL: "http://127.0.0.1:1"}, Rust: Upstream{URL: "http://127.0.0.1:2"}, DisableHealthChecks: true})
			if err == nil {
				_ = p.Close()
				t.Fatal("New accepted it")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "rust_then_perl_extjs") {
				t.Errorf("error %v does not name %q and the cluster", err, tc.want)
			}
		})
	}
}
