package pveschema_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pve-migration/router/examples/pvedemo"
	"github.com/pve-migration/router/internal/logsink"
	"github.com/pve-migration/router/internal/pveschema"
	"github.com/pve-migration/router/internal/routerapp"
)

// tamper sits in front of a demo backend and rewrites the `data` of its
// GET answers, so that a test can make one backend (or both) answer as a
// faulty Rust daemon or as real PVE does.
type tamper struct {
	mu   sync.Mutex
	edit func(data any) any
}

func (tp *tamper) set(edit func(data any) any) {
	tp.mu.Lock()
	tp.edit = edit
	tp.mu.Unlock()
}

func (tp *tamper) handler(t *testing.T, backend string) http.Handler {
	u, err := url.Parse(backend)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(resp *http.Response) error {
		tp.mu.Lock()
		edit := tp.edit
		tp.mu.Unlock()
		if edit == nil || resp.Request.Method != http.MethodGet || resp.StatusCode != http.StatusOK {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		var env map[string]any
		d := json.NewDecoder(bytes.NewReader(body))
		d.UseNumber()
		if err := d.Decode(&env); err != nil {
			return err
		}
		env["data"] = edit(env["data"])
		out, err := json.Marshal(env)
		if err != nil {
			return err
		}
		resp.Body = io.NopCloser(bytes.NewReader(out))
		resp.ContentLength = int64(len(out))
		resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
		resp.Header.Del("Content-Encoding")
		return nil
	}
	return rp
}

func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

func demo(t *testing.T, flavor pvedemo.Flavor, state string) string {
	t.Helper()
	srv, err := pvedemo.New(pvedemo.Options{Flavor: flavor, StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return "http://" + ln.Addr().String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// eachItem applies f to every object of a list answer.
func eachItem(f func(m map[string]any)) func(any) any {
	return func(data any) any {
		if list, ok := data.([]any); ok {
			for _, it := range list {
				if m, ok := it.(map[string]any); ok {
					f(m)
				}
			}
		}
		return data
	}
}

// TestAnswersThroughTheDataPlane runs the router with its embedded data
// plane between a client and the demo backends (phase rust-read-only, so
// rust serves network reads), fetches each read as the client does and
// from perl as the shadow comparison does, and checks both answers as the
// compare workers will: CheckAnswer into one Tally per run.
func TestAnswersThroughTheDataPlane(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	var perlTamper, rustTamper tamper
	perl := serve(t, perlTamper.handler(t, demo(t, pvedemo.FlavorPerl, state)))
	rust := serve(t, rustTamper.handler(t, demo(t, pvedemo.FlavorRust, state)))
	conf := filepath.Join(dir, "network-migration.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("phase = \"rust-sdn\"\nperl_api_base_url = %q\n[features]\nenable_sdn_migration = true\n", perl)), 0o644); err != nil {
		t.Fatal(err)
	}
	grpcAddr, admin, proxy := freeAddr(t), freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	var stderr logsink.Buffer
	code := make(chan int, 1)
	go func() {
		code <- routerapp.Run(ctx, []string{"--config", conf, "--grpc-listen", grpcAddr, "--admin-listen", admin,
			"--proxy-listen", proxy, "--perl-upstream", perl, "--rust-upstream", rust, "--node", "pve1", "--kill-switch", filepath.Join(filepath.Dir(conf), "kill"), "--state-file", "off"}, io.Discard, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-code:
		case <-time.After(20 * time.Second):
			t.Error("router did not stop")
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", proxy)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("data plane not listening; log:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	for _, w := range []struct{ path, form string }{
		{"/api2/json/cluster/sdn/zones", "zone=office&type=simple"},
		{"/api2/json/cluster/sdn/vnets", "vnet=vnet1&zone=office&alias=Office+LAN"},
	} {
		resp, err := http.Post(perl+w.path, "application/x-www-form-urlencoded", bytes.NewReader([]byte(w.form)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %d %s", w.path, resp.StatusCode, b)
		}
	}

	checker, err := pveschema.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	get := func(base, path string, shadow bool) (int, []byte, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if shadow {
			req.Header.Set("x-pve-shadow", "1")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b, resp.Header.Get("x-pve-served-by")
	}
	type row struct {
		backend, path string
		rule          pveschema.Rule
		baseline      bool
	}
	reads := []struct{ template, path string }{
		{"/nodes/{node}/network", "/api2/json/nodes/pve1/network"},
		{"/nodes/{node}/network/{iface}", "/api2/json/nodes/pve1/network/vmbr0"},
		{"/nodes/{node}/network/{iface}", "/api2/extjs/nodes/pve1/network/vmbr0"}, // the web UI's form
		{"/cluster/sdn/vnets", "/api2/json/cluster/sdn/vnets"},
		{"/cluster/sdn/zones", "/api2/json/cluster/sdn/zones"},
	}
	run := func(t *testing.T, perlEdit, rustEdit func(any) any) []row {
		t.Helper()
		perlTamper.set(perlEdit)
		rustTamper.set(rustEdit)
		tally := pveschema.NewTally()
		for _, r := range reads {
			status, body, servedBy := get("http://"+proxy, r.path, false)
			if servedBy != "rust" {
				t.Fatalf("%s served by %q, want rust", r.path, servedBy)
			}
			if _, err := checker.CheckAnswer(tally, r.template, "GET", pveschema.BackendRust, status, body); err != nil {
				t.Fatalf("rust %s: %v (%s)", r.path, err, body)
			}
			status, body, _ = get(perl, r.path, true)
			if _, err := checker.CheckAnswer(tally, r.template, "GET", pveschema.BackendPerl, status, body); err != nil {
				t.Fatalf("perl %s: %v (%s)", r.path, err, body)
			}
		}
		var rows []row
		for _, v := range tally.Report(checker.Source()).Violations {
			rows = append(rows, row{v.Backend, v.Template + " " + v.Path, v.Rule, v.Baseline})
		}
		return rows
	}

	// The demo backends write netmask as a prefix length, as real PVE
	// does (conventions.md), against the schema's ipv4mask: both break the
	// rule, so it is baseline, never rust's fault.
	netmaskQuirk := []row{
		{"perl", "/nodes/{node}/network data[].netmask", pveschema.RuleFormat, true},
		{"rust", "/nodes/{node}/network data[].netmask", pveschema.RuleFormat, true},
	}
	t.Run("untouched demo answers break only PVE's own netmask rule", func(t *testing.T) {
		if got := run(t, nil, nil); !reflect.DeepEqual(got, netmaskQuirk) {
			t.Fatalf("got %+v\nwant %+v", got, netmaskQuirk)
		}
	})
	t.Run("answers that follow the schema give none", func(t *testing.T) {
		dotted := eachItem(func(m map[string]any) {
			if m["netmask"] != nil {
				m["netmask"] = "255.255.255.0"
			}
		})
		if got := run(t, dotted, dotted); len(got) != 0 {
			t.Fatalf("violations: %+v", got)
		}
	})
	t.Run("rust mtu as abc", func(t *testing.T) {
		got := run(t, nil, eachItem(func(m map[string]any) {
			if m["iface"] != nil {
				m["mtu"] = "abc"
			}
		}))
		want := append([]row{{"rust", "/nodes/{node}/network data[].mtu", pveschema.RuleType, false}}, netmaskQuirk...)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v\nwant %+v", got, want)
		}
	})
	t.Run("rust bridge without its required type", func(t *testing.T) {
		got := run(t, nil, eachItem(func(m map[string]any) {
			if m["type"] == "bridge" {
				delete(m, "type")
			}
		}))
		want := append([]row{{"rust", "/nodes/{node}/network data[].type", pveschema.RuleRequired, false}}, netmaskQuirk...)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v\nwant %+v", got, want)
		}
	})
	t.Run("shared violations are baseline, rust's own come first", func(t *testing.T) {
		// Real PVE lets a vnet alias hold an apostrophe its pattern does
		// not allow; a faithful Rust daemon does the same.
		pveQuirks := func(m map[string]any) {
			if _, ok := m["vnet"]; ok {
				m["alias"] = "myuser1's network"
			}
		}
		got := run(t, eachItem(pveQuirks), eachItem(func(m map[string]any) {
			pveQuirks(m)
			if _, ok := m["vnet"]; ok {
				m["tag"] = "ten"
			}
		}))
		want := []row{
			{"rust", "/cluster/sdn/vnets data[].tag", pveschema.RuleType, false},
			{"perl", "/cluster/sdn/vnets data[].alias", pveschema.RulePattern, true},
			{"rust", "/cluster/sdn/vnets data[].alias", pveschema.RulePattern, true},
			{"perl", "/nodes/{node}/network data[].netmask", pveschema.RuleFormat, true},
			{"rust", "/nodes/{node}/network data[].netmask", pveschema.RuleFormat, true},
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v\nwant %+v", got, want)
		}
	})
}
