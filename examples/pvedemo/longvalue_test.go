package pvedemo

import (
	"strings"
	"testing"
)

// TestLongValuesNeverWedgeTheParser is finding 5 of issue 13: a PUT with a
// 300 KiB comments value was accepted (PVE's schema gives comments no
// maxLength), after which every network read on both flavours failed with
// 500 "token too long" until interfaces.new was removed. The value is still
// accepted, as PVE does, and reads keep working and return it; parameters
// that PVE limits (maxLength) are refused with PVE's message.
func TestLongValuesNeverWedgeTheParser(t *testing.T) {
	state := t.TempDir()
	perl := startBackend(t, Options{Flavor: FlavorPerl, StateDir: state})
	rust := startBackend(t, Options{Flavor: FlavorRust, StateDir: state})
	long := strings.Repeat("x", 300<<10)
	if r := rust.do(t, "PUT", netPath+"/eno1", form("type", "eth", "comments", long)); r.status != 200 {
		t.Fatalf("PUT with a 300 KiB comment: %d %.200s", r.status, r.raw)
	}
	for _, b := range []*backend{perl, rust} {
		if r := b.do(t, "GET", netPath, nil); r.status != 200 {
			t.Fatalf("%s: GET network after the long comment: %d %.200s", b.srv.Flavor(), r.status, r.raw)
		}
		r := b.do(t, "GET", netPath+"/eno1", nil)
		if r.status != 200 {
			t.Fatalf("%s: GET eno1: %d %.200s", b.srv.Flavor(), r.status, r.raw)
		}
		if c, _ := r.dataMap(t)["comments"].(string); strings.TrimSpace(c) != long {
			t.Errorf("%s: the comment came back with %d bytes, want %d", b.srv.Flavor(), len(strings.TrimSpace(c)), len(long))
		}
	}
	cases := []struct {
		name, key, value string
		want             string
	}{
		{"ovs_options over 1024", "ovs_options", strings.Repeat("a", 1025), "value may only be 1024 characters long"},
		{"iface over 20", "iface", "eth" + strings.Repeat("1", 20), "invalid format"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := form("iface", "eth7", "type", "eth")
			f.Set(c.key, c.value)
			r := rust.do(t, "POST", netPath, f)
			if r.status != 400 {
				t.Fatalf("status %d, want 400: %.200s", r.status, r.raw)
			}
			errs, _ := r.body["errors"].(map[string]any)
			if msg, _ := errs[c.key].(string); !strings.Contains(msg, c.want) {
				t.Errorf("errors[%s] = %q, want %q", c.key, msg, c.want)
			}
		})
	}
}
