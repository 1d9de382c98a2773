package dataplane

import (
	"net/http"
	"slices"
	"strings"
)

// routeHeader is a header the route table reads, by lower-case name and
// http.Header key.
type routeHeader struct{ lower, key string }

// routeHeaders lists the ordinary headers among the route table's header
// names (envoy.RouteTable.HeaderNames), plus host when :authority is
// matched (Match reads it from host).
func routeHeaders(names []string) []routeHeader {
	if slices.Contains(names, ":authority") && !slices.Contains(names, "host") {
		names = append(slices.Clone(names), "host")
	}
	var out []routeHeader
	for _, n := range names {
		if !strings.HasPrefix(n, ":") {
			out = append(out, routeHeader{lower: n, key: http.CanonicalHeaderKey(n)})
		}
	}
	return out
}

// routeMap is what envoy.RouteTable.Match reads: the pseudo-headers and
// the first value of each header in names, by lower-case name. It equals
// lowerMap on every name Match looks up, and holds a handful of entries
// instead of every request header.
func (s *headerSet) routeMap(names []routeHeader) map[string]string {
	m := make(map[string]string, len(names)+len(s.pseudo))
	for k, v := range s.pseudo {
		m[k] = v
	}
	for _, n := range names {
		if vs := s.h[n.key]; len(vs) > 0 {
			m[n.lower] = vs[0]
		}
	}
	return m
}
