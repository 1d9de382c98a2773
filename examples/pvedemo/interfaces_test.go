package pvedemo

import (
	"strings"
	"testing"
	"time"
)

func TestInterfacesRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		text  string
		types map[string]string
	}{
		{"seed", seedInterfaces, map[string]string{"lo": "loopback", "eno1": "eth", "vmbr0": "bridge"}},
		{"mixed", `auto lo
iface lo inet loopback

iface enp1s0 inet manual

auto bond0
iface bond0 inet manual
	bond-slaves enp1s0
	bond-miimon 100
	bond-mode 802.3ad

auto vmbr0
iface vmbr0 inet static
	address 192.0.2.10/24
	gateway 192.0.2.1
	bridge-ports bond0
	bridge-stp off
	bridge-fd 0
	bridge-vlan-aware yes
	bridge-vids 2-4094
	post-up echo hi
#Management bridge

iface vmbr0 inet6 static
	address 2001:db8::10/64
	gateway 2001:db8::1

auto myvlan
iface myvlan inet manual
	vlan-raw-device bond0
	vlan-id 30

auto vmbr0.20
iface vmbr0.20 inet manual

source /etc/network/interfaces.d/*
`, map[string]string{"enp1s0": "eth", "bond0": "bond", "vmbr0": "bridge", "vmbr0.20": "vlan", "myvlan": "vlan"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseInterfaces(tt.text)
			if err != nil {
				t.Fatal(err)
			}
			for n, want := range tt.types {
				if got := cfg.Ifaces[n].Type; got != want {
					t.Errorf("%s type %q, want %q", n, got, want)
				}
			}
			if got := renderInterfaces(cfg); got != tt.text {
				t.Errorf("round trip differs:\n%s", unifiedDiff("want", time.Time{}, tt.text, "got", time.Time{}, got))
			}
		})
	}
	t.Run("api typing", func(t *testing.T) {
		cfg, _ := parseInterfaces(tests[1].text)
		o := cfg.Ifaces["vmbr0"].apiObject(true, true)
		checks := map[string]any{"bridge_vlan_aware": 1, "comments": "Management bridge\n", "netmask6": "64", "method6": "static", "address6": "2001:db8::10", "iface": "vmbr0"}
		for k, v := range checks {
			if o[k] != v {
				t.Errorf("%s = %#v, want %#v", k, o[k], v)
			}
		}
		if fam := o["families"].([]string); len(fam) != 2 {
			t.Errorf("families %v", fam)
		}
		if opts := o["options"].([]string); len(opts) != 1 || opts[0] != "post-up echo hi" {
			t.Errorf("options %v", opts)
		}
		v := cfg.Ifaces["vmbr0.20"].apiObject(false, true)
		if v["vlan-id"] != "20" || v["vlan-raw-device"] != "vmbr0" {
			t.Errorf("vlan %v", v)
		}
	})
}

func TestUnifiedDiff(t *testing.T) {
	a := "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n"
	b := "a\nB\nc\nd\ne\nf\ng\nh\ni\nj\nk\n"
	got := unifiedDiff("x", time.Unix(0, 0).UTC(), a, "y", time.Unix(0, 0).UTC(), b)
	want := `--- x	1970-01-01 00:00:00.000000000 +0000
+++ y	1970-01-01 00:00:00.000000000 +0000
@@ -1,5 +1,5 @@
 a
-b
+B
 c
 d
 e
@@ -8,3 +8,4 @@
 h
 i
 j
+k
`
	if got != want {
		t.Errorf("diff:\n%s\nwant:\n%s", got, want)
	}
	if d := unifiedDiff("x", time.Time{}, a, "y", time.Time{}, a); d != "" {
		t.Errorf("equal texts give %q", d)
	}
	if !strings.Contains(unifiedDiff("x", time.Time{}, "", "y", time.Time{}, "new\n"), "@@ -0,0 +1 @@\n+new\n") {
		t.Errorf("diff from empty: %q", unifiedDiff("x", time.Time{}, "", "y", time.Time{}, "new\n"))
	}
}
