package pvedemo

import (
	"regexp"
	"testing"
)

const sdn = "/api2/json/cluster/sdn"

func TestSDNRoundTrip(t *testing.T) {
	dir := t.TempDir()
	perl := startBackend(t, Options{Flavor: FlavorPerl, StateDir: dir})
	rust := startBackend(t, Options{Flavor: FlavorRust, StateDir: dir})
	item := func(t *testing.T, r reply, i int) map[string]any {
		t.Helper()
		l := r.dataList(t)
		if i >= len(l) {
			t.Fatalf("list has %d items: %s", len(l), r.raw)
		}
		return l[i].(map[string]any)
	}
	runSteps(t, rust, []step{
		{name: "index", method: "GET", path: sdn, wantStatus: 200, check: func(t *testing.T, r reply) {
			if len(r.dataList(t)) == 0 {
				t.Error("empty index")
			}
		}},
		{name: "zone needs type", method: "POST", path: sdn + "/zones", form: form("zone", "lab"), wantStatus: 400},
		{name: "zone id format", method: "POST", path: sdn + "/zones", form: form("zone", "Lab-Zone-Long", "type", "simple"), wantStatus: 400},
		{name: "create zone", method: "POST", path: sdn + "/zones", form: form("zone", "lab", "type", "vlan", "bridge", "vmbr0", "mtu", "1450"), wantStatus: 200},
		{name: "duplicate zone dies", method: "POST", path: sdn + "/zones", form: form("zone", "lab", "type", "simple"), wantStatus: 500},
		{name: "vnet needs existing zone", method: "POST", path: sdn + "/vnets", form: form("vnet", "v1", "zone", "nope"), wantStatus: 400},
		{name: "create vnet", method: "POST", path: sdn + "/vnets", form: form("vnet", "user1", "zone", "lab", "tag", "10", "vlanaware", "1", "alias", "myuser1's network"), wantStatus: 200},
		{name: "create subnet", method: "POST", path: sdn + "/vnets/user1/subnets", form: form("subnet", "10.10.0.0/24", "type", "subnet", "gateway", "10.10.0.1", "snat", "1"), wantStatus: 200},
		{name: "list subnets of vnet", method: "GET", path: sdn + "/vnets/user1/subnets", wantStatus: 200, check: func(t *testing.T, r reply) {
			if s := item(t, r, 0); s["subnet"] != "lab-10.10.0.0-24" || s["vnet"] != "user1" || s["gateway"] != "10.10.0.1" {
				t.Errorf("subnet %v", s)
			}
		}},
		{name: "update subnet", method: "PUT", path: sdn + "/vnets/user1/subnets/lab-10.10.0.0-24", form: form("snat", "0", "dhcp-range", "start-address=10.10.0.100,end-address=10.10.0.200"), wantStatus: 200},
		{name: "read updated subnet", method: "GET", path: sdn + "/vnets/user1/subnets/lab-10.10.0.0-24", wantStatus: 200, check: func(t *testing.T, r reply) {
			d := r.dataMap(t)
			if d["snat"] != float64(0) {
				t.Errorf("snat %v", d["snat"])
			}
			if rng, _ := d["dhcp-range"].([]any); len(rng) != 1 {
				t.Errorf("dhcp-range %v", d["dhcp-range"])
			}
		}},
		{name: "restore snat", method: "PUT", path: sdn + "/vnets/user1/subnets/lab-10.10.0.0-24", form: form("snat", "1", "delete", "dhcp-range"), wantStatus: 200},
		{name: "subnet gateway outside", method: "POST", path: sdn + "/vnets/user1/subnets", form: form("subnet", "10.11.0.0/24", "type", "subnet", "gateway", "10.99.0.1"), wantStatus: 400},
		{name: "pending view marks new", method: "GET", path: sdn + "/vnets", form: form("pending", "1"), wantStatus: 200, check: func(t *testing.T, r reply) {
			v := item(t, r, 0)
			if v["state"] != "new" || v["vnet"] != "user1" {
				t.Errorf("vnet %v", v)
			}
			if p, _ := v["pending"].(map[string]any); p["tag"] != float64(10) {
				t.Errorf("pending %v", v["pending"])
			}
		}},
		{name: "running view empty before apply", method: "GET", path: sdn + "/zones", form: form("running", "1"), wantStatus: 200, check: func(t *testing.T, r reply) {
			if n := len(r.dataList(t)); n != 0 {
				t.Errorf("%d running zones", n)
			}
		}},
		{name: "apply", method: "PUT", path: sdn, wantStatus: 200, check: func(t *testing.T, r reply) {
			s, _ := r.data().(string)
			if !regexp.MustCompile(`^UPID:pve1:[0-9A-F]{8}:[0-9A-F]{8}:[0-9A-F]{8}:reloadnetworkall::root@pam:$`).MatchString(s) {
				t.Errorf("UPID %q", s)
			}
		}},
		{name: "update vnet", method: "PUT", path: sdn + "/vnets/user1", form: form("tag", "11", "delete", "alias"), wantStatus: 200},
		{name: "pending view marks changed", method: "GET", path: sdn + "/vnets/user1", form: form("pending", "1"), wantStatus: 200, check: func(t *testing.T, r reply) {
			v := r.dataMap(t)
			p, _ := v["pending"].(map[string]any)
			if v["state"] != "changed" || v["tag"] != float64(10) || p["tag"] != float64(11) {
				t.Errorf("vnet %v", v)
			}
		}},
		{name: "zone in use", method: "DELETE", path: sdn + "/zones/lab", wantStatus: 500},
		{name: "vnet with subnet", method: "DELETE", path: sdn + "/vnets/user1", wantStatus: 500},
		{name: "subnet by CIDR", method: "GET", path: sdn + "/vnets/user1/subnets/10.10.0.0%2F24", wantStatus: 200, check: func(t *testing.T, r reply) {
			d := r.dataMap(t)
			if d["subnet"] != "lab-10.10.0.0-24" || d["mask"] != "24" || d["network"] != "10.10.0.0" || d["snat"] != float64(1) || d["zone"] != "lab" {
				t.Errorf("subnet %v", d)
			}
		}},
		{name: "delete subnet by id", method: "DELETE", path: sdn + "/vnets/user1/subnets/lab-10.10.0.0-24", wantStatus: 200},
		{name: "delete vnet", method: "DELETE", path: sdn + "/vnets/user1", wantStatus: 200},
		{name: "missing vnet dies", method: "GET", path: sdn + "/vnets/user1", wantStatus: 500},
	})
	t.Run("perl sees rust's edits and digest", func(t *testing.T) {
		r := perl.do(t, "GET", sdn+"/zones/lab", nil)
		d := r.dataMap(t)
		if d["type"] != "vlan" || d["bridge"] != "vmbr0" || d["mtu"] != float64(1450) || d["digest"] == "" {
			t.Errorf("zone %v", d)
		}
		stale := perl.do(t, "PUT", sdn+"/zones/lab", form("mtu", "1400", "digest", "0000"))
		if stale.status != 500 {
			t.Errorf("stale digest: %d", stale.status)
		}
		fresh := perl.do(t, "PUT", sdn+"/zones/lab", form("mtu", "1400", "digest", d["digest"].(string)))
		if fresh.status != 200 {
			t.Errorf("fresh digest: %d %s", fresh.status, fresh.raw)
		}
	})
	t.Run("pending view marks deleted", func(t *testing.T) {
		r := perl.do(t, "GET", sdn+"/vnets", form("pending", "1"))
		if v := item(t, r, 0); v["state"] != "deleted" {
			t.Errorf("vnet %v", v)
		}
	})
	t.Run("rollback restores running config", func(t *testing.T) {
		if r := perl.do(t, "POST", sdn+"/rollback", nil); r.status != 200 {
			t.Fatalf("rollback %d", r.status)
		}
		if r := rust.do(t, "GET", sdn+"/vnets/user1", nil); r.status != 200 || r.dataMap(t)["tag"] != float64(10) {
			t.Errorf("after rollback %d %s", r.status, r.raw)
		}
	})
	t.Run("zone type filter", func(t *testing.T) {
		if n := len(rust.do(t, "GET", sdn+"/zones", form("type", "evpn")).dataList(t)); n != 0 {
			t.Errorf("%d evpn zones", n)
		}
		if n := len(rust.do(t, "GET", sdn+"/zones", form("type", "vlan")).dataList(t)); n != 1 {
			t.Errorf("%d vlan zones", n)
		}
	})
}
