package pvedemo

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestExtJSFormat(t *testing.T) {
	b := startBackend(t, Options{Flavor: FlavorPerl})
	const ext = "/api2/extjs/nodes/pve1/network"
	tests := []struct {
		name        string
		method      string
		path        string
		form        map[string]string
		wantSuccess float64
		wantStatus  any // "status" in the body; nil when absent
		wantErrKey  string
	}{
		{name: "list", method: "GET", path: ext, wantSuccess: 1},
		{name: "create", method: "POST", path: ext, form: map[string]string{"iface": "eno1.5", "type": "vlan"}, wantSuccess: 1},
		{name: "create existing", method: "POST", path: ext, form: map[string]string{"iface": "eno1.5", "type": "vlan"}, wantSuccess: 0, wantStatus: float64(400), wantErrKey: "iface"},
		{name: "get missing", method: "GET", path: ext + "/nope0", wantSuccess: 0, wantStatus: float64(400), wantErrKey: "iface"},
		{name: "unknown node dies", method: "GET", path: "/api2/extjs/nodes/x1/network", wantSuccess: 0, wantStatus: float64(500)},
		{name: "unknown path", method: "GET", path: "/api2/extjs/nodes/pve1/frobnicate", wantSuccess: 0, wantStatus: float64(501)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := form()
			for k, v := range tt.form {
				f.Set(k, v)
			}
			r := b.do(t, tt.method, tt.path, f)
			if r.status != http.StatusOK {
				t.Fatalf("extjs answered HTTP %d, want always 200: %s", r.status, r.raw)
			}
			if r.body["success"] != tt.wantSuccess {
				t.Errorf("success %v, want %v (%s)", r.body["success"], tt.wantSuccess, r.raw)
			}
			if r.body["status"] != tt.wantStatus {
				t.Errorf("status %v, want %v", r.body["status"], tt.wantStatus)
			}
			if _, hasData := r.body["data"]; !hasData {
				t.Errorf("no data key: %s", r.raw)
			}
			if tt.wantErrKey != "" {
				errs, _ := r.body["errors"].(map[string]any)
				if _, ok := errs[tt.wantErrKey]; !ok {
					t.Errorf("errors %v lack %s", errs, tt.wantErrKey)
				}
				if msg, _ := r.body["message"].(string); msg == "" {
					t.Errorf("no message")
				}
			}
		})
	}
}

func TestRequestConventions(t *testing.T) {
	b := startBackend(t, Options{Flavor: FlavorPerl})
	tests := []struct {
		name       string
		req        func(t *testing.T) *http.Request
		wantStatus int
		wantMsg    string
	}{
		{"headers and version", func(t *testing.T) *http.Request {
			return newRequest(t, "GET", b.url+"/api2/json/version", nil)
		}, 200, ""},
		{"double slashes are merged", func(t *testing.T) *http.Request {
			return newRequest(t, "GET", b.url+"/api2/json//nodes//pve1/network", nil)
		}, 200, ""},
		{"unknown path", func(t *testing.T) *http.Request {
			return newRequest(t, "GET", b.url+"/api2/json/nodes/pve1/qemu", nil)
		}, 501, "Method 'GET /nodes/pve1/qemu' not implemented\n"},
		{"known path, other method", func(t *testing.T) *http.Request {
			return newRequest(t, "POST", b.url+"/api2/json/version", nil)
		}, 501, "Method 'POST /version' not implemented\n"},
		{"PATCH not available", func(t *testing.T) *http.Request {
			return newRequest(t, "PATCH", b.url+"/api2/json/version", nil)
		}, 501, "method 'PATCH' not available\n"},
		{"GET with body", func(t *testing.T) *http.Request {
			r, _ := http.NewRequest("GET", b.url+"/api2/json/version", strings.NewReader("a=b"))
			return r
		}, 501, "Unexpected content for method 'GET'\n"},
		{"DELETE with body", func(t *testing.T) *http.Request {
			r, _ := http.NewRequest("DELETE", b.url+netPath+"/eno1", strings.NewReader("a=b"))
			return r
		}, 501, "Unexpected content for method 'DELETE'\n"},
		{"JSON body", func(t *testing.T) *http.Request {
			r, _ := http.NewRequest("POST", b.url+netPath, strings.NewReader(`{"iface":"eno3","type":"eth","autostart":true,"mtu":1500}`))
			r.Header.Set("Content-Type", "application/json")
			return r
		}, 200, ""},
		{"query merged into POST", func(t *testing.T) *http.Request {
			return newRequest(t, "POST", b.url+netPath+"?type=eth&_dc=12345", form("iface", "eno4"))
		}, 200, ""},
		{"other formatter", func(t *testing.T) *http.Request {
			return newRequest(t, "GET", b.url+"/api2/png/version", nil)
		}, 501, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := send(t, tt.req(t))
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tt.wantStatus, r.raw)
			}
			if got := r.header.Get("Server"); got != "pve-api-daemon/3.0" {
				t.Errorf("Server %q", got)
			}
			if got := r.header.Get("X-Pve-Served-By"); got != "perl" {
				t.Errorf("x-pve-served-by %q", got)
			}
			if tt.wantMsg != "" && r.body["message"] != tt.wantMsg {
				t.Errorf("message %q, want %q", r.body["message"], tt.wantMsg)
			}
			if r.status >= 400 && !r.closed {
				t.Errorf("error response keeps the connection open")
			}
		})
	}
	t.Run("body over 512 KiB", func(t *testing.T) {
		// Announce the body but do not send it: pveproxy (and the demo)
		// refuse on Content-Length alone, before reading anything.
		c, err := net.Dial("tcp", b.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n", netPath, maxBody+1)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("status %d, want 413", resp.StatusCode)
		}
	})
	t.Run("errors drop keep-alive, successes keep it", func(t *testing.T) {
		keepAlive := &http.Client{Transport: &http.Transport{}}
		defer keepAlive.CloseIdleConnections()
		for path, wantClose := range map[string]bool{"/api2/json/version": false, "/api2/json/nope": true, "/api2/extjs/nope": false} {
			resp, err := keepAlive.Get(b.url + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.Close != wantClose {
				t.Errorf("%s: close %v, want %v (extjs errors are HTTP 200)", path, resp.Close, wantClose)
			}
		}
	})
	t.Run("version body", func(t *testing.T) {
		d := b.do(t, "GET", "/api2/json/version", nil).dataMap(t)
		if d["version"] != "9.1.3" || d["release"] != "9.1" || d["console"] != "html5" || d["repoid"] == "" {
			t.Errorf("version %v", d)
		}
	})
	t.Run("JSON body typed back as strings", func(t *testing.T) {
		d := b.do(t, "GET", netPath+"/eno3", nil).dataMap(t)
		if d["mtu"] != "1500" || d["autostart"] != float64(1) || d["exists"] != float64(1) {
			t.Errorf("eno3 %v", d)
		}
	})
}

func TestUnimplementedOnRust(t *testing.T) {
	rust := startBackend(t, Options{Flavor: FlavorRust, Unimplemented: []string{
		"PUT:/api2/json/nodes/{node}/network/{iface}",
		"get:/cluster/sdn/zones",
	}})
	tests := []struct {
		name, method, path string
		form               map[string]string
		want               int
	}{
		{"listed json", "PUT", netPath + "/eno1", map[string]string{"type": "eth"}, 501},
		{"listed extjs is a real 501 too", "PUT", "/api2/extjs/nodes/pve1/network/eno1", map[string]string{"type": "eth"}, 501},
		{"listed without prefix", "GET", "/api2/json/cluster/sdn/zones", nil, 501},
		{"other method same path", "DELETE", netPath + "/eno1", nil, 200},
		{"other path", "GET", netPath, nil, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := form()
			for k, v := range tt.form {
				f.Set(k, v)
			}
			r := rust.do(t, tt.method, tt.path, f)
			if r.status != tt.want {
				t.Fatalf("status %d, want %d: %s", r.status, tt.want, r.raw)
			}
			if tt.want == 501 && string(r.raw) != `{"data":null,"message":"not implemented here"}` {
				t.Errorf("body %s", r.raw)
			}
		})
	}
	if got := rust.srv.Applied()["PUT /nodes/{node}/network/{iface}"]; got != 0 {
		t.Errorf("unimplemented write applied %d times", got)
	}

	optTests := []struct {
		name string
		opts Options
	}{
		{"perl flavour", Options{Flavor: FlavorPerl, Unimplemented: []string{"GET:/nodes/{node}/network"}}},
		{"unknown template", Options{Flavor: FlavorRust, Unimplemented: []string{"GET:/nodes/{node}/network/{name}"}}},
		{"no method", Options{Flavor: FlavorRust, Unimplemented: []string{"/nodes/{node}/network"}}},
		{"bad method", Options{Flavor: FlavorRust, Unimplemented: []string{"PATCH:/nodes/{node}/network"}}},
	}
	for _, tt := range optTests {
		t.Run("rejects "+tt.name, func(t *testing.T) {
			tt.opts.StateDir = t.TempDir()
			if _, err := New(tt.opts); err == nil || ExitCode(err) != 2 {
				t.Errorf("New = %v, want an invalid-options error", err)
			}
		})
	}
}
