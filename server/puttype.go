package server

import "fmt"

// currentTypeBasic reports whether the interface a write names is, as it
// stands, a basic one (eth or alias), for a PUT of an existing interface:
// its category must not rest on the client's claim alone. `PUT .../vmbr0
// type=eth` claims a basic write, but PVE then rewrites the bridge; so the
// interface's current type is looked up (as for a DELETE) and the PUT is
// basic only if both the claim and the current type are. An interface that
// cannot be looked up counts as unknown: advanced. Every other request
// (POST creates an interface that has no current type; DELETE already
// decides on the looked-up type) needs no second look.
func (s *stream) currentTypeBasic(method string) bool {
	if method != "PUT" || s.class.Template != "/nodes/{node}/network/{iface}" {
		return true
	}
	cur, err := s.lookupType()
	if err != nil {
		s.currentTypeErr = fmt.Errorf("current type of the interface: %w", err)
		return false
	}
	if cur != "eth" && cur != "alias" {
		if cur == "" {
			s.currentTypeErr = fmt.Errorf("current type of the interface: unknown")
		}
		return false
	}
	return true
}
