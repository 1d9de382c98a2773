package routing

import "strings"

// method bits, so that a template's allowed methods fit in one byte.
const (
	mGET uint8 = 1 << iota
	mPOST
	mPUT
	mDELETE
)

func methodBit(m string) uint8 {
	switch m {
	case "GET":
		return mGET
	case "POST":
		return mPOST
	case "PUT":
		return mPUT
	case "DELETE":
		return mDELETE
	}
	return 0
}

// ValidMethod reports whether m is one of the four methods pveproxy knows.
// PVE answers every other method (HEAD and OPTIONS included) with 501, so
// config rules naming another method are mistakes.
func ValidMethod(m string) bool { return methodBit(m) != 0 }

// family says how a template's methods map to categories.
type family uint8

const (
	famNodeNetwork      family = iota + 1 // /nodes/{node}/network
	famNodeNetworkIface                   // /nodes/{node}/network/{iface}
	famClusterSDN                         // /cluster/sdn/...
	famNodeSDN                            // /nodes/{node}/sdn/...
)

// entry is one catalogue template.
type entry struct {
	template string
	methods  uint8
	fam      family
}

// catalogue is every node-network and SDN method+path of PVE 9.1 (the API
// viewer's schema) plus the newer prefix-list and route-map endpoints. A
// path or method that is not here is not-network and stays on Perl: the
// router never guesses that an endpoint it does not know exists in Rust.
var catalogue = []entry{
	{"/nodes/{node}/network", mGET | mPOST | mPUT | mDELETE, famNodeNetwork},
	{"/nodes/{node}/network/{iface}", mGET | mPUT | mDELETE, famNodeNetworkIface},

	{"/cluster/sdn", mGET | mPUT, famClusterSDN},
	{"/cluster/sdn/dry-run", mGET, famClusterSDN},
	{"/cluster/sdn/lock", mPOST | mDELETE, famClusterSDN},
	{"/cluster/sdn/rollback", mPOST, famClusterSDN},
	{"/cluster/sdn/controllers", mGET | mPOST, famClusterSDN},
	{"/cluster/sdn/controllers/{controller}", mGET | mPUT | mDELETE, famClusterSDN},
	{"/cluster/sdn/dns", mGET | mPOST, famClusterSDN},
	{"/cluster/sdn/dns/{dns}", mGET | mPUT | mDELETE, famClusterSDN},
	{"/cluster/sdn/fabrics", mGET, famClusterSDN},
	{"/cluster/sdn/fabrics/all", mGET, famClusterSDN},
	{"/cluster/sdn/fabrics/fabric", mGET | mPOST, famClusterSDN},
	{"/cluster/sdn/fabrics/fabric/{id}", mGET | mPUT | mDELETE, famClusterSDN},
	{"/cluster/sdn/fabrics/node", mGET, famClusterSDN},
	{"/cluster/sdn/fabrics/node/{fabric_id}", mGET | mPOST, famClusterSDN},
	{"/cluster/sdn/fabrics/node/{fabric_id}/{node_id}", mGET | mPUT | mDELETE, famClusterSDN},
	{"/cluster/sdn/ipams", mGET | mPOST, famClusterSDN},
	{"/cluster/sdn/ipams/{ipam}", mGET | mPUT | mDELETE, famClusterSDN},
	{"/cluster/sdn/ipams/{ipam}/status", mGET, famClusterSDN},
	{"/cluster/sdn/prefix-lists", mGET | mPOST, famClusterSDN},
	{"/cluster/sdn/prefix-lists/{id}", mGET | mPUT | mDELETE, famClusterSDN},
	{"/cluster/sdn/prefix-lists/{id}/entries", mGET | mPOST, famClusterSDN},
	{"/cluster/sdn/prefix-lists/{id}/entries/{seq}", mGET | mPUT | mDELETE, famClusterSDN},
	{"/cluster/sdn/route-maps", mGET, famClusterSDN},
	{"/cluster/sdn/route-maps/entries", mGET | mPOST, famClusterSDN},
	{"/cluster/sdn/route-maps/entries/{route-map-id}", mGET, famClusterSDN},
	{"/cluster/sdn/route-maps/entries/{route-map-id}/entry/{order}", mGET | mPUT | mDELETE, famClusterSDN},
	{"/cluster/sdn/vnets", mGET | mPOST, famClusterSDN},
	{"/cluster/sdn/vnets/{vnet}", mGET | mPUT | mDELETE, famClusterSDN},
	{"/cluster/sdn/vnets/{vnet}/firewall", mGET, famClusterSDN},
	{"/cluster/sdn/vnets/{vnet}/firewall/options", mGET | mPUT, famClusterSDN},
	{"/cluster/sdn/vnets/{vnet}/firewall/rules", mGET | mPOST, famClusterSDN},
	{"/cluster/sdn/vnets/{vnet}/firewall/rules/{pos}", mGET | mPUT | mDELETE, famClusterSDN},
	{"/cluster/sdn/vnets/{vnet}/ips", mPOST | mPUT | mDELETE, famClusterSDN},
	{"/cluster/sdn/vnets/{vnet}/subnets", mGET | mPOST, famClusterSDN},
	{"/cluster/sdn/vnets/{vnet}/subnets/{subnet}", mGET | mPUT | mDELETE, famClusterSDN},
	{"/cluster/sdn/zones", mGET | mPOST, famClusterSDN},
	{"/cluster/sdn/zones/{zone}", mGET | mPUT | mDELETE, famClusterSDN},

	{"/nodes/{node}/sdn", mGET, famNodeSDN},
	{"/nodes/{node}/sdn/fabrics/{fabric}", mGET, famNodeSDN},
	{"/nodes/{node}/sdn/fabrics/{fabric}/interfaces", mGET, famNodeSDN},
	{"/nodes/{node}/sdn/fabrics/{fabric}/neighbors", mGET, famNodeSDN},
	{"/nodes/{node}/sdn/fabrics/{fabric}/routes", mGET, famNodeSDN},
	{"/nodes/{node}/sdn/vnets/{vnet}", mGET, famNodeSDN},
	{"/nodes/{node}/sdn/vnets/{vnet}/mac-vrf", mGET, famNodeSDN},
	{"/nodes/{node}/sdn/zones", mGET, famNodeSDN},
	{"/nodes/{node}/sdn/zones/{zone}", mGET, famNodeSDN},
	{"/nodes/{node}/sdn/zones/{zone}/bridges", mGET, famNodeSDN},
	{"/nodes/{node}/sdn/zones/{zone}/content", mGET, famNodeSDN},
	{"/nodes/{node}/sdn/zones/{zone}/ip-vrf", mGET, famNodeSDN},
}

// trieNode is one path segment of the catalogue. Literal children are
// preferred over the parameter child, so /cluster/sdn/fabrics/all never
// matches a {param}.
type trieNode struct {
	lit   map[string]*trieNode
	param *trieNode
	e     *entry
}

var root = buildTrie()

func buildTrie() *trieNode {
	r := &trieNode{}
	for i := range catalogue {
		e := &catalogue[i]
		n := r
		for _, seg := range strings.Split(e.template[1:], "/") {
			if strings.HasPrefix(seg, "{") {
				if n.param == nil {
					n.param = &trieNode{}
				}
				n = n.param
				continue
			}
			if n.lit == nil {
				n.lit = map[string]*trieNode{}
			}
			c := n.lit[seg]
			if c == nil {
				c = &trieNode{}
				n.lit[seg] = c
			}
			n = c
		}
		if n.e != nil {
			panic("routing: duplicate catalogue template " + e.template)
		}
		n.e = e
	}
	return r
}

// lookup finds the catalogue entry for a clean path without format prefix
// ("/nodes/pve1/network"). It does not allocate.
func lookup(p string) *entry {
	if len(p) < 2 || p[0] != '/' {
		return nil
	}
	n := root
	rest := p[1:]
	for {
		seg := rest
		i := strings.IndexByte(rest, '/')
		if i >= 0 {
			seg, rest = rest[:i], rest[i+1:]
		}
		if seg == "" {
			return nil
		}
		next := n.lit[seg]
		if next == nil {
			next = n.param
		}
		if next == nil {
			return nil
		}
		n = next
		if i < 0 {
			return n.e
		}
	}
}

// Templates returns every catalogue template without format prefix, for
// config validation, suggestions and documentation.
func Templates() []string {
	out := make([]string, len(catalogue))
	for i, e := range catalogue {
		out[i] = e.template
	}
	return out
}

// TemplateKey turns a config key into a catalogue template. Operators write
// keys as the seed does ("/api2/json/nodes/{node}/network"); the same rule
// applies under /api2/extjs, and a bare "/nodes/{node}/network" is accepted.
// ok is false when the template is not in the catalogue.
func TemplateKey(s string) (template string, ok bool) {
	t := strings.TrimSpace(s)
	for _, p := range []string{"/api2/json", "/api2/extjs"} {
		if strings.HasPrefix(t, p+"/") {
			t = t[len(p):]
			break
		}
	}
	if len(t) > 1 {
		t = strings.TrimSuffix(t, "/")
	}
	for _, e := range catalogue {
		if e.template == t {
			return t, true
		}
	}
	return t, false
}

// TemplateMethods returns the methods PVE defines for a catalogue template,
// or nil when the template is unknown.
func TemplateMethods(template string) []string {
	for _, e := range catalogue {
		if e.template == template {
			var out []string
			for _, m := range []string{"GET", "POST", "PUT", "DELETE"} {
				if e.methods&methodBit(m) != 0 {
					out = append(out, m)
				}
			}
			return out
		}
	}
	return nil
}
