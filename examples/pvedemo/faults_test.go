package pvedemo

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestErrorRate(t *testing.T) {
	tests := []struct {
		name     string
		rate     float64
		wantFail int // of 20 requests
	}{
		{"always", 1, 20},
		{"never", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startBackend(t, Options{Flavor: FlavorRust, Faults: Faults{ErrorRate: tt.rate}})
			fails := 0
			for i := range 20 {
				r := b.do(t, "POST", netPath, form("iface", fmt.Sprintf("vmbr%d", 10+i), "type", "bridge"))
				switch r.status {
				case 500:
					fails++
					if m, _ := r.body["message"].(string); !strings.HasPrefix(m, "injected fault") {
						t.Errorf("500 message %q", m)
					}
				case 200:
				default:
					t.Fatalf("status %d: %s", r.status, r.raw)
				}
			}
			if fails != tt.wantFail {
				t.Errorf("%d failures, want %d", fails, tt.wantFail)
			}
			// Injected errors happen before the handler: nothing was applied.
			if got := b.srv.Applied()["POST /nodes/{node}/network"]; got != int64(20-tt.wantFail) {
				t.Errorf("applied %d, want %d", got, 20-tt.wantFail)
			}
			// /debug is never faulted.
			if r := b.do(t, "GET", "/debug/faults", nil); r.status != 200 {
				t.Errorf("debug status %d", r.status)
			}
		})
	}
	t.Run("seeded rate is reproducible", func(t *testing.T) {
		pattern := func() string {
			b := startBackend(t, Options{Flavor: FlavorPerl, Seed: 42, Faults: Faults{ErrorRate: 0.5}})
			var sb strings.Builder
			for range 40 {
				if b.do(t, "GET", "/api2/json/version", nil).status == 500 {
					sb.WriteByte('x')
				} else {
					sb.WriteByte('.')
				}
			}
			return sb.String()
		}
		p1, p2 := pattern(), pattern()
		if p1 != p2 {
			t.Errorf("same seed, different outcomes:\n%s\n%s", p1, p2)
		}
		if n := strings.Count(p1, "x"); n < 8 || n > 32 {
			t.Errorf("%d of 40 failed at rate 0.5: %s", n, p1)
		}
	})
}

func TestLatency(t *testing.T) {
	b := startBackend(t, Options{Flavor: FlavorPerl})
	postFaults(t, b, `{"latency":"150ms"}`)
	start := time.Now()
	if r := b.do(t, "GET", "/api2/json/version", nil); r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("answered after %v, want ≥ 150ms", d)
	}
	start = time.Now()
	b.do(t, "GET", "/debug/faults", nil)
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("debug endpoint delayed %v", d)
	}
}

func postFaults(t *testing.T, b *backend, body string) reply {
	t.Helper()
	req, err := http.NewRequest("POST", b.url+"/debug/faults", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	r := send(t, req)
	if r.status != 200 {
		t.Fatalf("POST /debug/faults %s: %d %s", body, r.status, r.raw)
	}
	return r
}

// rawGet sends one request on a fresh connection and reports whether a
// response came back (false: the connection was dropped).
func rawGet(t *testing.T, addr, path string) (status int, answered bool) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "reset") {
			return 0, false
		}
		t.Fatalf("read response: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode, true
}

func TestCrashAfter(t *testing.T) {
	tests := []struct {
		name  string
		opts  Options
		setup func(t *testing.T, b *backend)
		n     int
	}{
		{name: "option", opts: Options{Faults: Faults{CrashAfter: 3}}, n: 3},
		{name: "runtime", setup: func(t *testing.T, b *backend) {
			b.do(t, "GET", "/api2/json/version", nil) // counted before the change only
			postFaults(t, b, `{"crash_after":2}`)
		}, n: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Flavor = FlavorRust
			b := startBackend(t, tt.opts)
			if tt.setup != nil {
				tt.setup(t, b)
			}
			for i := range tt.n {
				if st, ok := rawGet(t, b.addr, "/api2/json/version"); !ok || st != 200 {
					t.Fatalf("request %d: answered %v status %d", i+1, ok, st)
				}
			}
			if st, ok := rawGet(t, b.addr, "/api2/json/version"); ok {
				t.Fatalf("request %d answered %d, want the connection dropped", tt.n+1, st)
			}
			if !isRefused(b.addr) {
				t.Errorf("connections still accepted after the crash")
			}
			select {
			case err := <-b.done:
				if !errors.Is(err, ErrCrashed) {
					t.Errorf("Serve returned %v, want ErrCrashed", err)
				}
				b.done <- err // for the cleanup
			case <-time.After(5 * time.Second):
				t.Errorf("Serve did not return after the crash")
			}
			recs := b.srv.Requests()
			if last := recs[len(recs)-1]; last.Status != 0 {
				t.Errorf("dropped request logged with status %d", last.Status)
			}
		})
	}
}

func TestRefuse(t *testing.T) {
	t.Run("option refuses from the start", func(t *testing.T) {
		b := startBackend(t, Options{Flavor: FlavorRust, Faults: Faults{Refuse: true}})
		if !isRefused(b.addr) {
			t.Fatal("connection accepted with Refuse set")
		}
		if err := b.srv.SetFaults(Faults{}); err != nil {
			t.Fatalf("SetFaults: %v", err)
		}
		if st, ok := rawGet(t, b.addr, "/api2/json/version"); !ok || st != 200 {
			t.Fatalf("after refuse off: answered %v status %d", ok, st)
		}
	})
	t.Run("runtime switch through /debug/faults", func(t *testing.T) {
		b := startBackend(t, Options{Flavor: FlavorPerl})
		r := postFaults(t, b, `{"refuse":true}`)
		if !strings.Contains(string(r.raw), `"refuse":true`) {
			t.Errorf("reply %s", r.raw)
		}
		if !isRefused(b.addr) {
			t.Fatal("connection accepted after refuse:true")
		}
		if err := b.srv.SetFaults(Faults{Refuse: false}); err != nil {
			t.Fatalf("SetFaults: %v", err)
		}
		if r := b.do(t, "GET", "/api2/json/version", nil); r.status != 200 {
			t.Fatalf("after refuse off: %d", r.status)
		}
		// Toggle twice more to make sure the listener cycle repeats cleanly.
		for range 2 {
			postFaults(t, b, `{"refuse":true}`)
			if !isRefused(b.addr) {
				t.Fatal("not refused")
			}
			if err := b.srv.SetFaults(Faults{}); err != nil {
				t.Fatal(err)
			}
		}
		if r := b.do(t, "GET", "/api2/json/version", nil); r.status != 200 {
			t.Fatalf("final: %d", r.status)
		}
	})
}

func TestDebugEndpoints(t *testing.T) {
	b := startBackend(t, Options{Flavor: FlavorRust})
	t.Run("faults round trip", func(t *testing.T) {
		r := postFaults(t, b, `{"error_rate":0.25,"latency":"5ms"}`)
		want := `{"error_rate":0.25,"latency":"5ms","refuse":false,"crash_after":0,"drop_after_write":false}`
		if string(r.raw) != want {
			t.Errorf("POST reply %s, want %s", r.raw, want)
		}
		postFaults(t, b, `{"error_rate":0}`) // a partial update keeps latency
		got := b.do(t, "GET", "/debug/faults", nil)
		if string(got.raw) != `{"error_rate":0,"latency":"5ms","refuse":false,"crash_after":0,"drop_after_write":false}` {
			t.Errorf("GET %s", got.raw)
		}
		var f Faults
		b.debugJSON(t, "/debug/faults", &f)
		if f != (Faults{Latency: 5 * time.Millisecond}) {
			t.Errorf("decoded %+v", f)
		}
		postFaults(t, b, `{"latency":"0s"}`)
	})
	for _, bad := range []string{`{"error_rate":2}`, `{"latency":"soon"}`, `{"crash_after":-1}`, `{"colour":1}`, `not json`} {
		t.Run("rejects "+bad, func(t *testing.T) {
			req, _ := http.NewRequest("POST", b.url+"/debug/faults", strings.NewReader(bad))
			if r := send(t, req); r.status != 400 {
				t.Errorf("status %d", r.status)
			}
		})
	}
	t.Run("requests log", func(t *testing.T) {
		send(t, newRequest(t, "GET", b.url+"/api2/json/version", nil, withHeader("X-Request-Id", "req-123")))
		var recs []RequestRecord
		b.debugJSON(t, "/debug/requests", &recs)
		last := recs[len(recs)-1]
		if last.RequestID != "req-123" || last.Method != "GET" || last.Path != "/api2/json/version" || last.Template != "/version" || last.Status != 200 {
			t.Errorf("last record %+v", last)
		}
		for _, rec := range recs {
			if strings.HasPrefix(rec.Path, "/debug") {
				t.Errorf("debug request logged: %+v", rec)
			}
		}
		if r := b.do(t, "DELETE", "/debug/requests", nil); r.status != 200 {
			t.Fatalf("clear: %d", r.status)
		}
		if n := len(b.srv.Requests()); n != 0 {
			t.Errorf("%d records after clear", n)
		}
	})
	t.Run("request log is capped", func(t *testing.T) {
		s := b.srv
		req, _ := http.NewRequest("GET", "/x", nil)
		for i := range maxRequestLog + 5 {
			s.record(req, fmt.Sprint(i), 200, time.Now())
		}
		recs := s.Requests()
		if len(recs) != maxRequestLog || recs[0].Template != "5" || recs[len(recs)-1].Template != fmt.Sprint(maxRequestLog+4) {
			t.Errorf("len %d first %s last %s", len(recs), recs[0].Template, recs[len(recs)-1].Template)
		}
	})
}

// TestHandlerWithoutServe: used as a plain http.Handler (httptest), a crash
// still drops connections; only the listener handling needs Serve.
func TestHandlerWithoutServe(t *testing.T) {
	srv, err := New(Options{Flavor: FlavorPerl, StateDir: t.TempDir(), Faults: Faults{CrashAfter: 1}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptestServer(t, srv)
	addr := strings.TrimPrefix(ts, "http://")
	if st, ok := rawGet(t, addr, "/api2/json/version"); !ok || st != 200 {
		t.Fatalf("first: %v %d", ok, st)
	}
	if _, ok := rawGet(t, addr, "/api2/json/version"); ok {
		t.Fatal("second request answered")
	}
	select {
	case <-srv.Crashed():
	default:
		t.Error("Crashed() not closed")
	}
	if _, ok := rawGet(t, addr, "/debug/applied"); ok {
		t.Error("crashed handler still answers")
	}
}
