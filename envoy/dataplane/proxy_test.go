package dataplane

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pve-migration/router/internal/logsink"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/pve-migration/router/envoy"
)

// fakeExtProc is a scripted ext_proc server for the cases the real
// decision service never produces (slow, broken, spurious, forbidden
// mutations). Each hook answers one message type; nil means "continue".
type fakeExtProc struct {
	extprocv3.UnimplementedExternalProcessorServer
	reqHeaders  func(*extprocv3.HttpHeaders) (*extprocv3.ProcessingResponse, error)
	reqBody     func(*extprocv3.HttpBody) (*extprocv3.ProcessingResponse, error)
	respHeaders func(*extprocv3.HttpHeaders) (*extprocv3.ProcessingResponse, error)

	mu   sync.Mutex
	msgs []*extprocv3.ProcessingRequest
	md   []metadata.MD
}

func (f *fakeExtProc) Process(srv grpc.BidiStreamingServer[extprocv3.ProcessingRequest, extprocv3.ProcessingResponse]) error {
	md, _ := metadata.FromIncomingContext(srv.Context())
	f.mu.Lock()
	f.md = append(f.md, md)
	f.mu.Unlock()
	for {
		req, err := srv.Recv()
		if err != nil {
			return nil
		}
		f.mu.Lock()
		f.msgs = append(f.msgs, req)
		f.mu.Unlock()
		var resp *extprocv3.ProcessingResponse
		switch m := req.GetRequest().(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			if f.reqHeaders != nil {
				resp, err = f.reqHeaders(m.RequestHeaders)
			}
			if resp == nil && err == nil {
				resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}}
			}
		case *extprocv3.ProcessingRequest_RequestBody:
			if f.reqBody != nil {
				resp, err = f.reqBody(m.RequestBody)
			}
			if resp == nil && err == nil {
				resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}}}
			}
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			if f.respHeaders != nil {
				resp, err = f.respHeaders(m.ResponseHeaders)
			}
			if resp == nil && err == nil {
				resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}}
			}
		}
		if err != nil {
			return err
		}
		if err := srv.Send(resp); err != nil {
			return nil
		}
	}
}

func (f *fakeExtProc) messages() []*extprocv3.ProcessingRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*extprocv3.ProcessingRequest(nil), f.msgs...)
}

func set(kv ...string) *extprocv3.HeaderMutation {
	m := &extprocv3.HeaderMutation{}
	for i := 0; i+1 < len(kv); i += 2 {
		m.SetHeaders = append(m.SetHeaders, &corev3.HeaderValueOption{
			Header: &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])},
			//lint:ignore SA1019 ext_proc reads only the deprecated append field.
			Append: wrapperspb.Bool(false),
		})
	}
	return m
}

func headersAnswer(m *extprocv3.HeaderMutation) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{
		Response: &extprocv3.CommonResponse{HeaderMutation: m, ClearRouteCache: true}}}}
}

// rustAnswer is what the decision service says for a rust request.
func rustAnswer(*extprocv3.HttpHeaders) (*extprocv3.ProcessingResponse, error) {
	return headersAnswer(set("x-pve-backend", "rust")), nil
}

// recorder is a fake backend that remembers the requests it got.
type recorder struct {
	name    string
	srv     *httptest.Server
	handler http.HandlerFunc
	mu      sync.Mutex
	reqs    []*http.Request
	bodies  [][]byte
}

func newRecorder(t *testing.T, name string, h http.HandlerFunc) *recorder {
	rec := &recorder{name: name, handler: h}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b []byte
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			b, _ = io.ReadAll(r.Body)
		}
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, r)
		rec.bodies = append(rec.bodies, b)
		rec.mu.Unlock()
		if rec.handler != nil {
			rec.handler(w, r)
			return
		}
		_, _ = io.WriteString(w, `{"data":null}`)
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reqs)
}

func (r *recorder) last() *http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reqs) == 0 {
		return nil
	}
	return r.reqs[len(r.reqs)-1]
}

type unitEnv struct {
	perl, rust *recorder
	ext        *fakeExtProc
	proxy      *Proxy
	front      *httptest.Server
}

func newUnitEnv(t *testing.T, ext *fakeExtProc, perlH, rustH http.HandlerFunc, mod func(*Options)) *unitEnv {
	t.Helper()
	u := &unitEnv{perl: newRecorder(t, "perl", perlH), rust: newRecorder(t, "rust", rustH), ext: ext}
	client, stop, err := InProcessExtProc(ext)
	if err != nil {
		t.Fatal(err)
	}
	if overLink(t) {
		stop()
		client, stop = linkTo(ext)
	}
	t.Cleanup(stop)
	opts := Options{
		Perl: Upstream{URL: u.perl.srv.URL}, Rust: Upstream{URL: u.rust.srv.URL},
		ExtProc: client, Logger: quietLogger(), DisableHealthChecks: true,
	}
	if mod != nil {
		mod(&opts)
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	u.proxy = p
	u.front = httptest.NewServer(p)
	t.Cleanup(u.front.Close)
	return u
}

func (u *unitEnv) get(t *testing.T, method, path string, body io.Reader, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u.front.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := u.front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// TestExtProcMessages checks what the decision service is sent: one stream
// per request, request_headers with lower-case keys, pseudo-headers and
// raw_value, end_of_stream, the x-request-id metadata, request attributes,
// then response_headers with x-pve-served-by and x-envoy-attempt-count.
func TestExtProcMessages(t *testing.T) {
	ext := &fakeExtProc{reqHeaders: rustAnswer}
	u := newUnitEnv(t, ext, nil, nil, nil)
	resp, _ := u.get(t, "GET", "/api2/json//nodes/pve1/./network?type=bridge", nil, map[string]string{"Cookie": "PVEAuthCookie=secret", "X-Request-Id": "client-chosen"})
	if resp.StatusCode != 200 || resp.Header.Get("X-Pve-Served-By") != "rust" || resp.Header.Get("X-Envoy-Attempt-Count") != "1" {
		t.Fatalf("response %d, headers %v", resp.StatusCode, resp.Header)
	}
	msgs := ext.messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want request_headers and response_headers", len(msgs))
	}
	rh := msgs[0].GetRequestHeaders()
	if rh == nil || !rh.GetEndOfStream() {
		t.Fatalf("first message %v", msgs[0])
	}
	got := map[string]string{}
	for _, h := range rh.GetHeaders().GetHeaders() {
		if h.GetValue() != "" {
			t.Errorf("header %s uses value, not raw_value", h.GetKey())
		}
		if h.GetKey() != strings.ToLower(h.GetKey()) {
			t.Errorf("header key %q is not lower case", h.GetKey())
		}
		got[h.GetKey()] = string(h.GetRawValue())
	}
	want := map[string]string{":method": "GET", ":path": "/api2/json/nodes/pve1/network?type=bridge", ":scheme": "http", "cookie": "PVEAuthCookie=secret", "x-forwarded-proto": "http"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("request header %s = %q, want %q", k, got[k], v)
		}
	}
	if got[":authority"] == "" || got["x-request-id"] == "" || got["x-request-id"] == "client-chosen" || got["x-forwarded-for"] != "127.0.0.1" {
		t.Errorf("request headers %v: want :authority, a fresh x-request-id (edge), x-forwarded-for", got)
	}
	if a := msgs[0].GetAttributes()["envoy.filters.http.ext_proc"].GetFields()["source.address"].GetStringValue(); !strings.HasPrefix(a, "127.0.0.1:") {
		t.Errorf("source.address attribute %q", a)
	}
	if md := ext.md[0].Get("x-request-id"); len(md) != 1 || md[0] != got["x-request-id"] {
		t.Errorf("x-request-id metadata %v, header %q", md, got["x-request-id"])
	}
	if msgs[0].GetProtocolConfig() == nil {
		t.Error("no protocol_config on the first message")
	}
	rsp := msgs[1].GetResponseHeaders()
	resph := map[string]string{}
	for _, h := range rsp.GetHeaders().GetHeaders() {
		resph[h.GetKey()] = string(h.GetRawValue())
	}
	if resph[":status"] != "200" || resph["x-pve-served-by"] != "rust" || resph["x-envoy-attempt-count"] != "1" {
		t.Errorf("response headers to ext_proc: %v", resph)
	}
	attrs := msgs[1].GetAttributes()["envoy.filters.http.ext_proc"].GetFields()
	if attrs["response.code"].GetNumberValue() != 200 || attrs["upstream.request_attempt_count"].GetNumberValue() != 1 ||
		attrs["xds.route_name"].GetStringValue() != "rust_read" || !strings.Contains(attrs["xds.upstream_host_metadata"].GetStringValue(), `"rust"`) {
		t.Errorf("response attributes: %v", attrs)
	}
	// The backend got the normalised path and none of the routing headers.
	r := u.rust.last()
	if r.URL.RequestURI() != "/api2/json/nodes/pve1/network?type=bridge" || r.Header.Get("X-Pve-Backend") != "" {
		t.Errorf("upstream request %s, x-pve-backend %q", r.URL.RequestURI(), r.Header.Get("X-Pve-Backend"))
	}
}

// TestHeadersToUpstream: client routing and x-envoy-* headers never reach a
// backend; the decision service's timeout headers are consumed by the
// router; x-forwarded-* and x-request-id are added; Host is kept.
func TestHeadersToUpstream(t *testing.T) {
	ext := &fakeExtProc{reqHeaders: func(*extprocv3.HttpHeaders) (*extprocv3.ProcessingResponse, error) {
		return headersAnswer(set("x-pve-backend", "rust", "x-envoy-upstream-rq-timeout-ms", "3000", "x-envoy-upstream-rq-per-try-timeout-ms", "1000", "x-envoy-max-retries", "1")), nil
	}}
	u := newUnitEnv(t, ext, nil, nil, nil)
	hdr := map[string]string{"X-Pve-Backend": "perl", "X-Envoy-Retry-On": "5xx", "X-Envoy-Max-Retries": "9", "X-Envoy-Internal": "true", "Authorization": "PVEAPIToken=root@pam!t=s3cret", "Connection": "X-Hop", "X-Hop": "1"}
	resp, _ := u.get(t, "GET", "/api2/json/nodes/pve1/network", nil, hdr)
	if resp.Header.Get("X-Pve-Served-By") != "rust" {
		t.Fatalf("served by %q", resp.Header.Get("X-Pve-Served-By"))
	}
	r := u.rust.last()
	for _, h := range []string{"X-Pve-Backend", "X-Envoy-Retry-On", "X-Envoy-Max-Retries", "X-Envoy-Internal", "X-Envoy-Upstream-Rq-Timeout-Ms", "X-Envoy-Upstream-Rq-Per-Try-Timeout-Ms", "X-Hop"} {
		if v := r.Header.Get(h); v != "" {
			t.Errorf("backend got %s: %q", h, v)
		}
	}
	if r.Header.Get("Authorization") == "" || r.Header.Get("X-Request-Id") == "" || r.Header.Get("X-Forwarded-For") != "127.0.0.1" ||
		r.Header.Get("X-Envoy-Expected-Rq-Timeout-Ms") != "1000" || r.Host != strings.TrimPrefix(u.front.URL, "http://") {
		t.Errorf("backend headers %v host %q", r.Header, r.Host)
	}
	if _, ok := r.Header["User-Agent"]; ok && r.Header.Get("User-Agent") != "Go-http-client/1.1" {
		t.Logf("user agent %q", r.Header.Get("User-Agent"))
	}
}

// TestMutationRules: the service may set only the allow-listed headers;
// anything else is dropped and counted, and value+raw_value is a 500.
func TestMutationRules(t *testing.T) {
	ext := &fakeExtProc{reqHeaders: func(h *extprocv3.HttpHeaders) (*extprocv3.ProcessingResponse, error) {
		m := set("x-pve-backend", "rust", "x-envoy-retry-on", "5xx", "authorization", "forged", "host", "evil", ":path", "/elsewhere")
		m.RemoveHeaders = []string{"cookie", ":method"}
		for _, hv := range h.GetHeaders().GetHeaders() {
			if hv.GetKey() == "x-test-both" {
				m.SetHeaders = append(m.SetHeaders, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: "x-pve-backend", Value: "rust", RawValue: []byte("rust")}})
			}
		}
		return headersAnswer(m), nil
	}}
	u := newUnitEnv(t, ext, nil, nil, nil)
	resp, _ := u.get(t, "GET", "/api2/json/nodes/pve1/network", nil, map[string]string{"Cookie": "a=b", "Authorization": "real"})
	if resp.StatusCode != 200 || resp.Header.Get("X-Pve-Served-By") != "rust" {
		t.Fatalf("%d served by %q", resp.StatusCode, resp.Header.Get("X-Pve-Served-By"))
	}
	r := u.rust.last()
	if r.Header.Get("Authorization") != "real" || r.Header.Get("Cookie") != "a=b" || r.URL.Path != "/api2/json/nodes/pve1/network" || r.Method != "GET" {
		t.Errorf("a disallowed mutation was applied: %v %s %s", r.Header, r.Method, r.URL)
	}
	if n := u.proxy.Metrics().RejectedHeaderMutations; n != 6 {
		t.Errorf("rejected mutations %d, want 6", n)
	}
	resp, _ = u.get(t, "GET", "/api2/json/nodes/pve1/network", nil, map[string]string{"X-Test-Both": "1"})
	if resp.StatusCode != 500 {
		t.Errorf("value+raw_value: status %d, want Envoy's 500", resp.StatusCode)
	}
}

// TestExtProcFailures: failure_mode_allow true continues on perl; false
// answers 504 for a timeout and 500 for other errors, as Envoy does.
func TestExtProcFailures(t *testing.T) {
	slow := func(*extprocv3.HttpHeaders) (*extprocv3.ProcessingResponse, error) {
		time.Sleep(300 * time.Millisecond)
		return rustAnswer(nil)
	}
	broken := func(*extprocv3.HttpHeaders) (*extprocv3.ProcessingResponse, error) {
		return nil, status.Error(codes.Internal, "boom")
	}
	spurious := func(*extprocv3.HttpHeaders) (*extprocv3.ProcessingResponse, error) {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}, nil
	}
	for _, c := range []struct {
		name       string
		hook       func(*extprocv3.HttpHeaders) (*extprocv3.ProcessingResponse, error)
		allow      bool
		wantStatus int
		timeouts   uint64
	}{
		{"timeout, fail open", slow, true, 200, 1},
		{"timeout, fail closed", slow, false, 504, 1},
		{"grpc error, fail open", broken, true, 200, 0},
		{"grpc error, fail closed", broken, false, 500, 0},
		{"spurious, fail open", spurious, true, 200, 0},
		{"spurious, fail closed", spurious, false, 500, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			settings := &envoy.ExtProcSettings{FailureModeAllow: c.allow, MessageTimeout: 100 * time.Millisecond, AllowModeOverride: true}
			u := newUnitEnv(t, &fakeExtProc{reqHeaders: c.hook}, nil, nil, func(o *Options) { o.ExtProcSettings = settings })
			resp, _ := u.get(t, "GET", "/api2/json/nodes/pve1/network", nil, map[string]string{"X-Pve-Backend": "rust"})
			if resp.StatusCode != c.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.wantStatus)
			}
			if c.allow && (resp.Header.Get("X-Pve-Served-By") != "perl" || u.rust.count() != 0) {
				t.Errorf("fail-open request served by %q; rust saw %d", resp.Header.Get("X-Pve-Served-By"), u.rust.count())
			}
			if !c.allow && u.rust.count()+u.perl.count() != 0 {
				t.Errorf("fail-closed request reached a backend")
			}
			m := u.proxy.Metrics()
			if m.ExtProcTimeouts != c.timeouts || (c.allow && m.FailOpen != 1) {
				t.Errorf("metrics %+v", m)
			}
		})
	}
}

// TestBufferedBody: the service asks for the body (mode_override BUFFERED),
// decides on it, and a body over the buffer limit gets Envoy's 413.
func TestBufferedBody(t *testing.T) {
	ext := &fakeExtProc{
		reqHeaders: func(*extprocv3.HttpHeaders) (*extprocv3.ProcessingResponse, error) {
			r := headersAnswer(set("x-pve-backend", "perl"))
			r.ModeOverride = &extprocfilterv3.ProcessingMode{RequestHeaderMode: extprocfilterv3.ProcessingMode_SEND, ResponseHeaderMode: extprocfilterv3.ProcessingMode_SEND, RequestBodyMode: extprocfilterv3.ProcessingMode_BUFFERED}
			return r, nil
		},
		reqBody: func(b *extprocv3.HttpBody) (*extprocv3.ProcessingResponse, error) {
			backend := "perl"
			if bytes.Contains(b.GetBody(), []byte("type=eth")) && b.GetEndOfStream() {
				backend = "rust"
			}
			return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{
				Response: &extprocv3.CommonResponse{HeaderMutation: set("x-pve-backend", backend), ClearRouteCache: true}}}}, nil
		},
	}
	u := newUnitEnv(t, ext, nil, nil, func(o *Options) { o.MaxBodyBytes = 64 << 10 })
	hdr := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	resp, _ := u.get(t, "PUT", "/api2/json/nodes/pve1/network/eno1", strings.NewReader("type=eth&mtu=9000"), hdr)
	if resp.Header.Get("X-Pve-Served-By") != "rust" {
		t.Fatalf("PUT type=eth served by %q", resp.Header.Get("X-Pve-Served-By"))
	}
	u.rust.mu.Lock()
	body := string(u.rust.bodies[0])
	u.rust.mu.Unlock()
	if body != "type=eth&mtu=9000" {
		t.Errorf("rust got body %q", body)
	}
	resp, _ = u.get(t, "PUT", "/api2/json/nodes/pve1/network/vmbr0", strings.NewReader("type=bridge"), hdr)
	if resp.Header.Get("X-Pve-Served-By") != "perl" {
		t.Errorf("PUT type=bridge served by %q", resp.Header.Get("X-Pve-Served-By"))
	}
	big := strings.Repeat("x", 100<<10)
	resp, _ = u.get(t, "PUT", "/api2/json/nodes/pve1/network/eno1", strings.NewReader(big), hdr)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized buffered body: status %d, want 413", resp.StatusCode)
	}
}

// TestLargeWriteStreamsWithoutRetry: a write body over the retry buffer is
// streamed to rust and not retried, so a 501 from rust stands.
func TestLargeWriteStreamsWithoutRetry(t *testing.T) {
	notImpl := func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(501) }
	u := newUnitEnv(t, &fakeExtProc{reqHeaders: rustAnswer}, nil, notImpl, func(o *Options) { o.RetryBufferBytes = 1 << 10 })
	resp, _ := u.get(t, "POST", "/api2/json/nodes/pve1/network", strings.NewReader("iface=eno9&type=eth"), nil)
	if resp.Header.Get("X-Pve-Served-By") != "perl" || resp.Header.Get("X-Envoy-Attempt-Count") != "2" {
		t.Fatalf("small write after 501: served by %q after %s", resp.Header.Get("X-Pve-Served-By"), resp.Header.Get("X-Envoy-Attempt-Count"))
	}
	big := strings.Repeat("a", 4<<10)
	resp, _ = u.get(t, "POST", "/api2/json/nodes/pve1/network", strings.NewReader(big), nil)
	if resp.StatusCode != 501 || resp.Header.Get("X-Pve-Served-By") != "rust" {
		t.Errorf("large write: %d served by %q, want rust's 501 (no retry)", resp.StatusCode, resp.Header.Get("X-Pve-Served-By"))
	}
	u.rust.mu.Lock()
	got := len(u.rust.bodies[len(u.rust.bodies)-1])
	u.rust.mu.Unlock()
	if got != len(big) {
		t.Errorf("rust got %d body bytes, want %d", got, len(big))
	}
}

// TestLongPollingIsFlushed: the first chunk of a slow response reaches the
// client before the backend has finished.
func TestLongPollingIsFlushed(t *testing.T) {
	release := make(chan struct{})
	slow := func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		<-release
		_, _ = io.WriteString(w, "second\n")
	}
	u := newUnitEnv(t, &fakeExtProc{}, slow, nil, nil)
	resp, err := u.front.Client().Get(u.front.URL + "/api2/json/nodes/pve1/tasks/UPID:x/log")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	close(release)
	if rest, _ := io.ReadAll(br); string(rest) != "second\n" {
		t.Errorf("rest %q", rest)
	}
}

// TestWebsocketUpgrade: a console websocket is upgraded through the data
// plane to perl and bytes flow both ways.
func TestWebsocketUpgrade(t *testing.T) {
	echo := func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" || !strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade") {
			http.Error(w, "not an upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n")
		buf := make([]byte, 5)
		if _, err := io.ReadFull(brw, buf); err == nil {
			_, _ = conn.Write(bytes.ToUpper(buf))
		}
	}
	u := newUnitEnv(t, &fakeExtProc{}, echo, nil, nil)
	conn, err := net.Dial("tcp", strings.TrimPrefix(u.front.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(conn, "GET /api2/json/nodes/pve1/qemu/100/vncwebsocket?port=5900&vncticket=SECRET HTTP/1.1\r\nHost: pve\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: abc\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("X-Pve-Served-By") != "perl" {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	_, _ = io.WriteString(conn, "hello")
	buf := make([]byte, 5)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "HELLO" {
		t.Fatalf("echo %q, %v", buf, err)
	}
	if u.proxy.Metrics().Upgrades != 1 {
		t.Errorf("upgrades %d", u.proxy.Metrics().Upgrades)
	}
}

// TestFingerprintPin: a backend is trusted through its pinned SHA-256
// fingerprint (as PVE clients pin a node), and a wrong pin fails the
// connection like a connect failure.
func TestFingerprintPin(t *testing.T) {
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
	defer tlsSrv.Close()
	sum := sha256.Sum256(tlsSrv.Certificate().Raw)
	pin := formatFingerprint(sum[:])
	u := newUnitEnv(t, &fakeExtProc{}, nil, nil, func(o *Options) { o.Perl = Upstream{URL: tlsSrv.URL, Fingerprint: strings.ToLower(pin)} })
	resp, body := u.get(t, "GET", "/api2/json/version", nil, nil)
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("pinned: %d %q", resp.StatusCode, body)
	}
	wrong := strings.Repeat("AB:", 31) + "AB"
	u = newUnitEnv(t, &fakeExtProc{}, nil, nil, func(o *Options) { o.Perl = Upstream{URL: tlsSrv.URL, Fingerprint: wrong} })
	resp, body = u.get(t, "GET", "/api2/json/version", nil, nil)
	if resp.StatusCode != 503 {
		t.Fatalf("wrong pin: %d %q", resp.StatusCode, body)
	}
	if _, err := New(Options{ExtProc: u.proxy.opts.ExtProc, Perl: Upstream{URL: tlsSrv.URL, Fingerprint: "AA:BB"}, Rust: Upstream{URL: "http://127.0.0.1:1"}}); err == nil {
		t.Error("a short fingerprint was accepted")
	}
}

// TestServeTLSAndLimits: Serve with a self-signed certificate, the header
// size limit, and graceful shutdown.
func TestServeTLSAndLimits(t *testing.T) {
	u := newUnitEnv(t, &fakeExtProc{}, nil, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- u.proxy.Serve(ctx, ServeOptions{Addr: "127.0.0.1:0", SelfSigned: true, Ready: func(a net.Addr) { addrc <- a }})
	}()
	addr := (<-addrc).String()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Get("https://" + addr + "/api2/json/version")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil || resp.Proto != "HTTP/1.1" {
		t.Errorf("status %d proto %s", resp.StatusCode, resp.Proto)
	}
	req, _ := http.NewRequest("GET", "https://"+addr+"/api2/json/version", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 20<<10))
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("20 KiB of headers: status %d, want 431", resp.StatusCode)
	}
	// net/http's Shutdown waits up to 5 s for a connection still in its
	// TLS handshake (StateNew); the client may hold one open after the
	// 431. Close ours first, and allow for that wait.
	client.CloseIdleConnections()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(12 * time.Second):
		t.Fatal("Serve did not return after shutdown")
	}
}

// TestSlowBodyIsCutOff: a client that stops sending its body is
// disconnected after BodyReadTimeout.
func TestSlowBodyIsCutOff(t *testing.T) {
	u := newUnitEnv(t, &fakeExtProc{}, nil, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrc := make(chan net.Addr, 1)
	go func() {
		_ = u.proxy.Serve(ctx, ServeOptions{Addr: "127.0.0.1:0", BodyReadTimeout: 200 * time.Millisecond, Ready: func(a net.Addr) { addrc <- a }})
	}()
	conn, err := net.Dial("tcp", (<-addrc).String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "POST /api2/json/access/ticket HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	got, _ := io.ReadAll(conn)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("stalled body held the connection for %v", d)
	}
	if !bytes.HasPrefix(got, []byte("HTTP/1.1 408")) {
		t.Errorf("stalled body answered %q, want 408", got)
	}
}

// TestHealthCheckSkipsRust: the active health check (envoy.yaml: GET
// /api2/json/version) marks a rust that answers 503 unhealthy, after which
// the composite cluster sends attempt 1 to perl.
func TestHealthCheckSkipsRust(t *testing.T) {
	sick := func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }
	b, err := envoy.LoadBootstrap(envoy.DemoConfig())
	if err != nil {
		t.Fatal(err)
	}
	// Speed the check up for the test (envoy.yaml: every 5 s, 2 failures).
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == "rust" {
			c.GetHealthChecks()[0].Interval = durationpb.New(50 * time.Millisecond)
		}
	}
	u := newUnitEnv(t, &fakeExtProc{reqHeaders: rustAnswer}, nil, sick, func(o *Options) {
		o.Bootstrap = b
		o.DisableHealthChecks = false
	})
	waitFor(t, 5*time.Second, "rust to fail its health check", func() bool { return !u.proxy.Health().Rust.Available })
	resp, _ := u.get(t, "GET", "/api2/json/nodes/pve1/network", nil, nil)
	if resp.Header.Get("X-Pve-Served-By") != "perl" || resp.Header.Get("X-Envoy-Attempt-Count") != "1" {
		t.Errorf("served by %q after %s attempts, want perl after 1", resp.Header.Get("X-Pve-Served-By"), resp.Header.Get("X-Envoy-Attempt-Count"))
	}
	if h := u.proxy.Health(); h.Rust.LastCheckError == "" || !h.Perl.Available {
		t.Errorf("health %+v", h)
	}
}

// TestImmediateResponse: an ext_proc immediate_response is sent to the
// client as a local reply.
func TestImmediateResponse(t *testing.T) {
	ext := &fakeExtProc{reqHeaders: func(*extprocv3.HttpHeaders) (*extprocv3.ProcessingResponse, error) {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden}, Body: []byte("no"), Headers: set("x-pve-backend", "perl"),
		}}}, nil
	}}
	u := newUnitEnv(t, ext, nil, nil, nil)
	resp, body := u.get(t, "GET", "/api2/json/version", nil, nil)
	if resp.StatusCode != 403 || string(body) != "no" || u.perl.count() != 0 {
		t.Errorf("%d %q, perl saw %d", resp.StatusCode, body, u.perl.count())
	}
}

func TestNormalizeRequestPath(t *testing.T) {
	for in, want := range map[string]string{
		"/api2/json/nodes/pve1/network":           "/api2/json/nodes/pve1/network",
		"/api2//json/./nodes/x/../pve1/network/":  "/api2/json/nodes/pve1/network/",
		"/api2/json/nodes/pve1/%6Eetwork?a=%2F..": "/api2/json/nodes/pve1/network?a=%2F..",
		"/api2/json/storage/local:iso%2fx.iso":    "/api2/json/storage/local:iso%2Fx.iso",
		"/../..":                                  "/",
		"*":                                       "*",
	} {
		if got := normalizeRequestPath(in, true, true); got != want {
			t.Errorf("normalize(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRetryPolicy is the contract's retry table, through envoy.yaml's two
// rust routes: reads retry on anything, writes only when rust cannot have
// applied them.
func TestRetryPolicy(t *testing.T) {
	b, err := envoy.LoadBootstrap(envoy.DemoConfig())
	if err != nil {
		t.Fatal(err)
	}
	rt, err := envoy.NewRouteTable(b)
	if err != nil {
		t.Fatal(err)
	}
	plan := func(method string) retryPolicy {
		p, ok := rt.Match(method, "/api2/json/nodes/pve1/network", map[string]string{"x-pve-backend": "rust"})
		if !ok {
			t.Fatalf("no route for %s", method)
		}
		return newRetryPolicy(p, http.Header{})
	}
	type outcome struct {
		kind    failKind
		started bool
		status  int
	}
	cases := map[outcome][2]bool{ // {GET retries, write retries}
		{failConnect, false, 0}:            {true, true},
		{failResetBeforeRequest, false, 0}: {true, true},
		{failReset, true, 0}:               {true, false},
		{failPerTryTimeout, true, 0}:       {true, false},
		{failPerTryTimeout, false, 0}:      {true, true},
		{failGlobalTimeout, true, 0}:       {false, false},
		{failNone, true, 500}:              {true, false},
		{failNone, true, 502}:              {true, false},
		{failNone, true, 503}:              {true, false},
		{failNone, true, 501}:              {true, true},
		{failNone, true, 409}:              {false, false},
		{failNone, true, 200}:              {false, false},
	}
	for o, want := range cases {
		for i, method := range []string{"GET", "POST"} {
			for _, m := range map[string][]string{"GET": {"GET"}, "POST": {"POST", "PUT", "DELETE"}}[method] {
				_, got := plan(m).retryReason(o.kind, o.started, o.status)
				if got != want[i] {
					t.Errorf("%s %+v: retry %v, want %v", m, o, got, want[i])
				}
			}
		}
	}
	if p := plan("GET"); p.maxAttempts != 2 {
		t.Errorf("maxAttempts %d", p.maxAttempts)
	}
	h := http.Header{}
	h.Set("X-Envoy-Max-Retries", "0")
	if p, _ := rt.Match("GET", "/", map[string]string{"x-pve-backend": "rust"}); newRetryPolicy(p, h).maxAttempts != 1 {
		t.Error("x-envoy-max-retries: 0 did not turn retries off")
	}
	if p, _ := rt.Match("GET", "/", nil); newRetryPolicy(p, http.Header{}).maxAttempts != 1 {
		t.Error("the perl route retries")
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	client, stop, err := InProcessExtProc(&fakeExtProc{})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	for name, o := range map[string]Options{
		"no ext_proc":    {Perl: Upstream{URL: "http://127.0.0.1:1"}, Rust: Upstream{URL: "http://127.0.0.1:2"}},
		"no rust":        {ExtProc: client, Perl: Upstream{URL: "http://127.0.0.1:1"}},
		"path in url":    {ExtProc: client, Perl: Upstream{URL: "http://127.0.0.1:1/api2"}, Rust: Upstream{URL: "http://127.0.0.1:2"}},
		"pin on http":    {ExtProc: client, Perl: Upstream{URL: "http://127.0.0.1:1", Fingerprint: strings.Repeat("AB:", 31) + "AB"}, Rust: Upstream{URL: "http://127.0.0.1:2"}},
		"bad scheme":     {ExtProc: client, Perl: Upstream{URL: "ftp://127.0.0.1:1"}, Rust: Upstream{URL: "http://127.0.0.1:2"}},
		"missing CAFile": {ExtProc: client, Perl: Upstream{URL: "https://127.0.0.1:1", CAFile: "/nonexistent"}, Rust: Upstream{URL: "http://127.0.0.1:2"}},
	} {
		if p, err := New(o); err == nil {
			_ = p.Close()
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestNoSecretsInLogs: credentials and query strings never reach the log or
// the access log, on the normal path or on any failure path.
func TestNoSecretsInLogs(t *testing.T) {
	var buf syncBuffer
	var recs []AccessRecord
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	secrets := []string{"TOKENSECRET", "TICKETSECRET", "CSRFSECRET", "VNCSECRET"}
	hdr := map[string]string{
		"Authorization":       "PVEAPIToken=root@pam!ci=TOKENSECRET",
		"Cookie":              "PVEAuthCookie=TICKETSECRET",
		"CSRFPreventionToken": "CSRFSECRET",
	}
	for name, c := range map[string]struct {
		ext   *fakeExtProc
		rustH http.HandlerFunc
	}{
		"ok":         {&fakeExtProc{reqHeaders: rustAnswer}, nil},
		"rust 500":   {&fakeExtProc{reqHeaders: rustAnswer}, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }},
		"rust drops": {&fakeExtProc{reqHeaders: rustAnswer}, func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) }},
		"ext_proc fails": {&fakeExtProc{reqHeaders: func(*extprocv3.HttpHeaders) (*extprocv3.ProcessingResponse, error) {
			return nil, status.Error(codes.Internal, "boom")
		}}, nil},
	} {
		u := newUnitEnv(t, c.ext, nil, c.rustH, func(o *Options) {
			o.Logger = logger
			o.AccessLog = func(r AccessRecord) { mu.Lock(); recs = append(recs, r); mu.Unlock() }
		})
		for _, m := range []string{"GET", "PUT"} {
			resp, _ := u.get(t, m, "/api2/json/nodes/pve1/network/eno1?vncticket=VNCSECRET", strings.NewReader("type=eth"), hdr)
			if resp.StatusCode == 0 {
				t.Fatal(name)
			}
		}
	}
	mu.Lock()
	all := buf.String() + fmt.Sprintf("%+v", recs)
	mu.Unlock()
	if !strings.Contains(all, "dataplane request") {
		t.Fatalf("nothing was logged: %q", all)
	}
	for _, s := range secrets {
		if strings.Contains(all, s) {
			t.Errorf("%s appears in the logs:\n%s", s, all)
		}
	}
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer = logsink.Buffer

// TestFragmentInTargetIsRejected: "#" never reaches the decision service
// or a backend, as in Envoy.
func TestFragmentInTargetIsRejected(t *testing.T) {
	u := newUnitEnv(t, &fakeExtProc{}, nil, nil, nil)
	c, err := net.Dial("tcp", strings.TrimPrefix(u.front.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := "iface=vmbr9&type=bridge"
	fmt.Fprintf(c, "POST /api2/json/nodes/pve1/network#?type=eth HTTP/1.1\r\nHost: pve\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", resp.StatusCode)
	}
	if u.perl.count()+u.rust.count() != 0 {
		t.Fatalf("a backend received the request (perl %d, rust %d)", u.perl.count(), u.rust.count())
	}
}

// TestWriteNeverReplayedByTransport: a write that rust received on a reused
// keep-alive connection, which then dies, reaches rust once and perl never,
// even when the client sends an Idempotency-Key (which makes net/http treat
// a POST as replayable on a fresh connection).
func TestWriteNeverReplayedByTransport(t *testing.T) {
	var posts atomic.Int32
	rustH := func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			_, _ = io.WriteString(w, `{"data":[]}`)
			return
		}
		posts.Add(1)
		// Received in full (the recorder read the body), then the
		// connection dies without an answer.
		c, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = c.Close()
		}
	}
	ext := &fakeExtProc{reqHeaders: rustAnswer}
	u := newUnitEnv(t, ext, nil, rustH, nil)
	// A GET leaves a keep-alive connection to rust in the pool.
	if resp, _ := u.get(t, "GET", "/api2/json/nodes/pve1/network", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("warm-up GET: %d", resp.StatusCode)
	}
	resp, _ := u.get(t, "POST", "/api2/json/nodes/pve1/network", strings.NewReader("iface=eth1&type=eth"),
		map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Idempotency-Key": "k1"})
	if resp.StatusCode < 500 {
		t.Errorf("status %d: a write whose connection died after rust read it must fail, not succeed elsewhere", resp.StatusCode)
	}
	if n := posts.Load(); n != 1 {
		t.Errorf("rust received the POST %d times, want exactly 1", n)
	}
	u.perl.mu.Lock()
	defer u.perl.mu.Unlock()
	for _, r := range u.perl.reqs {
		if r.Method == http.MethodPost {
			t.Errorf("perl received the write after rust may have applied it")
		}
	}
}
