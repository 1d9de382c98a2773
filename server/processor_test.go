package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/internal/outcome"
	"github.com/pve-migration/router/routing"
	"github.com/pve-migration/router/server"
	"github.com/pve-migration/router/server/extproctest"
)

// matrixRequests are representative requests of every category. Typed
// writes carry their type in the query, so no body is needed.
var matrixRequests = []struct {
	method, path string
	category     routing.Category
}{
	{"GET", "/api2/json/version", routing.NotNetwork},
	{"GET", "/api2/json/nodes/pve1/qemu", routing.NotNetwork},
	{"GET", "/api2/html/nodes/pve1/network", routing.NotNetwork},
	{"GET", "/api2/json/nodes/pve1/network", routing.NodeNetworkRead},
	{"GET", "/api2/extjs/nodes/pve1/network/vmbr0", routing.NodeNetworkRead},
	{"PUT", "/api2/json/nodes/pve1/network", routing.NodeNetworkBasicWrite},
	{"DELETE", "/api2/extjs/nodes/pve1/network", routing.NodeNetworkBasicWrite},
	{"POST", "/api2/json/nodes/pve1/network?type=eth&iface=eth1", routing.NodeNetworkBasicWrite},
	{"PUT", "/api2/extjs/nodes/pve1/network/eth0:1?type=alias", routing.NodeNetworkBasicWrite},
	{"POST", "/api2/extjs/nodes/pve1/network?type=bridge&iface=vmbr1", routing.NodeNetworkAdvancedWrite},
	{"PUT", "/api2/json/nodes/pve1/network/bond0?type=bond", routing.NodeNetworkAdvancedWrite},
	{"GET", "/api2/json/cluster/sdn/zones", routing.SDNRead},
	{"GET", "/api2/json/nodes/pve1/sdn/zones", routing.SDNRead},
	{"PUT", "/api2/json/cluster/sdn", routing.SDNWrite},
	{"POST", "/api2/extjs/cluster/sdn/vnets", routing.SDNWrite},
}

// contract is the contract's phase matrix with both feature flags on.
var contract = map[routing.Category]string{
	routing.NotNetwork:               "PPPPPP",
	routing.NodeNetworkRead:          "PRRRRR",
	routing.NodeNetworkBasicWrite:    "PPRRRR",
	routing.NodeNetworkAdvancedWrite: "PPPRRR",
	routing.SDNRead:                  "PPPPRR",
	routing.SDNWrite:                 "PPPPRR",
}

// TestPhaseMatrixOverWire runs every phase × feature flags × fallback ×
// category through real gRPC and the Envoy model, and checks the headers
// Envoy would route on against routing.Decide.
func TestPhaseMatrixOverWire(t *testing.T) {
	h := newHarness(t, snapshot(routing.PerlOnly), harnessOpts{lookup: namedLookup{}})
	overrideTimeout := 7 * time.Second
	for _, phase := range routing.Phases() {
		for _, sdn := range []bool{false, true} {
			for _, adv := range []bool{false, true} {
				for _, fallback := range []bool{false, true} {
					for _, withRule := range []bool{false, true} {
						snap := snapshot(phase, func(s *config.Snapshot) {
							s.Policy.Features = routing.Features{EnableSDNMigration: sdn, EnableAdvancedNetworking: adv}
							s.Policy.FallbackEnabled = fallback
							s.PerlAPITimeout = 45 * time.Second
							if withRule {
								// Tunes timeout and fallback, changes no decision.
								s.Policy.Endpoints["/nodes/{node}/network/{iface}"] = routing.EndpointRule{
									RustTimeout: overrideTimeout, FallbackOnError: ptr(false),
								}
							}
						})
						name := fmt.Sprintf("%s/sdn=%v/adv=%v/fallback=%v/rule=%v", phase, sdn, adv, fallback, withRule)
						t.Run(name, func(t *testing.T) {
							h.snap.Store(snap)
							for _, r := range matrixRequests {
								want := routing.Decide(&snap.Policy, routing.Request{Method: r.method, Path: r.path, IfaceType: queryTypeOf(r.path)})
								if want.Category != r.category {
									t.Fatalf("%s %s: routing classifies %s, test table says %s", r.method, r.path, want.Category, r.category)
								}
								if sdn && adv {
									if c := contract[r.category][phase]; (c == 'R') != (want.Backend == routing.Rust) {
										t.Errorf("%s %s: Decide says %s, contract matrix says %c", r.method, r.path, want.Backend, c)
									}
								}
								res := h.do(t, extproctest.Request{Method: r.method, Path: r.path, Upstream: extproctest.Upstream{ServedBy: want.Backend.String(), Attempts: 1}})
								checkDecisionHeaders(t, r.method+" "+r.path, res, want, snap.PerlAPITimeout)
								if res.ModeOverride != nil {
									t.Errorf("%s %s: body requested although the type is in the query", r.method, r.path)
								}
							}
						})
					}
				}
			}
		}
	}
}

func ptr[T any](v T) *T { return &v }

func queryTypeOf(p string) string {
	_, q, _ := strings.Cut(p, "?")
	for _, kv := range strings.Split(q, "&") {
		if v, ok := strings.CutPrefix(kv, "type="); ok {
			return v
		}
	}
	return ""
}

// checkDecisionHeaders asserts exactly the headers a decision must set.
func checkDecisionHeaders(t *testing.T, what string, res extproctest.Result, want routing.Decision, perlTimeout time.Duration) {
	t.Helper()
	if res.FailedOpen || res.LocalReply != 0 {
		t.Fatalf("%s: failed open (%v) / local reply %d", what, res.FailReason, res.LocalReply)
	}
	if res.RejectedMutations != 0 {
		t.Errorf("%s: %d mutations outside envoy.yaml's allow-list", what, res.RejectedMutations)
	}
	if res.Backend != want.Backend.String() {
		t.Errorf("%s: routed to %s, want %s (%s)", what, res.Backend, want.Backend, want.Reason)
	}
	hdr := res.RequestHeaders
	if want.Backend == routing.Perl {
		for _, k := range []string{server.HeaderPerTryTimeout, server.HeaderTimeout, server.HeaderMaxRetries} {
			if v, ok := hdr[k]; ok {
				t.Errorf("%s: perl decision sets %s=%s", what, k, v)
			}
		}
		return
	}
	perTry := want.RustTimeout.Milliseconds()
	overall := perTry
	if want.Fallback {
		overall += perlTimeout.Milliseconds()
	}
	if got := hdr[server.HeaderPerTryTimeout]; got != strconv.FormatInt(perTry, 10) {
		t.Errorf("%s: %s = %q, want %d", what, server.HeaderPerTryTimeout, got, perTry)
	}
	if got := hdr[server.HeaderTimeout]; got != strconv.FormatInt(overall, 10) {
		t.Errorf("%s: %s = %q, want %d", what, server.HeaderTimeout, got, overall)
	}
	got, has := hdr[server.HeaderMaxRetries]
	switch {
	case want.Fallback && has:
		t.Errorf("%s: fallback on but %s=%s", what, server.HeaderMaxRetries, got)
	case !want.Fallback && got != "0":
		t.Errorf("%s: fallback off but %s=%q, want 0", what, server.HeaderMaxRetries, got)
	}
}

// TestBodyModeOverride covers POST/PUT whose type is only in the body.
func TestBodyModeOverride(t *testing.T) {
	form := "application/x-www-form-urlencoded"
	json := "application/json"
	big := "type=eth&iface=eth9&comments=" + strings.Repeat("x", routing.MaxBodyBytes)
	cases := []struct {
		name        string
		phase       routing.Phase
		noAdvanced  bool
		method      string
		path        string
		ctype, body string
		opts        extproctest.Options
		wantBody    bool   // body requested
		want        string // final backend
		wantType    string
		wantSource  outcome.TypeSource
		wantTypeErr bool
		// wantFallback: the outcome shows a Rust decision served by Perl.
		wantFallback bool
	}{
		{name: "form eth is basic", phase: routing.RustBasicWrite, method: "POST", path: "/api2/json/nodes/pve1/network", ctype: form, body: "iface=eth1&type=eth&autostart=1", wantBody: true, want: "rust", wantType: "eth", wantSource: outcome.TypeBody},
		{name: "form bridge is advanced", phase: routing.RustBasicWrite, method: "POST", path: "/api2/extjs/nodes/pve1/network", ctype: form, body: "iface=vmbr1&type=bridge&bridge_ports=eth1", wantBody: true, want: "perl", wantType: "bridge", wantSource: outcome.TypeBody},
		{name: "json eth is basic", phase: routing.RustBasicWrite, method: "PUT", path: "/api2/json/nodes/pve1/network/eth0", ctype: json + ";charset=UTF-8", body: `{"type":"eth","cidr":"10.0.0.2/24"}`, wantBody: true, want: "rust", wantType: "eth", wantSource: outcome.TypeBody},
		{name: "json bridge is advanced", phase: routing.RustBasicWrite, method: "PUT", path: "/api2/json/nodes/pve1/network/vmbr0", ctype: json, body: `{"type":"bridge"}`, wantBody: true, want: "perl", wantType: "bridge", wantSource: outcome.TypeBody},
		{name: "no content type reads as form", phase: routing.RustBasicWrite, method: "POST", path: "/api2/json/nodes/pve1/network", body: "type=alias&iface=eth0:1", wantBody: true, want: "rust", wantType: "alias", wantSource: outcome.TypeBody},
		{name: "body over 512 KiB is advanced", phase: routing.RustBasicWrite, method: "POST", path: "/api2/json/nodes/pve1/network", ctype: form, body: big, wantBody: true, want: "perl", wantSource: outcome.TypeAbsent, wantTypeErr: true},
		{name: "unparsable json is advanced", phase: routing.RustBasicWrite, method: "POST", path: "/api2/json/nodes/pve1/network", ctype: json, body: `{"type":`, wantBody: true, want: "perl", wantSource: outcome.TypeAbsent, wantTypeErr: true},
		{name: "repeated type is advanced", phase: routing.RustBasicWrite, method: "POST", path: "/api2/json/nodes/pve1/network", ctype: form, body: "type=eth&type=bridge", wantBody: true, want: "perl", wantSource: outcome.TypeAbsent, wantTypeErr: true},
		{name: "no type in body is advanced", phase: routing.RustBasicWrite, method: "POST", path: "/api2/json/nodes/pve1/network", ctype: form, body: "iface=x", wantBody: true, want: "perl", wantSource: outcome.TypeAbsent},
		{name: "type in query, no body: no body requested", phase: routing.RustBasicWrite, method: "POST", path: "/api2/json/nodes/pve1/network?type=eth&iface=eth1", want: "rust", wantType: "eth", wantSource: outcome.TypeQuery},
		{name: "query and body agree", phase: routing.RustBasicWrite, method: "POST", path: "/api2/json/nodes/pve1/network?type=eth", ctype: form, body: "iface=eth1&type=eth", wantBody: true, want: "rust", wantType: "eth", wantSource: outcome.TypeBody},
		{name: "query and body disagree is advanced", phase: routing.RustBasicWrite, method: "POST", path: "/api2/json/nodes/pve1/network?type=eth", ctype: form, body: "iface=eth1&type=bridge", wantBody: true, want: "perl", wantSource: outcome.TypeAbsent, wantTypeErr: true},
		{name: "encoded query key is still the type", phase: routing.RustBasicWrite, method: "POST", path: "/api2/json/nodes/pve1/network?%74ype=bridge", ctype: form, body: "iface=vmbr9&type=eth", wantBody: true, want: "perl", wantSource: outcome.TypeAbsent, wantTypeErr: true},
		{name: "no body, no query type is advanced", phase: routing.RustBasicWrite, method: "POST", path: "/api2/json/nodes/pve1/network", want: "perl", wantSource: outcome.TypeAbsent, wantTypeErr: true},
		{name: "perl-only: type does not matter", phase: routing.PerlOnly, method: "POST", path: "/api2/json/nodes/pve1/network", ctype: form, body: "type=eth", want: "perl", wantSource: outcome.TypeNone},
		{name: "rust-advanced: type does not matter", phase: routing.RustAdvanced, method: "PUT", path: "/api2/json/nodes/pve1/network/vmbr0", ctype: form, body: "type=bridge", want: "rust", wantSource: outcome.TypeNone},
		{name: "advanced flag off: type matters", phase: routing.RustFull, noAdvanced: true, method: "POST", path: "/api2/json/nodes/pve1/network", ctype: form, body: "type=eth", wantBody: true, want: "rust", wantType: "eth", wantSource: outcome.TypeBody},
		{name: "issue 43708: body answer does not re-route", phase: routing.RustBasicWrite, method: "POST", path: "/api2/json/nodes/pve1/network", ctype: form, body: "type=eth", opts: extproctest.Options{BodyPhaseNoReroute: true}, wantBody: true, want: "perl", wantType: "eth", wantSource: outcome.TypeBody, wantFallback: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			snap := snapshot(c.phase, func(s *config.Snapshot) { s.Policy.Features.EnableAdvancedNetworking = !c.noAdvanced })
			h := newHarness(t, snap, harnessOpts{client: c.opts, lookup: namedLookup{}})
			id := "req-" + strings.ReplaceAll(c.name, " ", "-")
			hdr := map[string]string{"x-request-id": id}
			if c.ctype != "" {
				hdr["content-type"] = c.ctype
			}
			res := h.do(t, extproctest.Request{Method: c.method, Path: c.path, Headers: hdr, Body: []byte(c.body),
				Upstream: extproctest.Upstream{ServedBy: c.want, Attempts: 1}})
			if res.FailedOpen {
				t.Fatalf("failed open: %v", res.FailReason)
			}
			if res.BodyRequested != c.wantBody || res.BodySent != c.wantBody {
				t.Errorf("body requested=%v sent=%v, want %v", res.BodyRequested, res.BodySent, c.wantBody)
			}
			if c.wantBody && res.HeadersPhaseBackend != "perl" {
				t.Errorf("headers-phase backend %s, want perl while the body is pending", res.HeadersPhaseBackend)
			}
			if res.Backend != c.want {
				t.Errorf("backend %s, want %s", res.Backend, c.want)
			}
			ev := h.obs.byRequestID(t, id, 2)
			if len(ev) != 2 || ev[0].kind != "decided" || ev[1].kind != "finished" {
				t.Fatalf("events %+v, want decided+finished", ev)
			}
			d := ev[0].dec
			if d.IfaceType != c.wantType || d.TypeSource != c.wantSource || (d.TypeError != "") != c.wantTypeErr {
				t.Errorf("type %q source %q error %q; want %q %q error=%v", d.IfaceType, d.TypeSource, d.TypeError, c.wantType, c.wantSource, c.wantTypeErr)
			}
			if strings.Contains(d.TypeError, "xxxxxxxx") || strings.Contains(d.TypeError, "bridge_ports") {
				t.Errorf("type error echoes the body: %q", d.TypeError)
			}
			if ev[1].result.Fallback != c.wantFallback {
				t.Errorf("Fallback=%v, want %v", ev[1].result.Fallback, c.wantFallback)
			}
		})
	}
}

// TestBodyOverrideRefused: an Envoy that refuses the mode override (or
// never sends the body) leaves the request on the provisional Perl route,
// and the outcome records exactly that.
func TestBodyOverrideRefused(t *testing.T) {
	h := newHarness(t, snapshot(routing.RustBasicWrite), harnessOpts{client: extproctest.Options{DisallowModeOverride: true}})
	res := h.do(t, extproctest.Request{Method: "POST", Path: "/api2/json/nodes/pve1/network", Body: []byte("type=eth"),
		Headers: map[string]string{"x-request-id": "refused"}, Upstream: extproctest.Upstream{ServedBy: "perl", Attempts: 1}})
	if res.Backend != "perl" || res.BodySent {
		t.Fatalf("backend %s, body sent %v; want perl, no body", res.Backend, res.BodySent)
	}
	ev := h.obs.byRequestID(t, "refused", 2)
	if len(ev) != 2 || ev[0].dec.Decision.Backend != routing.Perl || ev[1].kind != "finished" || ev[1].result.Fallback {
		t.Fatalf("events %+v", ev)
	}
}

// TestClientBackendHeaderIgnored: a client-sent x-pve-backend never
// decides, whichever way it points.
func TestClientBackendHeaderIgnored(t *testing.T) {
	cases := []struct {
		phase  routing.Phase
		client string
		want   string
	}{
		{routing.PerlOnly, "rust", "perl"},
		{routing.RustFull, "perl", "rust"},
		{routing.RustFull, "rust, perl", "rust"},
	}
	for _, c := range cases {
		t.Run(c.phase.String()+"/"+c.client, func(t *testing.T) {
			h := newHarness(t, snapshot(c.phase), harnessOpts{})
			res := h.do(t, extproctest.Request{Method: "GET", Path: "/api2/json/nodes/pve1/network",
				Headers: map[string]string{"x-pve-backend": c.client}})
			if res.Backend != c.want {
				t.Fatalf("routed to %q, want %q", res.Backend, c.want)
			}
			// Not a network request: the client header must not survive either.
			res = h.do(t, extproctest.Request{Method: "GET", Path: "/api2/json/version",
				Headers: map[string]string{"x-pve-backend": "rust"}})
			if res.Backend != "perl" {
				t.Fatalf("not-network routed to %q", res.Backend)
			}
		})
	}
}

// TestOutcomeReporting: response headers become an outcome.Result.
func TestOutcomeReporting(t *testing.T) {
	h := newHarness(t, snapshot(routing.RustReadOnly), harnessOpts{})
	cases := []struct {
		name     string
		up       extproctest.Upstream
		fallback bool
	}{
		{"rust served", extproctest.Upstream{Status: 200, ServedBy: "rust", Attempts: 1}, false},
		{"fell back to perl", extproctest.Upstream{Status: 200, ServedBy: "perl", Attempts: 2}, true},
		{"local reply", extproctest.Upstream{Status: 503, Attempts: 2}, false},
		{"bogus served-by", extproctest.Upstream{Status: 500, ServedBy: "nginx", Attempts: 1}, false},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := fmt.Sprintf("outcome-%d", i)
			h.do(t, extproctest.Request{Method: "GET", Path: "/api2/json/nodes/pve1/network", Upstream: c.up,
				Headers: map[string]string{"x-request-id": id}})
			ev := h.obs.byRequestID(t, id, 2)
			if len(ev) != 2 {
				t.Fatalf("events %+v", ev)
			}
			r := ev[1].result
			wantServed := c.up.ServedBy
			if wantServed != "rust" && wantServed != "perl" {
				wantServed = ""
			}
			if r.ServedBy != wantServed || r.Attempts != c.up.Attempts || r.Status != c.up.Status || r.Fallback != c.fallback || r.Duration <= 0 {
				t.Errorf("result %+v", r)
			}
		})
	}
}

// TestProtocolErrors: out-of-order and empty messages end the stream
// with a clear status and never panic; messages the service does not use
// get a CONTINUE of the matching type.
func TestProtocolErrors(t *testing.T) {
	h := newHarness(t, snapshot(routing.RustFull), harnessOpts{})
	rh := func() *extprocv3.ProcessingRequest {
		return extproctest.RequestHeaders("GET", "/api2/json/nodes/pve1/network", true, map[string]string{"x-request-id": "proto"})
	}
	resp := extproctest.ResponseHeaders(extproctest.Upstream{ServedBy: "rust"})
	trailers := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestTrailers{RequestTrailers: &extprocv3.HttpTrailers{}}}
	respTrailers := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseTrailers{ResponseTrailers: &extprocv3.HttpTrailers{}}}
	respBody := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: []byte("{}"), EndOfStream: true}}}
	cases := []struct {
		name string
		msgs []*extprocv3.ProcessingRequest
		// wantReplies: the oneof type names of the replies before the end.
		wantReplies []string
		wantCode    codes.Code
		wantMsg     string
	}{
		{"body before headers", []*extprocv3.ProcessingRequest{extproctest.RequestBody([]byte("x"), true)}, nil, codes.FailedPrecondition, "request_body before request_headers"},
		{"response before request", []*extprocv3.ProcessingRequest{resp}, nil, codes.FailedPrecondition, "response_headers before request_headers"},
		{"trailers before headers", []*extprocv3.ProcessingRequest{trailers}, nil, codes.FailedPrecondition, "request_trailers before request_headers"},
		{"response body before headers", []*extprocv3.ProcessingRequest{respBody}, nil, codes.FailedPrecondition, "response_body before request_headers"},
		{"second request headers", []*extprocv3.ProcessingRequest{rh(), rh()}, []string{"RequestHeaders"}, codes.FailedPrecondition, "second request_headers"},
		{"second response headers", []*extprocv3.ProcessingRequest{rh(), resp, resp}, []string{"RequestHeaders", "ResponseHeaders"}, codes.FailedPrecondition, "second response_headers"},
		{"empty message", []*extprocv3.ProcessingRequest{{}}, nil, codes.InvalidArgument, "carries no message"},
		{"unused kinds continue", []*extprocv3.ProcessingRequest{rh(), extproctest.RequestBody([]byte("unasked"), true), trailers, resp, respBody, respTrailers},
			[]string{"RequestHeaders", "RequestBody", "RequestTrailers", "ResponseHeaders", "ResponseBody", "ResponseTrailers"}, codes.OK, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h.drainProcErrs()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			st, err := h.ext.Process(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			var end error
			for _, m := range c.msgs {
				if err := st.Send(m); err != nil {
					break
				}
				r, err := st.Recv()
				if err != nil {
					end = err
					break
				}
				typ := fmt.Sprintf("%T", r.Response)
				got = append(got, typ[strings.LastIndex(typ, "_")+1:])
			}
			if end == nil {
				_ = st.CloseSend()
				_, end = st.Recv()
			}
			if strings.Join(got, ",") != strings.Join(c.wantReplies, ",") {
				t.Errorf("replies %v, want %v", got, c.wantReplies)
			}
			if code := status.Code(end); c.wantCode == codes.OK {
				if end.Error() != "EOF" {
					t.Errorf("stream ended with %v, want OK", end)
				}
			} else if code != c.wantCode || !strings.Contains(status.Convert(end).Message(), c.wantMsg) {
				t.Errorf("stream ended with %v, want %s containing %q", end, c.wantCode, c.wantMsg)
			}
			perr := h.nextProcErr(t)
			if c.wantCode == codes.OK && perr != nil {
				t.Errorf("Process returned %v, want nil", perr)
			}
		})
	}
}

// TestEarlyClose: streams that end before the response headers are a
// normal end (Process returns nil) and are reported as abandoned.
func TestEarlyClose(t *testing.T) {
	h := newHarness(t, snapshot(routing.RustFull), harnessOpts{})
	cases := []struct {
		name       string
		stop       extproctest.Stop
		wantReason string
	}{
		{"half-close after request (response SKIP)", extproctest.StopAfterRequest, "stream closed before response headers"},
		{"client gone (cancel)", extproctest.CancelAfterRequest, "stream canceled before response headers"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h.drainProcErrs()
			id := fmt.Sprintf("early-%d", i)
			res := h.do(t, extproctest.Request{Method: "GET", Path: "/api2/json/nodes/pve1/network", Stop: c.stop,
				Headers: map[string]string{"x-request-id": id}})
			if res.Backend != "rust" {
				t.Errorf("backend %s", res.Backend)
			}
			if err := h.nextProcErr(t); err != nil {
				t.Errorf("Process returned %v, want nil", err)
			}
			ev := h.obs.byRequestID(t, id, 2)
			if len(ev) != 2 || ev[1].kind != "abandoned" || ev[1].reason != c.wantReason {
				t.Fatalf("events %+v, want decided + abandoned %q", ev, c.wantReason)
			}
		})
	}
	t.Run("cancel right after request headers", func(t *testing.T) {
		h.drainProcErrs()
		h.do(t, extproctest.Request{Method: "GET", Path: "/api2/json/nodes/pve1/network", Stop: extproctest.CancelAfterRequestHeaders})
		if err := h.nextProcErr(t); err != nil {
			t.Errorf("Process returned %v, want nil", err)
		}
	})
	t.Run("body never sent", func(t *testing.T) {
		h.snap.Store(snapshot(routing.RustBasicWrite))
		defer h.snap.Store(snapshot(routing.RustFull))
		ctx, cancel := context.WithCancel(context.Background())
		st, err := h.ext.Process(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_ = st.Send(extproctest.RequestHeaders("POST", "/api2/json/nodes/pve1/network", false, map[string]string{"x-request-id": "nobody"}))
		r, err := st.Recv()
		if err != nil || r.GetModeOverride() == nil {
			t.Fatalf("want a body request, got %v %v", r, err)
		}
		cancel()
		ev := h.obs.byRequestID(t, "nobody", 2)
		if len(ev) != 2 || ev[0].dec.Decision.Backend != routing.Perl || ev[1].kind != "abandoned" {
			t.Fatalf("events %+v", ev)
		}
	})
}

// slowLookup blocks for delay, ignoring cancellation, like a hung API.
type slowLookup struct{ delay time.Duration }

func (s slowLookup) LookupType(context.Context, string, string) (string, error) {
	time.Sleep(s.delay)
	return "eth", nil
}

// TestMessageTimeoutFailsOpen: when the router is slower than Envoy's
// message_timeout, Envoy gives up and the request stays on Perl.
func TestMessageTimeoutFailsOpen(t *testing.T) {
	h := newHarness(t, snapshot(routing.RustBasicWrite), harnessOpts{
		lookup: slowLookup{delay: 300 * time.Millisecond},
		client: extproctest.Options{MessageTimeout: 50 * time.Millisecond},
	})
	res := h.do(t, extproctest.Request{Method: "DELETE", Path: "/api2/json/nodes/pve1/network/eth0"})
	if !res.FailedOpen || res.Backend != "perl" {
		t.Fatalf("failed open %v (%v), backend %s; want fail-open to perl", res.FailedOpen, res.FailReason, res.Backend)
	}
	if err := h.nextProcErr(t); err != nil {
		t.Errorf("Process returned %v after Envoy gave up, want nil", err)
	}
}

// TestSnapshotPerRequest: a reload between request and response does not
// change the decision already made.
func TestSnapshotPerRequest(t *testing.T) {
	h := newHarness(t, snapshot(routing.RustFull), harnessOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := h.ext.Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = st.Send(extproctest.RequestHeaders("GET", "/api2/json/nodes/pve1/network", true, map[string]string{"x-request-id": "reload"}))
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	h.snap.Store(snapshot(routing.PerlOnly)) // rollback mid-request
	_ = st.Send(extproctest.ResponseHeaders(extproctest.Upstream{ServedBy: "rust", Attempts: 1}))
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	_ = st.CloseSend()
	ev := h.obs.byRequestID(t, "reload", 2)
	if len(ev) != 2 || ev[1].dec.Decision.Backend != routing.Rust || ev[1].dec.Phase != routing.RustFull || ev[1].result.Fallback {
		t.Fatalf("events %+v", ev)
	}
	res := h.do(t, extproctest.Request{Method: "GET", Path: "/api2/json/nodes/pve1/network"})
	if res.Backend != "perl" {
		t.Fatalf("after rollback: %s", res.Backend)
	}
}

// TestNilSnapshotIsPerl: without a config every request goes to Perl.
func TestNilSnapshotIsPerl(t *testing.T) {
	h := newHarness(t, nil, harnessOpts{})
	res := h.do(t, extproctest.Request{Method: "GET", Path: "/api2/json/nodes/pve1/network"})
	if res.Backend != "perl" || res.FailedOpen {
		t.Fatalf("backend %s failed open %v", res.Backend, res.FailReason)
	}
}

// TestRandomSequencesNeverPanic throws random message sequences with
// random contents at the server: every stream ends with OK or a clear
// protocol status, never Internal/Unknown, and the server keeps serving.
func TestRandomSequencesNeverPanic(t *testing.T) {
	h := newHarness(t, snapshot(routing.RustBasicWrite), harnessOpts{lookup: slowLookup{}})
	rng := rand.New(rand.NewPCG(1, 2))
	methods := []string{"GET", "POST", "PUT", "DELETE", "HEAD", "", "get"}
	paths := []string{"/api2/json/nodes/pve1/network", "/api2/json/nodes/pve1/network/eth0", "/api2/extjs/nodes/%2e%2e/network", "",
		"/api2/json/cluster/sdn", "no-slash", "/api2/json/nodes/pve1/network?type=eth&type=bridge", "/api2/json/nodes/pve1/network/x?%zz"}
	bodies := [][]byte{nil, []byte("type=eth"), []byte(`{"type":`), []byte("\x00\xff"), make([]byte, routing.MaxBodyBytes+1)}
	msg := func() *extprocv3.ProcessingRequest {
		switch rng.IntN(6) {
		case 0, 1:
			hdr := map[string]string{"content-type": []string{"application/json", "text/plain", "", "a/b; x"}[rng.IntN(4)]}
			return extproctest.RequestHeaders(methods[rng.IntN(len(methods))], paths[rng.IntN(len(paths))], rng.IntN(2) == 0, hdr)
		case 2:
			return extproctest.RequestBody(bodies[rng.IntN(len(bodies))], rng.IntN(3) != 0)
		case 3:
			return extproctest.ResponseHeaders(extproctest.Upstream{Status: rng.IntN(600), ServedBy: []string{"rust", "perl", "x", ""}[rng.IntN(4)], Attempts: rng.IntN(3)})
		case 4:
			return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{}}}
		}
		return &extprocv3.ProcessingRequest{}
	}
	for i := range 300 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := h.ext.Process(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var end error
		for range 1 + rng.IntN(6) {
			if err := st.Send(msg()); err != nil {
				break
			}
			if _, end = st.Recv(); end != nil {
				break
			}
		}
		if end == nil {
			_ = st.CloseSend()
			_, end = st.Recv()
		}
		cancel()
		if errors.Is(end, io.EOF) {
			continue // OK
		}
		switch status.Code(end) {
		case codes.Internal, codes.Unknown:
			t.Fatalf("sequence %d ended with %v", i, end)
		}
	}
	res := h.do(t, extproctest.Request{Method: "GET", Path: "/api2/json/nodes/pve1/network"})
	if res.Backend != "rust" || res.FailedOpen {
		t.Fatalf("server unhealthy after random sequences: %+v", res)
	}
}
