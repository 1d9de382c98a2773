package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/routing"
	"github.com/pve-migration/router/server"
)

// fzAllowedHeaders is envoy.yaml's mutation allow-list: the only headers
// the service may set.
var fzAllowedHeaders = map[string]bool{
	server.HeaderBackend:       true,
	server.HeaderPerTryTimeout: true,
	server.HeaderTimeout:       true,
	server.HeaderMaxRetries:    true,
}

// fzRig is one Processor behind the real gRPC server options
// (server.NewGRPCServer: MaxRecvMsgSize, keepalive, stream limit) on an
// in-memory connection. It lives for the whole fuzzing process; each
// input picks its snapshot.
type fzRig struct {
	snap   atomic.Pointer[config.Snapshot]
	client extprocv3.ExternalProcessorClient
	active atomic.Int64 // Process handlers running
	snaps  []*config.Snapshot
}

var (
	fzOnce   sync.Once
	fzShared *fzRig
	fzErr    error
)

// fzLookup answers DELETE type lookups from the interface name, quickly
// and without I/O: eno*/eth* are eth, vmbr* bridges, err* fail.
type fzLookup struct{}

func (fzLookup) LookupType(_ context.Context, _, iface string) (string, error) {
	switch {
	case strings.HasPrefix(iface, "eno"), strings.HasPrefix(iface, "eth"):
		return "eth", nil
	case strings.HasPrefix(iface, "vmbr"):
		return "bridge", nil
	case strings.HasPrefix(iface, "err"):
		return "", errors.New("lookup failed")
	}
	return "", nil
}

func fzSetup() (*fzRig, error) {
	fzOnce.Do(func() {
		r := &fzRig{}
		// Every phase with SDN on, and every phase with overrides that
		// promote some templates and pin others, fallback off.
		const overrides = `
fallback_enabled = false
[features]
enable_sdn_migration = true
enable_advanced_networking = false
[endpoints."/api2/json/nodes/{node}/network/{iface}"]
use_rust = true
rust_methods = ["DELETE", "PUT"]
rust_timeout = 0.0005
[endpoints."/cluster/sdn/zones"]
use_rust = true
[endpoints."/nodes/{node}/network"]
use_rust = false
`
		for _, extra := range []string{"[features]\nenable_sdn_migration = true\n", overrides} {
			for _, ph := range routing.Phases() {
				s, err := config.Parse("fuzz.conf", []byte(fmt.Sprintf("phase = %q\n%s", ph.String(), extra)), nil)
				if err != nil {
					fzErr = err
					return
				}
				r.snaps = append(r.snaps, s)
			}
		}
		r.snaps = append(r.snaps, nil) // no config loaded: everything to Perl
		proc := server.NewProcessor(server.Options{Config: r.snap.Load, Lookup: fzLookup{}, Logger: slog.New(slog.DiscardHandler)})
		count := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			r.active.Add(1)
			defer r.active.Add(-1)
			return h(srv, ss)
		}
		gs := server.NewGRPCServer(proc, nil, health.NewServer(), grpc.ChainStreamInterceptor(count))
		ln := bufconn.Listen(4 << 20)
		go func() { _ = gs.Serve(ln) }()
		conn, err := grpc.NewClient("passthrough:///fuzz",
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }),
			grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			fzErr = err
			return
		}
		r.client = extprocv3.NewExternalProcessorClient(conn)
		fzShared = r
	})
	return fzShared, fzErr
}

// fzProgram turns fuzz bytes into a message sequence.
type fzProgram struct {
	b []byte
	i int
}

func (p *fzProgram) next() byte {
	if p.i >= len(p.b) {
		return 0
	}
	c := p.b[p.i]
	p.i++
	return c
}

func (p *fzProgram) done() bool { return p.i >= len(p.b) }

var (
	fzMethods = []string{"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "get", ""}
	fzPaths   = []string{
		"/api2/json/nodes/pve1/network",
		"/api2/json/nodes/pve1/network/eno1",
		"/api2/extjs/nodes/pve1/network/vmbr0",
		"/api2/json/nodes/pve1/network/errx",
		"/api2/json/nodes/pve1/network/unknown0?type=eth",
		"/api2/json/cluster/sdn/zones",
		"/api2/json/cluster/sdn/zones/z1",
		"/api2/json/nodes/pve1/sdn/zones/z1/content",
		"/api2/json/nodes/pve1/qemu/100/config",
		"/api2/html/nodes/pve1/network",
		"/api2/json/nodes/pve1/network/%2e%2e/%2e%2e/access/ticket",
		"/api2/json/access/ticket",
	}
	fzContentTypes = []string{"application/x-www-form-urlencoded", "application/json", "", "text/plain", "multipart/form-data; boundary=x"}
	fzBodies       = []string{"type=eth&iface=eno1", `{"type":"bridge"}`, "type=eth&type=bridge", `{"type":["eth"]}`, "%zz", ""}
)

// FuzzProcess drives the ext_proc service with random sequences of
// ProcessingRequest messages over real gRPC framing. Properties:
//
//   - the server never panics (a panic in a gRPC handler kills the
//     process, so the fuzzer sees it);
//   - every reply has the oneof type of the message it answers, or the
//     stream ends with a clear status (OK, FailedPrecondition,
//     InvalidArgument, ResourceExhausted), never Internal or Unknown;
//   - the service sets only the allow-listed headers, raw_value only,
//     append false, and x-pve-backend exactly once, "rust" or "perl";
//   - no request that routing classifies not-network gets rust, and a
//     decision that needs no interface type equals routing.Decide;
//   - every stream's handler returns once the client is done, and one
//     input allocates a bounded amount of memory.
func FuzzProcess(f *testing.F) {
	f.Add([]byte{0, 0, 1, 0, 0, 3, 0}, "/api2/json/nodes/pve1/network", "GET", []byte(nil))
	f.Add([]byte{5, 0, 2, 0, 1, 0x81, 1, 1, 3, 0}, "", "", []byte("type=eth"))
	f.Add([]byte{9, 0, 3, 1, 2, 1, 1, 0, 3, 1}, "/api2/json/nodes/pve1/network/vmbr1", "POST", []byte(`{"type":"eth"}`))
	f.Add([]byte{12, 1, 0, 0, 6}, "/api2/json/nodes/pve1/network/eno1", "DELETE", []byte(nil))
	f.Add([]byte{3, 3, 0, 0, 0, 0, 0}, "", "", []byte(nil))
	f.Add([]byte{4, 0, 0x40, 0, 1, 0xff, 1, 0, 3, 2}, "/api2/json/nodes/pve1/network?type=eth", "PUT", []byte("type=bridge"))
	f.Add([]byte{6, 0, 2, 0, 1, 0xfe, 0, 1, 0xfe, 1}, "/api2/json/nodes/pve1/network", "POST", []byte("type=eth"))
	f.Add([]byte{7, 0, 1, 4, 5, 2, 3, 0, 7}, "/api2/json/cluster/sdn/zones", "POST", []byte(nil))
	f.Add([]byte{13, 0, 2, 0, 2, 3, 0, 4, 5}, "/api2/json/nodes/pve1/network/eno1", "PUT", []byte(nil))

	rig, err := fzSetup()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, prog []byte, path, method string, body []byte) {
		if len(prog) > 64 || len(path) > 8<<10 || len(body) > 64<<10 {
			t.Skip("bounded input")
		}
		p := &fzProgram{b: prog}
		rig.snap.Store(rig.snaps[int(p.next())%len(rig.snaps)])
		snap := rig.snap.Load()

		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		sent := fzRun(t, rig, p, snap, path, method, body)
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20+64*uint64(sent) {
			t.Fatalf("one input allocated %d bytes for %d bytes sent", alloc, sent)
		}

		// The handler must be gone once the client is: no stream is kept.
		deadline := time.Now().Add(5 * time.Second)
		for rig.active.Load() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d Process handlers still running after the client finished", rig.active.Load())
			}
			time.Sleep(time.Millisecond)
		}
	})
}

// fzRun sends one program's messages on one stream and checks every
// answer. It returns how many payload bytes it sent.
func fzRun(t *testing.T, rig *fzRig, p *fzProgram, snap *config.Snapshot, path, method string, body []byte) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := rig.client.Process(ctx)
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	sent := 0
	var reqMethod, reqPath string // the request_headers of this stream
	for n := 0; n < 12 && !p.done(); n++ {
		op := p.next()
		var req *extprocv3.ProcessingRequest
		switch op % 9 {
		case 0: // request_headers
			sel := p.next()
			m, pth := method, path
			if sel&1 == 0 || m == "" {
				m = fzMethods[int(p.next())%len(fzMethods)]
			}
			if sel&2 == 0 || pth == "" {
				pth = fzPaths[int(p.next())%len(fzPaths)]
			}
			hdrs := []*corev3.HeaderValue{
				fzHeader(":method", m, sel&8 != 0),
				fzHeader(":scheme", "https", false),
				fzHeader(":authority", "pve1:8006", false),
				fzHeader(":path", pth, sel&8 != 0),
				fzHeader("content-type", fzContentTypes[int(sel>>4)%len(fzContentTypes)], false),
			}
			if sel&4 != 0 {
				// A client's own routing header must change nothing.
				hdrs = append(hdrs, fzHeader(server.HeaderBackend, "rust", false))
			}
			if reqMethod == "" && reqPath == "" {
				reqMethod, reqPath = m, pth
			}
			req = &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
				Headers: &corev3.HeaderMap{Headers: hdrs}, EndOfStream: sel&0x80 != 0,
			}}}
			sent += len(m) + len(pth)
		case 1: // request_body
			sel := p.next()
			var b []byte
			switch sel % 4 {
			case 0:
				b = body
			case 1:
				b = []byte(fzBodies[int(sel>>2)%len(fzBodies)])
			case 2:
				if sel == 0xfe {
					// Over PVE's limit, under gRPC's.
					b = make([]byte, routing.MaxBodyBytes+1)
				} else {
					b = body[:len(body)/2]
				}
			case 3:
				if sel == 0xff {
					// Over the gRPC message limit: ResourceExhausted.
					b = make([]byte, server.MaxRecvMsgSize+1)
				}
			}
			req = &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: b, EndOfStream: p.next()&1 == 1}}}
			sent += len(b)
		case 2:
			req = &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestTrailers{RequestTrailers: &extprocv3.HttpTrailers{}}}
		case 3: // response_headers
			sel := p.next()
			req = &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{
				Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
					fzHeader(":status", []string{"200", "501", "503", "99999999999", "x"}[int(sel)%5], false),
					fzHeader(server.HeaderServedBy, []string{"rust", "perl", "", "other"}[int(sel>>3)%4], false),
					fzHeader(server.HeaderAttemptCount, []string{"1", "2", "-1", ""}[int(sel>>5)%4], false),
				}},
			}}}
		case 4:
			req = &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: body, EndOfStream: true}}}
			sent += len(body)
		case 5:
			req = &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseTrailers{ResponseTrailers: &extprocv3.HttpTrailers{}}}
		case 6:
			req = &extprocv3.ProcessingRequest{} // no message at all
		case 7: // the client goes away mid-stream
			cancel()
			fzExpectEnd(t, st)
			return sent
		case 8:
			goto closeSend
		}
		if err := st.Send(req); err != nil {
			// The server ended the stream; Recv has its status.
			fzExpectEnd(t, st)
			return sent
		}
		resp, err := st.Recv()
		if err != nil {
			fzCheckStatus(t, err)
			return sent
		}
		fzCheckReply(t, snap, req, resp, reqMethod, reqPath)
	}
closeSend:
	_ = st.CloseSend()
	fzExpectEnd(t, st)
	return sent
}

func fzHeader(k, v string, useValue bool) *corev3.HeaderValue {
	if useValue && utf8.ValidString(v) {
		// Envoys before 1.27 sent value instead of raw_value (a proto
		// string, so only ever valid UTF-8).
		return &corev3.HeaderValue{Key: k, Value: v}
	}
	return &corev3.HeaderValue{Key: k, RawValue: []byte(v)}
}

// fzExpectEnd reads until the stream ends, which must happen without a
// further reply and with an acceptable status.
func fzExpectEnd(t *testing.T, st grpc.BidiStreamingClient[extprocv3.ProcessingRequest, extprocv3.ProcessingResponse]) {
	t.Helper()
	resp, err := st.Recv()
	if err == nil {
		t.Fatalf("unsolicited reply %v", resp)
	}
	fzCheckStatus(t, err)
}

func fzCheckStatus(t *testing.T, err error) {
	t.Helper()
	if errors.Is(err, io.EOF) {
		return
	}
	switch status.Code(err) {
	case codes.OK, codes.Canceled, codes.FailedPrecondition, codes.InvalidArgument, codes.ResourceExhausted:
		return
	case codes.DeadlineExceeded:
		t.Fatalf("stream hit the 10s test deadline: the server did not answer (%v)", err)
	}
	t.Fatalf("stream ended with %v", err)
}

// fzCheckReply checks one reply against the message it answers.
func fzCheckReply(t *testing.T, snap *config.Snapshot, req *extprocv3.ProcessingRequest, resp *extprocv3.ProcessingResponse, method, path string) {
	t.Helper()
	if resp.GetImmediateResponse() != nil {
		t.Fatalf("immediate_response to %T: the service never answers itself", req.GetRequest())
	}
	var common *extprocv3.CommonResponse
	switch req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		r, ok := resp.GetResponse().(*extprocv3.ProcessingResponse_RequestHeaders)
		if !ok {
			t.Fatalf("request_headers answered with %T", resp.GetResponse())
		}
		common = r.RequestHeaders.GetResponse()
		// Every request_headers answer decides (or provisionally decides).
		if fzBackend(t, common) == "" {
			t.Fatalf("request_headers answer without %s", server.HeaderBackend)
		}
	case *extprocv3.ProcessingRequest_RequestBody:
		r, ok := resp.GetResponse().(*extprocv3.ProcessingResponse_RequestBody)
		if !ok {
			t.Fatalf("request_body answered with %T", resp.GetResponse())
		}
		common = r.RequestBody.GetResponse()
	case *extprocv3.ProcessingRequest_RequestTrailers:
		if _, ok := resp.GetResponse().(*extprocv3.ProcessingResponse_RequestTrailers); !ok {
			t.Fatalf("request_trailers answered with %T", resp.GetResponse())
		}
		return
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		r, ok := resp.GetResponse().(*extprocv3.ProcessingResponse_ResponseHeaders)
		if !ok {
			t.Fatalf("response_headers answered with %T", resp.GetResponse())
		}
		if m := r.ResponseHeaders.GetResponse().GetHeaderMutation(); len(m.GetSetHeaders())+len(m.GetRemoveHeaders()) > 0 {
			t.Fatalf("the service changed response headers: %v", m)
		}
		return
	case *extprocv3.ProcessingRequest_ResponseBody:
		if _, ok := resp.GetResponse().(*extprocv3.ProcessingResponse_ResponseBody); !ok {
			t.Fatalf("response_body answered with %T", resp.GetResponse())
		}
		return
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		if _, ok := resp.GetResponse().(*extprocv3.ProcessingResponse_ResponseTrailers); !ok {
			t.Fatalf("response_trailers answered with %T", resp.GetResponse())
		}
		return
	default:
		t.Fatalf("an empty ProcessingRequest was answered with %T", resp.GetResponse())
	}

	if common.GetStatus() != extprocv3.CommonResponse_CONTINUE || common.GetBodyMutation() != nil {
		t.Fatalf("status %v, body mutation %v: the service only routes", common.GetStatus(), common.GetBodyMutation())
	}
	backend := fzBackend(t, common)
	if backend != "rust" {
		return
	}
	c := routing.Classify(method, path, "")
	if c.Category == routing.NotNetwork {
		t.Fatalf("%s %q is not-network and went to rust", method, path)
	}
	policy := &routing.Policy{} // perl-only
	if snap != nil {
		policy = &snap.Policy
	}
	if !c.NeedsType {
		if d := routing.Decide(policy, routing.Request{Method: method, Path: path}); d.Backend != routing.Rust {
			t.Fatalf("%s %q went to rust, routing.Decide says %v (%v)", method, path, d.Backend, d.Reason)
		}
		return
	}
	dEth := routing.Decide(policy, routing.Request{Method: method, Path: path, IfaceType: "eth"})
	dOther := routing.Decide(policy, routing.Request{Method: method, Path: path, IfaceType: "bridge"})
	if dEth.Backend != routing.Rust && dOther.Backend != routing.Rust {
		t.Fatalf("%s %q went to rust, but no interface type sends it there", method, path)
	}
}

// fzBackend checks the header mutation's shape and returns x-pve-backend
// ("" when the answer sets none).
func fzBackend(t *testing.T, c *extprocv3.CommonResponse) string {
	t.Helper()
	m := c.GetHeaderMutation()
	if len(m.GetRemoveHeaders()) > 0 {
		t.Fatalf("the service removed headers %v", m.GetRemoveHeaders())
	}
	backend, n := "", 0
	for _, o := range m.GetSetHeaders() {
		h := o.GetHeader()
		if !fzAllowedHeaders[h.GetKey()] {
			t.Fatalf("header %q is outside the mutation allow-list", h.GetKey())
		}
		//lint:ignore SA1019 ext_proc reads only the deprecated append field (envoy-facts §1.3)
		appendSet := o.GetAppend().GetValue()
		if h.GetValue() != "" || appendSet {
			t.Fatalf("header %q: value %q append %v; want raw_value only, overwrite", h.GetKey(), h.GetValue(), appendSet)
		}
		if h.GetKey() == server.HeaderBackend {
			n++
			backend = string(h.GetRawValue())
			if backend != "rust" && backend != "perl" {
				t.Fatalf("x-pve-backend %q", backend)
			}
		}
	}
	if n > 1 {
		t.Fatalf("x-pve-backend set %d times", n)
	}
	if m != nil && !c.GetClearRouteCache() {
		t.Fatalf("a header mutation without clear_route_cache does not re-route")
	}
	return backend
}
