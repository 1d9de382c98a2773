package pvedemo

import (
	"fmt"
	"testing"
)

// methodsOf returns the "method" of every interface in a network list.
func methodsOf(t *testing.T, r reply) map[string]string {
	t.Helper()
	list, ok := r.body["data"].([]any)
	if !ok || len(list) == 0 {
		t.Fatalf("data is not a non-empty list: %s", r.raw)
	}
	out := map[string]string{}
	for _, e := range list {
		m := e.(map[string]any)
		out[fmt.Sprint(m["iface"])] = fmt.Sprint(m["method"])
	}
	return out
}

func TestDivergeAndNoiseFaults(t *testing.T) {
	b := startBackend(t, Options{Flavor: FlavorRust})
	clean := methodsOf(t, b.do(t, "GET", netPath, nil))

	t.Run("diverge", func(t *testing.T) {
		postFaults(t, b, `{"diverge":"data[].method"}`)
		for i := 0; i < 2; i++ {
			got := methodsOf(t, b.do(t, "GET", netPath, nil))
			for iface, m := range clean {
				if got[iface] != m+"-diverged" {
					t.Errorf("%s method = %q, want %q", iface, got[iface], m+"-diverged")
				}
			}
		}
	})
	t.Run("noise", func(t *testing.T) {
		postFaults(t, b, `{"diverge":"","noise":"method"}`)
		a := methodsOf(t, b.do(t, "GET", netPath, nil))
		c := methodsOf(t, b.do(t, "GET", netPath, nil))
		for iface := range clean {
			if a[iface] == c[iface] || a[iface] == clean[iface] {
				t.Errorf("%s method not random: %q, %q", iface, a[iface], c[iface])
			}
		}
	})
	t.Run("writes untouched and cleared", func(t *testing.T) {
		if r := b.do(t, "POST", netPath, form("iface", "vmbr9", "type", "bridge")); r.status != 200 || r.body["data"] != nil {
			t.Errorf("write answer altered: %d %s", r.status, r.raw)
		}
		postFaults(t, b, `{"noise":""}`)
		got := methodsOf(t, b.do(t, "GET", netPath, nil))
		for iface, m := range clean {
			if got[iface] != m {
				t.Errorf("%s method = %q after clearing, want %q", iface, got[iface], m)
			}
		}
	})
}
