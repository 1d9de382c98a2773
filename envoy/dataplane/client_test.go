package dataplane

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	proxmox "github.com/luthermonson/go-proxmox"
)

const (
	testTokenID     = "root@pam!ci"
	testTokenSecret = "5f0c6d1e-2b7a-4c1e-9d3f-8a6b4c2e1f00"
)

// TestGoProxmoxClient drives the network API through the data plane with
// an unmodified public PVE client (github.com/luthermonson/go-proxmox):
// interfaces list/get/create/update/delete/apply with task polling, and
// SDN zones and vnets. The same calls must succeed in every phase, whoever
// serves them, with API-token login and with ticket + CSRF login, which
// the data plane passes through untouched.
func TestGoProxmoxClient(t *testing.T) {
	for pi, phase := range phases {
		for _, login := range []string{"token", "ticket"} {
			t.Run(phase+"/"+login, func(t *testing.T) {
				e := newEnv(t, envOptions{phase: phase, token: testTokenID + "=" + testTokenSecret, extra: "[features]\nenable_sdn_migration = true\n"})
				opts := []proxmox.Option{proxmox.WithHTTPClient(&http.Client{Timeout: 20 * time.Second})}
				if login == "token" {
					opts = append(opts, proxmox.WithAPIToken(testTokenID, testTokenSecret))
				} else {
					opts = append(opts, proxmox.WithCredentials(&proxmox.Credentials{Username: "root@pam", Password: "demo"}))
				}
				c := proxmox.NewClient(e.url+"/api2/json", opts...)
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				runClientWorkflow(ctx, t, c, fmt.Sprintf("vmbr%d", 40+pi), fmt.Sprintf("cz%d", pi))
				// Every call succeeded; the backends' logs show who served
				// the interface list in this phase.
				rustLists, perlLists := seen(e.rust, "GET", netPath), seen(e.perl, "GET", netPath)
				if pi == 0 && rustLists != 0 || pi > 0 && perlLists != 0 {
					t.Errorf("interface lists: rust %d, perl %d in %s", rustLists, perlLists, phase)
				}
				if m := e.proxy.Metrics(); m.LocalReplies[http.StatusServiceUnavailable]+m.LocalReplies[http.StatusGatewayTimeout] != 0 || m.FailOpen != 0 {
					t.Errorf("metrics: %+v", m)
				}
			})
		}
	}
}

func runClientWorkflow(ctx context.Context, t *testing.T, c *proxmox.Client, bridge, zone string) {
	t.Helper()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	v, err := c.Version(ctx)
	must("version", err)
	if v.Version == "" {
		t.Fatalf("version %+v", v)
	}
	node := (&proxmox.Node{}).New(c, "pve1")

	nets, err := node.Networks(ctx)
	must("list interfaces", err)
	if len(nets) == 0 {
		t.Fatal("no interfaces")
	}
	bridges, err := node.Networks(ctx, "bridge")
	must("list bridges", err)
	for _, n := range bridges {
		if n.Type != "bridge" {
			t.Errorf("type filter bridge returned %s %s", n.Iface, n.Type)
		}
	}

	// Create (POST) and apply (PUT, a UPID), then poll the task.
	task, err := node.NewNetwork(ctx, &proxmox.NodeNetwork{Iface: bridge, Type: "bridge", Autostart: 1, Comments: "via data plane"})
	must("create bridge", err)
	if task == nil {
		t.Fatal("create: no apply task")
	}
	must("wait for apply", task.Wait(ctx, 100*time.Millisecond, 10*time.Second))
	if !task.IsSuccessful {
		t.Fatalf("apply task %+v", task)
	}

	got, err := node.Network(ctx, bridge)
	must("get bridge", err)
	if got.Type != "bridge" || strings.TrimSpace(got.Comments) != "via data plane" {
		t.Fatalf("get bridge: %+v", got)
	}

	// Update an eth (a basic write) and the bridge (advanced). Fields PVE
	// returns but does not accept on PUT (read-only state, and the legacy
	// bridge_stp/bridge_fd) are cleared first, as a careful caller must.
	eth, err := node.Network(ctx, "eno1")
	must("get eno1", err)
	eth.Active, eth.Priority, eth.Method, eth.Method6 = 0, 0, "", ""
	eth.MTU = "9000"
	must("update eno1", eth.Update(ctx))
	got.Active, got.Priority, got.Method, got.Method6 = 0, 0, "", ""
	got.BridgeStp, got.BridgeFd = "", ""
	got.Comments = "updated"
	must("update bridge", got.Update(ctx))
	again, err := node.Network(ctx, bridge)
	must("re-read bridge", err)
	if strings.TrimSpace(again.Comments) != "updated" {
		t.Errorf("bridge comments %q after update", again.Comments)
	}

	// Delete (DELETE, then apply).
	task, err = again.Delete(ctx)
	must("delete bridge", err)
	must("wait for delete apply", task.Wait(ctx, 100*time.Millisecond, 10*time.Second))
	if _, err := node.Network(ctx, bridge); err == nil {
		t.Errorf("bridge %s still there after delete and apply", bridge)
	}

	// SDN: a zone and a vnet in it, read back, updated, deleted, applied.
	cl := (&proxmox.Cluster{}).New(c)
	must("create zone", cl.NewSDNZone(ctx, &proxmox.SDNZoneOptions{Name: zone, Type: "simple"}))
	vnet := "v" + zone
	must("create vnet", cl.NewSDNVNet(ctx, &proxmox.VNetOptions{Name: vnet, Zone: zone, Alias: "first"}))
	vnets, err := cl.SDNVNets(ctx)
	must("list vnets", err)
	found := false
	for _, vn := range vnets {
		found = found || vn.Name == vnet
	}
	if !found {
		t.Fatalf("vnet %s not listed: %+v", vnet, vnets)
	}
	vn, err := cl.SDNVNet(ctx, vnet)
	must("get vnet", err)
	vn.Alias = "second"
	vn.Type, vn.Zone = "", ""
	must("update vnet", cl.UpdateSDNVNet(ctx, vn))
	vn, err = cl.SDNVNet(ctx, vnet)
	must("re-read vnet", err)
	if vn.Alias != "second" {
		t.Errorf("vnet alias %q after update", vn.Alias)
	}
	sdnTask, err := cl.SDNApply(ctx)
	must("sdn apply", err)
	must("wait for sdn apply", sdnTask.Wait(ctx, 100*time.Millisecond, 10*time.Second))
	must("delete vnet", cl.DeleteSDNVNet(ctx, vnet))
	must("delete zone", cl.DeleteSDNZone(ctx, zone))
}
