package pvedemo

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
)

// step is one request of a scenario; the steps of a table run in order
// against the same backend, each as its own subtest.
type step struct {
	name       string
	method     string
	path       string
	form       url.Values
	wantStatus int
	check      func(t *testing.T, r reply)
}

func runSteps(t *testing.T, b *backend, steps []step, opts ...reqOpt) {
	t.Helper()
	for _, st := range steps {
		ok := t.Run(st.name, func(t *testing.T) {
			r := b.do(t, st.method, st.path, st.form, opts...)
			if r.status != st.wantStatus {
				t.Fatalf("%s %s: status %d, want %d; body %s", st.method, st.path, r.status, st.wantStatus, r.raw)
			}
			if st.check != nil {
				st.check(t, r)
			}
		})
		if !ok {
			t.FailNow() // later steps depend on this one
		}
	}
}

const netPath = "/api2/json/nodes/pve1/network"

var upidPattern = regexp.MustCompile(`^UPID:pve1:[0-9A-F]{8}:[0-9A-F]{8}:[0-9A-F]{8}:srvreload:networking:root@pam:$`)

func TestNetworkRoundTrip(t *testing.T) {
	b := startBackend(t, Options{Flavor: FlavorPerl})
	var upid string
	runSteps(t, b, []step{
		{name: "seed list hides lo", method: "GET", path: netPath, wantStatus: 200, check: func(t *testing.T, r reply) {
			if got := ifaceNames(t, r); !slices.Equal(got, []string{"eno1", "vmbr0"}) {
				t.Errorf("ifaces %v, want [eno1 vmbr0]", got)
			}
			if _, ok := r.body["changes"]; ok {
				t.Errorf("changes present without pending edits: %v", r.body["changes"])
			}
		}},
		{name: "get vmbr0 has Perl typing and no iface key", method: "GET", path: netPath + "/vmbr0", wantStatus: 200, check: func(t *testing.T, r reply) {
			d := r.dataMap(t)
			want := map[string]any{"type": "bridge", "address": "192.0.2.10", "netmask": "24", "cidr": "192.0.2.10/24",
				"gateway": "192.0.2.1", "bridge_ports": "eno1", "bridge_stp": "off", "bridge_fd": "0",
				"autostart": float64(1), "active": float64(1), "method": "static", "method6": "manual"}
			for k, v := range want {
				if d[k] != v {
					t.Errorf("%s = %#v, want %#v", k, d[k], v)
				}
			}
			if _, ok := d["iface"]; ok {
				t.Errorf("single read carries iface key")
			}
		}},
		{name: "get missing", method: "GET", path: netPath + "/vmbr9", wantStatus: 400, check: func(t *testing.T, r reply) {
			if errs, _ := r.body["errors"].(map[string]any); errs["iface"] != "interface does not exist" {
				t.Errorf("errors %v", r.body["errors"])
			}
		}},
		{name: "create requires type", method: "POST", path: netPath, form: form("iface", "vmbr1"), wantStatus: 400, check: func(t *testing.T, r reply) {
			if errs, _ := r.body["errors"].(map[string]any); errs["type"] == nil {
				t.Errorf("errors %v, want type", r.body["errors"])
			}
		}},
		{name: "create rejects unknown type", method: "POST", path: netPath, form: form("iface", "vmbr1", "type", "switch"), wantStatus: 400},
		{name: "create rejects unknown property", method: "POST", path: netPath, form: form("iface", "vmbr1", "type", "bridge", "colour", "red"), wantStatus: 400, check: func(t *testing.T, r reply) {
			if errs, _ := r.body["errors"].(map[string]any); errs["colour"] != msgNotInSchema {
				t.Errorf("errors %v", r.body["errors"])
			}
		}},
		{name: "create existing", method: "POST", path: netPath, form: form("iface", "vmbr0", "type", "bridge"), wantStatus: 400, check: func(t *testing.T, r reply) {
			if string(r.raw) != `{"data":null,"errors":{"iface":"interface already exists"},"message":"Parameter verification failed.\n"}` {
				t.Errorf("body %s", r.raw)
			}
		}},
		{name: "create bridge", method: "POST", path: netPath, form: form("iface", "vmbr1", "type", "bridge", "cidr", "198.51.100.1/24", "autostart", "1", "bridge_vlan_aware", "1", "comments", "lab"), wantStatus: 200, check: func(t *testing.T, r reply) {
			if string(r.raw) != `{"data":null}` {
				t.Errorf("body %s", r.raw)
			}
		}},
		{name: "list shows pending bridge and changes", method: "GET", path: netPath, wantStatus: 200, check: func(t *testing.T, r reply) {
			if got := ifaceNames(t, r); !slices.Equal(got, []string{"eno1", "vmbr0", "vmbr1"}) {
				t.Errorf("ifaces %v", got)
			}
			ch, _ := r.body["changes"].(string)
			for _, want := range []string{"--- /etc/network/interfaces\t", "+++ /etc/network/interfaces.new\t", "+auto vmbr1", "+\taddress 198.51.100.1/24", "+\tbridge-vlan-aware yes", "+#lab"} {
				if !strings.Contains(ch, want) {
					t.Errorf("changes lack %q:\n%s", want, ch)
				}
			}
			for _, it := range r.dataList(t) {
				m := it.(map[string]any)
				if m["iface"] == "vmbr1" {
					if _, active := m["active"]; active {
						t.Errorf("pending interface reported active")
					}
					if m["bridge_vlan_aware"] != float64(1) || m["comments"] != "lab\n" || m["netmask"] != "24" {
						t.Errorf("vmbr1 = %v", m)
					}
				}
			}
		}},
		{name: "type filter bridge", method: "GET", path: netPath, form: form("type", "bridge"), wantStatus: 200, check: func(t *testing.T, r reply) {
			if got := ifaceNames(t, r); !slices.Equal(got, []string{"vmbr0", "vmbr1"}) {
				t.Errorf("ifaces %v", got)
			}
		}},
		{name: "type filter any_bridge", method: "GET", path: netPath, form: form("type", "any_bridge"), wantStatus: 200, check: func(t *testing.T, r reply) {
			if got := ifaceNames(t, r); !slices.Equal(got, []string{"vmbr0", "vmbr1"}) {
				t.Errorf("ifaces %v", got)
			}
		}},
		{name: "type filter eth", method: "GET", path: netPath, form: form("type", "eth"), wantStatus: 200, check: func(t *testing.T, r reply) {
			if got := ifaceNames(t, r); !slices.Equal(got, []string{"eno1"}) {
				t.Errorf("ifaces %v", got)
			}
		}},
		{name: "update requires type", method: "PUT", path: netPath + "/vmbr1", form: form("mtu", "9000"), wantStatus: 400},
		{name: "update mtu out of range", method: "PUT", path: netPath + "/vmbr1", form: form("type", "bridge", "mtu", "100"), wantStatus: 400},
		{name: "update type mismatch", method: "PUT", path: netPath + "/vmbr1", form: form("type", "eth"), wantStatus: 400},
		{name: "update mtu and delete comment", method: "PUT", path: netPath + "/vmbr1", form: form("type", "bridge", "mtu", "9000", "delete", "comments,bridge_vlan_aware"), wantStatus: 200},
		{name: "read back update", method: "GET", path: netPath + "/vmbr1", wantStatus: 200, check: func(t *testing.T, r reply) {
			d := r.dataMap(t)
			if d["mtu"] != "9000" {
				t.Errorf("mtu %#v, want string 9000", d["mtu"])
			}
			if _, ok := d["comments"]; ok {
				t.Errorf("comments not deleted")
			}
			if _, ok := d["bridge_vlan_aware"]; ok {
				t.Errorf("bridge_vlan_aware not deleted")
			}
		}},
		{name: "second default gateway", method: "PUT", path: netPath + "/vmbr1", form: form("type", "bridge", "gateway", "198.51.100.254"), wantStatus: 400},
		{name: "apply", method: "PUT", path: netPath, wantStatus: 200, check: func(t *testing.T, r reply) {
			s, _ := r.data().(string)
			if !upidPattern.MatchString(s) {
				t.Fatalf("apply returned %q, want a srvreload UPID", s)
			}
			upid = s
		}},
		{name: "applied: no changes, vmbr1 active", method: "GET", path: netPath, wantStatus: 200, check: func(t *testing.T, r reply) {
			if _, ok := r.body["changes"]; ok {
				t.Errorf("changes after apply: %v", r.body["changes"])
			}
			for _, it := range r.dataList(t) {
				if m := it.(map[string]any); m["iface"] == "vmbr1" && m["active"] != float64(1) {
					t.Errorf("vmbr1 not active after apply: %v", m)
				}
			}
		}},
		{name: "delete eno1 staged", method: "DELETE", path: netPath + "/vmbr1", wantStatus: 200},
		{name: "delete missing", method: "DELETE", path: netPath + "/vmbr1", wantStatus: 400},
		{name: "revert", method: "DELETE", path: netPath, wantStatus: 200},
		{name: "vmbr1 back after revert", method: "GET", path: netPath + "/vmbr1", wantStatus: 200},
	})
	t.Run("task status", func(t *testing.T) {
		r := b.do(t, "GET", "/api2/json/nodes/pve1/tasks/"+url.PathEscape(upid)+"/status", nil)
		if r.status != 200 {
			t.Fatalf("status %d %s", r.status, r.raw)
		}
		d := r.dataMap(t)
		if d["status"] != "stopped" || d["exitstatus"] != "OK" || d["type"] != "srvreload" || d["id"] != "networking" || d["upid"] != upid {
			t.Errorf("task %v", d)
		}
	})
	t.Run("state files", func(t *testing.T) {
		dir := b.srv.store.dir
		if _, err := os.Stat(filepath.Join(dir, "interfaces.new")); !os.IsNotExist(err) {
			t.Errorf("interfaces.new exists after revert (err %v)", err)
		}
		data, err := os.ReadFile(filepath.Join(dir, "interfaces"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), "iface vmbr1 inet static\n\taddress 198.51.100.1/24\n") {
			t.Errorf("interfaces:\n%s", data)
		}
	})
}

// TestAppliedCounts checks that only writes that changed state count.
func TestAppliedCounts(t *testing.T) {
	b := startBackend(t, Options{Flavor: FlavorRust})
	writes := []struct {
		method, path string
		form         url.Values
		status       int
	}{
		{"POST", netPath, form("iface", "eno1.10", "type", "vlan"), 200},                                  // applied
		{"POST", netPath, form("iface", "eno1.10", "type", "vlan"), 400},                                  // exists: not applied
		{"PUT", netPath + "/eno1", form("type", "eth"), 200},                                              // no change: not applied
		{"PUT", netPath + "/eno1", form("type", "eth", "mtu", "9000"), 200},                               // applied
		{"PUT", netPath + "/eno1", form("type", "eth", "mtu", "9000"), 200},                               // same again: not applied
		{"PUT", netPath, nil, 200},                                                                        // apply: applied
		{"PUT", netPath, nil, 200},                                                                        // nothing pending: not applied
		{"DELETE", netPath, nil, 200},                                                                     // nothing to revert: not applied
		{"DELETE", netPath + "/eno1.10", nil, 200},                                                        // applied
		{"DELETE", netPath, nil, 200},                                                                     // revert: applied
		{"POST", "/api2/extjs/nodes/pve1/network", form("iface", "eno1.20", "type", "vlan"), 200},         // extjs counts under the same template
		{"POST", "/api2/json/cluster/sdn/zones", form("zone", "z1", "type", "simple"), 200},               // applied
		{"PUT", "/api2/json/cluster/sdn", nil, 200},                                                       // applied
		{"PUT", "/api2/json/cluster/sdn", nil, 200},                                                       // nothing new: not applied
		{"GET", netPath, nil, 200},                                                                        // reads never count
		{"POST", "/api2/json/nodes/pve1/network", form("iface", "x", "type", "eth"), 400},                 // invalid name
		{"POST", "/api2/json/nodes/other/network", form("iface", "eno1.30", "type", "vlan"), 500},         // unknown node
		{"PUT", "/api2/json/cluster/sdn/zones/z1", form("ipam", "pve"), 200},                              // applied
		{"PUT", "/api2/json/cluster/sdn/zones/z1", form("ipam", "pve"), 200},                              // unchanged
		{"DELETE", "/api2/json/cluster/sdn/zones/zz", nil, 500},                                           // missing
		{"POST", "/api2/json/cluster/sdn/vnets", form("vnet", "v1", "zone", "z1", "tag", "5"), 200},       // applied
		{"DELETE", "/api2/json/cluster/sdn/vnets/v1", nil, 200},                                           // applied
		{"POST", "/api2/json/cluster/sdn/rollback", nil, 200},                                             // pending == running + ipam change: applied
		{"POST", "/api2/json/cluster/sdn/rollback", nil, 200},                                             // nothing to roll back
		{"PUT", netPath + "/eno1", form("type", "eth", "mtu", "9000", "comments", "uplink"), 200},         // applied
		{"PUT", "/api2/json/nodes/pve1/network/eno1", form("type", "eth", "delete", "comments,mtu"), 200}, // applied
	}
	for i, w := range writes {
		r := b.do(t, w.method, w.path, w.form)
		if r.status != w.status {
			t.Fatalf("write %d %s %s: status %d, want %d (%s)", i, w.method, w.path, r.status, w.status, r.raw)
		}
	}
	want := map[string]int64{
		"POST /nodes/{node}/network":           2,
		"PUT /nodes/{node}/network/{iface}":    3,
		"PUT /nodes/{node}/network":            1,
		"DELETE /nodes/{node}/network/{iface}": 1,
		"DELETE /nodes/{node}/network":         1,
		"POST /cluster/sdn/zones":              1,
		"PUT /cluster/sdn":                     1,
		"PUT /cluster/sdn/zones/{zone}":        1,
		"POST /cluster/sdn/vnets":              1,
		"DELETE /cluster/sdn/vnets/{vnet}":     1,
		"POST /cluster/sdn/rollback":           1,
	}
	if got := b.srv.Applied(); !maps.Equal(got, want) {
		t.Errorf("Applied() = %v\nwant        %v", got, want)
	}
	var viaHTTP map[string]int64
	b.debugJSON(t, "/debug/applied", &viaHTTP)
	if !maps.Equal(viaHTTP, want) {
		t.Errorf("/debug/applied = %v", viaHTTP)
	}
}

// TestSharedStateAcrossFlavours: a write through one backend is read back
// through the other, as the router will do when it splits reads and writes.
func TestSharedStateAcrossFlavours(t *testing.T) {
	dir := t.TempDir()
	perl := startBackend(t, Options{Flavor: FlavorPerl, StateDir: dir})
	rust := startBackend(t, Options{Flavor: FlavorRust, StateDir: dir})
	tests := []struct {
		name         string
		writer       *backend
		reader       *backend
		method, path string
		form         url.Values
		check        string // iface that must then be visible through reader
	}{
		{"rust creates, perl reads", rust, perl, "POST", netPath, form("iface", "vmbr5", "type", "bridge"), "vmbr5"},
		{"perl creates, rust reads", perl, rust, "POST", netPath, form("iface", "vmbr6", "type", "bridge"), "vmbr6"},
		{"rust applies, perl sees it active", rust, perl, "PUT", netPath, nil, "vmbr6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := tt.writer.do(t, tt.method, tt.path, tt.form)
			if w.status != 200 {
				t.Fatalf("write: %d %s", w.status, w.raw)
			}
			if got := w.header.Get("X-Pve-Served-By"); got != string(tt.writer.srv.Flavor()) {
				t.Errorf("writer served-by %q", got)
			}
			r := tt.reader.do(t, "GET", netPath+"/"+tt.check, nil)
			if r.status != 200 {
				t.Fatalf("read: %d %s", r.status, r.raw)
			}
			if got := r.header.Get("X-Pve-Served-By"); got != string(tt.reader.srv.Flavor()) {
				t.Errorf("reader served-by %q", got)
			}
		})
	}
	if _, active := perl.do(t, "GET", netPath+"/vmbr6", nil).dataMap(t)["active"]; !active {
		t.Errorf("vmbr6 not active through perl after rust applied")
	}
	if got := perl.srv.Applied()["POST /nodes/{node}/network"]; got != 1 {
		t.Errorf("perl applied %d creates, want 1", got)
	}
	if got := rust.srv.Applied()["PUT /nodes/{node}/network"]; got != 1 {
		t.Errorf("rust applied %d applies, want 1", got)
	}
}

// TestConcurrentWritesBothFlavours hammers one state directory through both
// backends; with the flock every create survives (no lost update) and the
// staged file stays parseable. Run with -race.
func TestConcurrentWritesBothFlavours(t *testing.T) {
	dir := t.TempDir()
	backends := []*backend{
		startBackend(t, Options{Flavor: FlavorPerl, StateDir: dir}),
		startBackend(t, Options{Flavor: FlavorRust, StateDir: dir}),
	}
	const workers, perWorker = 8, 5
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				b := backends[(w+i)%2]
				name := fmt.Sprintf("vmbr%d", 10+w*perWorker+i)
				resp, err := testClient.PostForm(b.url+netPath, form("iface", name, "type", "bridge", "comments", "w"+name))
				if err != nil {
					errs <- err
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs <- fmt.Errorf("create %s via %s: %s", name, b.srv.Flavor(), resp.Status)
				}
				// Interleave reads and no-op updates on the shared files.
				if resp, err := testClient.Get(backends[i%2].url + netPath); err == nil {
					resp.Body.Close()
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	r := backends[0].do(t, "GET", netPath, form("type", "bridge"))
	if got := len(ifaceNames(t, r)); got != 1+workers*perWorker {
		t.Errorf("%d bridges, want %d", got, 1+workers*perWorker)
	}
	data, err := os.ReadFile(filepath.Join(dir, fileInterfacesNew))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parseInterfaces(string(data))
	if err != nil {
		t.Fatalf("interfaces.new corrupt: %v", err)
	}
	if len(cfg.Ifaces) != 3+workers*perWorker {
		t.Errorf("interfaces.new has %d interfaces", len(cfg.Ifaces))
	}
	total := backends[0].srv.Applied()["POST /nodes/{node}/network"] + backends[1].srv.Applied()["POST /nodes/{node}/network"]
	if total != workers*perWorker {
		t.Errorf("applied creates %d, want %d", total, workers*perWorker)
	}
	// Apply through one, concurrently with reads through the other.
	var wg2 sync.WaitGroup
	wg2.Go(func() { backends[1].do(t, "PUT", netPath, nil) })
	wg2.Go(func() { backends[0].do(t, "GET", netPath, nil) })
	wg2.Wait()
	if _, err := os.Stat(filepath.Join(dir, fileInterfacesNew)); !os.IsNotExist(err) {
		t.Errorf("interfaces.new still there after apply")
	}
}

func TestNetworkValidation(t *testing.T) {
	b := startBackend(t, Options{Flavor: FlavorPerl})
	tests := []struct {
		name     string
		method   string
		path     string
		form     url.Values
		status   int
		errorKey string
	}{
		{"bad iface name", "POST", netPath, form("iface", "Bad-Name!", "type", "eth"), 400, "iface"},
		{"address without netmask", "POST", netPath, form("iface", "eno2", "type", "eth", "address", "192.0.2.50"), 400, "netmask"},
		{"bad ipv4", "POST", netPath, form("iface", "eno2", "type", "eth", "address", "300.1.1.1", "netmask", "24"), 400, "address"},
		{"bad boolean", "POST", netPath, form("iface", "eno2", "type", "eth", "autostart", "maybe"), 400, "autostart"},
		{"vlan without device", "POST", netPath, form("iface", "myvlan", "type", "vlan"), 400, "vlan-raw-device"},
		{"port already used", "POST", netPath, form("iface", "vmbr2", "type", "bridge", "bridge_ports", "eno1"), 400, "bridge_ports"},
		{"ovs bond needs bridge", "POST", netPath, form("iface", "bond0", "type", "OVSBond"), 400, "ovs_bridge"},
		{"path conflicts with body", "PUT", netPath + "/eno1", form("type", "eth", "iface", "eno2"), 400, "iface"},
		{"ovs bridge", "POST", netPath, form("iface", "vmbr7", "type", "OVSBridge"), 200, ""},
		{"ovs int port joins bridge", "POST", netPath, form("iface", "mgmt0", "type", "OVSIntPort", "ovs_bridge", "vmbr7", "ovs_tag", "7"), 200, ""},
		{"ovs int port needs an OVS bridge", "POST", netPath, form("iface", "mgmt1", "type", "OVSIntPort", "ovs_bridge", "vmbr0"), 400, "ovs_bridge"},
		{"dotted netmask accepted", "POST", netPath, form("iface", "eno2", "type", "eth", "address", "192.0.2.50", "netmask", "255.255.255.0"), 200, ""},
		{"unknown node", "GET", "/api2/json/nodes/pve9/network", nil, 500, ""},
		{"bad upid", "GET", "/api2/json/nodes/pve1/tasks/nonsense/status", nil, 500, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := b.do(t, tt.method, tt.path, tt.form)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.raw)
			}
			if tt.errorKey != "" {
				errs, _ := r.body["errors"].(map[string]any)
				if _, ok := errs[tt.errorKey]; !ok {
					t.Errorf("errors %v lack %q", errs, tt.errorKey)
				}
				if r.body["message"] != msgParamFailed {
					t.Errorf("message %q", r.body["message"])
				}
			}
		})
	}
	if got := b.do(t, "GET", netPath+"/vmbr7", nil).dataMap(t); got["ovs_ports"] != "mgmt0" || got["type"] != "OVSBridge" {
		t.Errorf("vmbr7 %v", got)
	}
	if r := b.do(t, "DELETE", netPath+"/mgmt0", nil); r.status != 200 {
		t.Fatalf("delete mgmt0: %d", r.status)
	}
	if _, ok := b.do(t, "GET", netPath+"/vmbr7", nil).dataMap(t)["ovs_ports"]; ok {
		t.Errorf("mgmt0 still in vmbr7's ovs_ports")
	}
	if got := b.do(t, "GET", netPath+"/eno2", nil).dataMap(t)["netmask"]; got != "24" {
		t.Errorf("dotted netmask stored as %v, want \"24\"", got)
	}
}
