package dataplane

import (
	"strings"
	"testing"

	"github.com/pve-migration/router/routing"
)

// FuzzNormalizeRequestPath checks the data plane's copy of Envoy's
// normalize_path + merge_slashes, whose output is both what the decision
// service classifies and what the backend receives: it is idempotent (a
// second proxy hop changes nothing), keeps the query byte for byte, never
// decodes an encoded slash, leaves a path with an invalid escape alone
// (the service sends it to perl), and leaves no dot segment or double slash that
// the service would resolve differently. And for every path the service
// accepts, the forwarded path must classify as the raw one, so the two
// normalisers cannot disagree on the category.
func FuzzNormalizeRequestPath(f *testing.F) {
	for _, s := range []string{
		"/api2/json/nodes/pve1/network", "/api2//json/./nodes/pve1/network/", "/api2/json/nodes/pve1/network/%2e%2e/%2e%2e/qemu",
		"/api2/json/nodes/pve1/%6Eetwork?type=eth&x=%2F", "/a/%2F/b", "/a/%2f%2e%2e/b", "/%", "/%2", "/%zz/..", "relative",
		"/api2/json/nodes/pve1/network/eno1/..;/..", "/api2/json//cluster//sdn/zones//", "/..", "/./", "//?x=//..",
		"/api2/json/nodes/pve1/network/%252e%252e", "/api2/json/nodes/pve1/network/\xff/..", "/%%370",
		"/api2/json/nodes/pve1/qemu/%%32e%%32e/network",
	} {
		f.Add(s, "GET")
	}
	f.Fuzz(func(t *testing.T, p, method string) {
		d := normalizeRequestPath(p, true, true)
		if again := normalizeRequestPath(d, true, true); again != d {
			t.Fatalf("not idempotent: %q -> %q -> %q", p, d, again)
		}
		path, query, hasQ := strings.Cut(p, "?")
		dpath, dquery, dhasQ := strings.Cut(d, "?")
		if hasQ != dhasQ || query != dquery {
			t.Fatalf("query changed: %q -> %q", p, d)
		}
		if path == "" || path[0] != '/' || !validEscapes(path) {
			// Left alone: Envoy rejects the first kind; the service
			// refuses to classify the second (perl).
			if d != p {
				t.Fatalf("a path with no valid normal form was rewritten: %q -> %q", p, d)
			}
			if c := routing.Classify(method, p, "eth"); c.Category != routing.NotNetwork {
				t.Fatalf("the service classifies %q (left alone by the data plane) as %v", p, c.Category)
			}
			return
		}
		if n, m := strings.Count(strings.ToUpper(path), "%2F"), strings.Count(strings.ToUpper(dpath), "%2F"); m < n && !strings.Contains(path, "..") && !strings.Contains(strings.ToUpper(path), "%2E") {
			t.Fatalf("an encoded slash disappeared: %q -> %q", p, d)
		}
		if strings.Contains(dpath, "//") {
			t.Fatalf("double slash survived: %q -> %q", p, d)
		}
		for _, seg := range strings.Split(dpath, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("dot segment survived: %q -> %q", p, d)
			}
		}
		// Only for paths the service accepts: one it refuses (invalid
		// UTF-8, control bytes, bad escapes) can become acceptable once a
		// ".." removes the bad segment, as in Envoy; the service then
		// decides on, and the backend receives, the same clean path.
		if _, ok := routing.NormalizePath(p); !ok {
			return
		}
		for _, ty := range []string{"", "eth", "bridge"} {
			raw, fwd := routing.Classify(method, p, ty), routing.Classify(method, d, ty)
			if raw != fwd {
				t.Fatalf("the service classifies the raw path %q as %+v but the forwarded %q as %+v", p, raw, d, fwd)
			}
		}
	})
}
