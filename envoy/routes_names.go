package envoy

import (
	"slices"
	"strings"
)

// HeaderNames returns the lower-case names of the headers the routes'
// header matchers read (pseudo-headers included), each once. Match only
// ever looks these up, so a caller may hand it a map of just them, plus
// "host" when ":authority" is among them: the embedded data plane matches
// twice per request and built a map of every request header each time.
func (t *RouteTable) HeaderNames() []string {
	var names []string
	for _, r := range t.routes {
		for _, h := range r.match.GetHeaders() {
			if n := strings.ToLower(h.GetName()); !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	return names
}
