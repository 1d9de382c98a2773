package dataplane

import "testing"

// TestPutTypedByCurrentInterface is finding 3 of issue 13: a PUT of an
// existing interface was typed by the client's claim alone, so `PUT
// .../vmbr0 type=eth` went to rust as a basic write although vmbr0 is a
// bridge. Its category now considers the interface's current type too
// (looked up as for a DELETE): basic only if both are.
func TestPutTypedByCurrentInterface(t *testing.T) {
	e := newEnv(t, envOptions{phase: "rust-basic-write"})
	cases := []struct {
		iface, claim, want string
	}{
		{"vmbr0", "eth", "perl"},    // a bridge claimed to be a NIC
		{"vmbr0", "bridge", "perl"}, // honest advanced
		{"eno1", "eth", "rust"},     // a NIC, claimed as one
		{"eno1", "bridge", "perl"},  // a NIC claimed advanced: advanced
		{"nosuch0", "eth", "perl"},  // no current type: unknown, advanced
	}
	for _, c := range cases {
		t.Run(c.iface+" as "+c.claim, func(t *testing.T) {
			r := e.do("PUT", netPath+"/"+c.iface, form("type", c.claim, "comments", "x"), nil)
			if r.servedBy != c.want {
				t.Errorf("PUT %s type=%s: served by %q (%d: %s), want %s", c.iface, c.claim, r.servedBy, r.status, r.body, c.want)
			}
			// The query form of the claim is checked the same way.
			r = e.do("PUT", netPath+"/"+c.iface+"?type="+c.claim+"&comments=y", nil, nil)
			if r.servedBy != c.want {
				t.Errorf("PUT %s ?type=%s: served by %q, want %s", c.iface, c.claim, r.servedBy, c.want)
			}
		})
	}
}
