package routing

import (
	"strings"
	"testing"
)

// FuzzDecide checks that Decide never panics and never sends a request that
// is not in the network catalogue to Rust, whatever the path, method, type
// and policy.
func FuzzDecide(f *testing.F) {
	for _, s := range []string{
		"/api2/json/nodes/pve1/network", "/api2/extjs/nodes/pve1/network/vmbr0?x=1",
		"/api2/json/nodes/pve1/network/%2e%2e/%2e%2e/qemu", "/api2/json//cluster//sdn/",
		"/api2/json/nodes/pve1/qemu/100/config", "/api2/html/cluster/sdn", "//", "/%",
	} {
		f.Add("GET", s, "eth", uint8(RustFull))
		f.Add("POST", s, "bridge", uint8(RustAdvanced))
	}
	all := promoteAll()
	f.Fuzz(func(t *testing.T, method, path, ifaceType string, phase uint8) {
		p := Policy{Phase: Phase(phase % 6), FallbackEnabled: true, Features: Features{true, true}, Endpoints: all}
		d := Decide(&p, Request{Method: method, Path: path, IfaceType: ifaceType})
		if d.Backend != Rust {
			return
		}
		clean, ok := NormalizePath(path)
		if !ok {
			t.Fatalf("unnormalisable path %q went to rust", path)
		}
		rest, ok := apiPath(clean)
		if !ok || lookup(rest) == nil || !ValidMethod(method) {
			t.Fatalf("%s %q (clean %q) is not in the catalogue but went to rust", method, path, clean)
		}
		if strings.Contains(clean, "..") && strings.Contains(clean, "/../") {
			t.Fatalf("dot segments survived: %q", clean)
		}
		if d.Category == NotNetwork || d.Template == "" {
			t.Fatalf("rust decision without network category: %+v", d)
		}
	})
}

// FuzzIfaceType checks that body parsing never panics on any input.
func FuzzIfaceType(f *testing.F) {
	f.Add("application/json", `{"type":"eth"}`, "")
	f.Add("", "type=bridge&iface=vmbr0", "type=bridge")
	f.Add("application/x-www-form-urlencoded; charset=x", "%", "%")
	f.Fuzz(func(t *testing.T, ct, body, query string) {
		ty, err := IfaceType(ct, []byte(body), query)
		if err != nil && ty != "" {
			t.Fatalf("type %q returned with error %v", ty, err)
		}
	})
}
