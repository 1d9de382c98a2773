package server_test

import (
	"context"
	"strings"
	"testing"

	"github.com/pve-migration/router/routing"
	"github.com/pve-migration/router/server"
	"github.com/pve-migration/router/server/extproctest"
)

// namedLookup knows interface types the way PVE names interfaces in the
// test tables: eth*/eno* are NICs, eth0:1 an alias, vmbr* bridges, bond*
// bonds; anything else does not exist. (PerlLookup against a real backend
// is tested in lookup_test.go and through the data plane.)
type namedLookup struct{}

func (namedLookup) LookupType(_ context.Context, _, iface string) (string, error) {
	switch {
	case strings.Contains(iface, ":"):
		return "alias", nil
	case strings.HasPrefix(iface, "eth"), strings.HasPrefix(iface, "eno"):
		return "eth", nil
	case strings.HasPrefix(iface, "vmbr"):
		return "bridge", nil
	case strings.HasPrefix(iface, "bond"):
		return "bond", nil
	}
	return "", nil
}

var _ server.TypeLookup = namedLookup{}

// TestPutConsidersCurrentType: a PUT of an existing interface is basic only
// when both the claimed and the current type are basic; a lookup that
// cannot tell makes it advanced (finding 3 of issue 13).
func TestPutConsidersCurrentType(t *testing.T) {
	cases := []struct {
		name    string
		path    string
		lookup  server.TypeLookup
		want    string
		typeErr bool
	}{
		{"bridge claimed eth", "/api2/json/nodes/pve1/network/vmbr0?type=eth", namedLookup{}, "perl", false},
		{"nic claimed eth", "/api2/json/nodes/pve1/network/eth0?type=eth", namedLookup{}, "rust", false},
		{"alias claimed alias", "/api2/json/nodes/pve1/network/eth0:1?type=alias", namedLookup{}, "rust", false},
		{"unknown interface", "/api2/json/nodes/pve1/network/nosuch0?type=eth", namedLookup{}, "perl", true},
		{"no lookup", "/api2/json/nodes/pve1/network/eth0?type=eth", nil, "perl", true},
		{"apply is not typed", "/api2/json/nodes/pve1/network", nil, "rust", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, snapshot(routing.RustBasicWrite), harnessOpts{lookup: c.lookup})
			id := "req-" + strings.ReplaceAll(c.name, " ", "-")
			res := h.do(t, extproctest.Request{Method: "PUT", Path: c.path, Headers: map[string]string{"x-request-id": id},
				Upstream: extproctest.Upstream{ServedBy: c.want, Attempts: 1}})
			if res.Backend != c.want {
				t.Errorf("backend %s, want %s", res.Backend, c.want)
			}
			ev := h.obs.byRequestID(t, id, 2)
			if d := ev[0].dec; (d.TypeError != "") != c.typeErr {
				t.Errorf("type error %q, want one: %v", d.TypeError, c.typeErr)
			}
		})
	}
}

// TestUpgradeIsPerl: a request with an upgrade header is decided for perl
// as not-network, in every phase (issue 13, finding 6).
func TestUpgradeIsPerl(t *testing.T) {
	h := newHarness(t, snapshot(routing.RustFull), harnessOpts{lookup: namedLookup{}})
	for _, path := range []string{"/api2/json/nodes/pve1/network", "/api2/extjs/cluster/sdn/zones"} {
		res := h.do(t, extproctest.Request{Method: "GET", Path: path,
			Headers:  map[string]string{"upgrade": "websocket", "connection": "Upgrade", "x-request-id": "ws-" + path},
			Upstream: extproctest.Upstream{ServedBy: "perl", Attempts: 1}})
		if res.Backend != "perl" {
			t.Errorf("upgrade GET %s: backend %s, want perl", path, res.Backend)
		}
		if d := h.obs.byRequestID(t, "ws-"+path, 2)[0].dec; d.Decision.Category != routing.NotNetwork {
			t.Errorf("upgrade GET %s: category %s, want not-network", path, d.Decision.Category)
		}
	}
	if res := h.do(t, extproctest.Request{Method: "GET", Path: "/api2/json/nodes/pve1/network", Upstream: extproctest.Upstream{ServedBy: "rust", Attempts: 1}}); res.Backend != "rust" {
		t.Errorf("plain GET: backend %s, want rust", res.Backend)
	}
}
