package routing

import (
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzNormalizePath checks the properties every caller of NormalizePath
// relies on: a clean path is absolute, has no empty, "." or ".." segment,
// no trailing slash, no control character, no encoded "/" or "\", is valid
// UTF-8, and is a fixed point; the query and fragment never matter; and
// classification depends only on the clean path, so Envoy (which routes
// on its own normalisation) and the service agree whenever both normalise
// to the same string.
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{
		"/api2/json/nodes/pve1/network", "/api2/json/nodes/pve1/network/", "/api2//json/./nodes/pve1/network",
		"/api2/json/nodes/pve1/network/%2e%2e/%2e%2e/qemu/100", "/api2/json/nodes/pve1/network/%2E%2e",
		"/api2/json/nodes/pve1/network/eno1%2Fx", "/api2/json/nodes/pve1/network/eno1%5c", "/api2/json/nodes/pve1/%6eetwork",
		"/api2/json/nodes/pve1/network/a%3fb", "/api2/json/nodes/pve1/network/\xff", "/api2/json/nodes/pve1/network/\x00",
		"/api2/json/../../../etc/passwd", "/%", "/%2", "/%zz", "//", "/.", "/..", "", "relative/path", "/a b/c",
		"/api2/json/cluster/sdn/zones/z1?x=/../../", "/api2/json/cluster/sdn#frag/../x",
	} {
		f.Add(s, "GET", "type=eth")
	}
	f.Fuzz(func(t *testing.T, p, method, query string) {
		clean, ok := NormalizePath(p)
		if !ok {
			if clean != "" {
				t.Fatalf("NormalizePath(%q) = %q with ok=false", p, clean)
			}
			if c := Classify(method, p, "eth"); c.Category != NotNetwork || c.Template != "" {
				t.Fatalf("unnormalisable %q classified %+v", p, c)
			}
			return
		}
		switch {
		case clean == "" || clean[0] != '/':
			t.Fatalf("NormalizePath(%q) = %q: not absolute", p, clean)
		case len(clean) > 1 && strings.HasSuffix(clean, "/"):
			t.Fatalf("NormalizePath(%q) = %q: trailing slash", p, clean)
		case strings.Contains(clean, "//"):
			t.Fatalf("NormalizePath(%q) = %q: empty segment", p, clean)
		case !utf8.ValidString(clean):
			t.Fatalf("NormalizePath(%q) = %q: invalid UTF-8", p, clean)
		case strings.ContainsAny(clean, "?#\\"):
			t.Fatalf("NormalizePath(%q) = %q: query, fragment or backslash survived", p, clean)
		}
		for _, seg := range strings.Split(clean[1:], "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("NormalizePath(%q) = %q: dot segment", p, clean)
			}
		}
		for i := 0; i < len(clean); i++ {
			if c := clean[i]; c < 0x20 || c == 0x7f {
				t.Fatalf("NormalizePath(%q) = %q: control character", p, clean)
			}
		}
		if u := strings.ToUpper(clean); strings.Contains(u, "%2F") || strings.Contains(u, "%5C") {
			t.Fatalf("NormalizePath(%q) = %q: encoded slash survived", p, clean)
		}
		if again, ok := NormalizePath(clean); !ok || again != clean {
			t.Fatalf("not a fixed point: %q -> %q -> %q (ok %v)", p, clean, again, ok)
		}
		if !strings.ContainsAny(p, "?#") {
			if withQ, ok := NormalizePath(p + "?" + query); !ok || withQ != clean {
				t.Fatalf("the query changed the path: %q vs %q", withQ, clean)
			}
		}
		for _, ty := range []string{"", "eth", "bridge"} {
			if a, b := Classify(method, p, ty), Classify(method, clean, ty); a != b {
				t.Fatalf("Classify(%q) = %+v but Classify(%q) = %+v", p, a, clean, b)
			}
		}
	})
}

// FuzzIfaceTypeConsistency strengthens FuzzIfaceType: the result is
// deterministic; a type found in the body is confirmed by the same type
// in the query and contradicted by a different one (the request is then
// ambiguous, which the router treats as advanced); a body over PVE's
// limit never yields a type.
func FuzzIfaceTypeConsistency(f *testing.F) {
	f.Add("application/json", []byte(`{"type":"eth","iface":"eno1"}`))
	f.Add("application/json; charset=UTF-8", []byte(`{"type":"bridge","type":"eth"}`))
	f.Add("", []byte("type=bridge&iface=vmbr0"))
	f.Add("application/x-www-form-urlencoded", []byte("iface=eno1&type=eth&type=eth"))
	f.Add("APPLICATION/JSON", []byte(`{"type":null}`))
	f.Add("text/plain", []byte("type=eth"))
	f.Add("application/json", []byte(`{"type":"e\u0074h"}`))
	f.Add("application/x-www-form-urlencoded", []byte("type=%65th"))
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		ty, err := IfaceType(ct, body, "")
		ty2, err2 := IfaceType(ct, body, "")
		if ty != ty2 || (err == nil) != (err2 == nil) {
			t.Fatalf("non-deterministic: %q/%v then %q/%v", ty, err, ty2, err2)
		}
		if err != nil {
			if ty != "" {
				t.Fatalf("type %q with error %v", ty, err)
			}
			return
		}
		if len(body) > MaxBodyBytes {
			t.Fatalf("a body over the limit yielded type %q", ty)
		}
		if ty == "" {
			return
		}
		if got, err := IfaceType(ct, body, "type="+url.QueryEscape(ty)); err != nil || got != ty {
			t.Fatalf("query agreeing with body type %q: got %q, %v", ty, got, err)
		}
		if got, err := IfaceType(ct, body, "type="+url.QueryEscape(ty+"x")); err == nil {
			t.Fatalf("query %q contradicting body type %q: got %q without error", ty+"x", ty, got)
		}
	})
}
