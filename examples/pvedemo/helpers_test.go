package pvedemo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// backend is a Server running on a real loopback listener through Serve,
// so crash and refuse faults behave as they do in the binary.
type backend struct {
	srv  *Server
	addr string
	url  string
	done chan error
}

func startBackend(t *testing.T, opts Options) *backend {
	t.Helper()
	if opts.StateDir == "" {
		opts.StateDir = t.TempDir()
	}
	if opts.Flavor == "" {
		opts.Flavor = FlavorPerl
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &backend{srv: srv, addr: ln.Addr().String(), url: "http://" + ln.Addr().String(), done: make(chan error, 1)}
	go func() { b.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-b.done:
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
	})
	for !srv.servingWithListener() {
		time.Sleep(time.Millisecond)
	}
	return b
}

// reply is a decoded response.
type reply struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
	closed bool // the server asked to close the connection
}

func (r reply) data() any { return r.body["data"] }

func (r reply) dataMap(t *testing.T) map[string]any {
	t.Helper()
	m, ok := r.body["data"].(map[string]any)
	if !ok {
		t.Fatalf("data is %T, want object; body %s", r.body["data"], r.raw)
	}
	return m
}

func (r reply) dataList(t *testing.T) []any {
	t.Helper()
	l, ok := r.body["data"].([]any)
	if !ok {
		t.Fatalf("data is %T, want array; body %s", r.body["data"], r.raw)
	}
	return l
}

type reqOpt func(*http.Request)

func withHeader(k, v string) reqOpt { return func(r *http.Request) { r.Header.Set(k, v) } }

func withToken(tok string) reqOpt { return withHeader("Authorization", "PVEAPIToken="+tok) }

// newRequest puts form values in the body for POST/PUT and in the query
// string otherwise, as PVE clients do.
func newRequest(t *testing.T, method, target string, form url.Values, opts ...reqOpt) *http.Request {
	t.Helper()
	var body io.Reader
	if len(form) > 0 {
		if method == http.MethodPost || method == http.MethodPut {
			body = strings.NewReader(form.Encode())
		} else {
			target += "?" + form.Encode()
		}
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, o := range opts {
		o(req)
	}
	return req
}

var testClient = &http.Client{
	Timeout:   20 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

func send(t *testing.T, req *http.Request) reply {
	t.Helper()
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	r := reply{status: resp.StatusCode, header: resp.Header, raw: raw, closed: resp.Close}
	if len(bytes.TrimSpace(raw)) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			// Debug endpoints may answer arrays; keep raw only.
			r.body = nil
		}
	}
	return r
}

func (b *backend) do(t *testing.T, method, path string, form url.Values, opts ...reqOpt) reply {
	t.Helper()
	return send(t, newRequest(t, method, b.url+path, form, opts...))
}

// debugJSON GETs a /debug endpoint and decodes it into v.
func (b *backend) debugJSON(t *testing.T, path string, v any) {
	t.Helper()
	r := b.do(t, http.MethodGet, path, nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, r.status, r.raw)
	}
	if err := json.Unmarshal(r.raw, v); err != nil {
		t.Fatalf("decode %s: %v (%s)", path, err, r.raw)
	}
}

func form(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v
}

// isRefused reports whether dialing addr fails with connection refused.
func isRefused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err == nil {
		_ = c.Close()
		return false
	}
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(err.Error(), "refused")
}

// ifaceNames lists the "iface" values of a network list reply.
func ifaceNames(t *testing.T, r reply) []string {
	t.Helper()
	var names []string
	for _, it := range r.dataList(t) {
		names = append(names, it.(map[string]any)["iface"].(string))
	}
	return names
}

// httptestServer serves h with net/http/httptest and returns its URL.
func httptestServer(t *testing.T, h http.Handler) string {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts.URL
}
