package tomledit

import (
	"reflect"
	"strings"
	"testing"

	gotoml "github.com/pelletier/go-toml/v2"
)

func TestSetIn(t *testing.T) {
	cases := []struct {
		name, src, want string
		table           []string
		key             string
		value           any
	}{
		{
			name:  "replace in place, comments kept",
			src:   "# cluster\nphase = \"rust-read-only\"\n\n[nodes.pve1]\nphase = \"rust-sdn\" # ticket 4711\n\n[nodes.pve2]\nphase = 'perl-only'\n",
			table: []string{"nodes", "pve2"}, key: "phase", value: "rust-read-only",
			want: "# cluster\nphase = \"rust-read-only\"\n\n[nodes.pve1]\nphase = \"rust-sdn\" # ticket 4711\n\n[nodes.pve2]\nphase = 'rust-read-only'\n",
		},
		{
			name:  "new table appended",
			src:   "phase = \"rust-read-only\" # top\n\n[features]\nenable_sdn_migration = false\n",
			table: []string{"nodes", "pve3"}, key: "phase", value: "perl-only",
			want: "phase = \"rust-read-only\" # top\n\n[features]\nenable_sdn_migration = false\n\n[nodes.pve3]\nphase = \"perl-only\"\n",
		},
		{
			name:  "new table after a file without final newline",
			src:   "phase = \"perl-only\"",
			table: []string{"nodes", "pve1"}, key: "phase", value: "rust-read-only",
			want: "phase = \"perl-only\"\n\n[nodes.pve1]\nphase = \"rust-read-only\"\n",
		},
		{
			name:  "key added to an existing table",
			src:   "[nodes.pve1] # first node\n# nothing yet\n\n[features]\nenable_sdn_migration = true\n",
			table: []string{"nodes", "pve1"}, key: "phase", value: "rust-sdn",
			want: "[nodes.pve1] # first node\nphase = \"rust-sdn\"\n# nothing yet\n\n[features]\nenable_sdn_migration = true\n",
		},
		{
			name:  "key added after the table's last key",
			src:   "[nodes.pve1]\nnote = \"x\"\n\n[nodes.pve2]\nphase = \"perl-only\"\n",
			table: []string{"nodes", "pve1"}, key: "phase", value: "rust-sdn",
			want: "[nodes.pve1]\nnote = \"x\"\nphase = \"rust-sdn\"\n\n[nodes.pve2]\nphase = \"perl-only\"\n",
		},
		{
			name:  "quoted table name",
			src:   "[nodes.\"pve1\"]\nphase = \"perl-only\"\n",
			table: []string{"nodes", "pve1"}, key: "phase", value: "rust-read-only",
			want: "[nodes.\"pve1\"]\nphase = \"rust-read-only\"\n",
		},
		{
			name:  "CRLF kept",
			src:   "phase = \"perl-only\"\r\n",
			table: []string{"nodes", "a"}, key: "phase", value: "rust-sdn",
			want: "phase = \"perl-only\"\r\n\r\n[nodes.a]\r\nphase = \"rust-sdn\"\r\n",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := SetIn([]byte(c.src), c.table, c.key, c.value)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != c.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, c.want)
			}
			v, ok, err := LookupIn(got, c.table, c.key)
			if err != nil || !ok || v.String() != c.value {
				t.Errorf("LookupIn after SetIn = %q, %t, %v; want %q", v.String(), ok, err, c.value)
			}
		})
	}
}

func TestSetInRefuses(t *testing.T) {
	cases := []struct{ name, src, want string }{
		{"dotted key at top level", "nodes.pve1.phase = \"perl-only\"\n", "edit it by hand"},
		{"inline table", "[nodes]\npve1 = { phase = \"perl-only\" }\n", "edit it by hand"},
		{"dotted key in parent table", "[nodes]\npve1.phase = \"perl-only\"\n", "edit it by hand"},
		{"array of tables", "[[nodes.pve1]]\nphase = \"perl-only\"\n", "array of tables"},
		{"duplicate table", "[nodes.pve1]\n[nodes.pve1]\n", "already defined"},
		{"duplicate key", "[nodes.pve1]\nphase = \"a\"\nphase = \"b\"\n", "already defined"},
		{"broken header", "[nodes.pve1\nphase = 1\n", "expected ]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := SetIn([]byte(c.src), []string{"nodes", "pve1"}, "phase", "rust-sdn")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("SetIn = %q, %v; want an error containing %q", out, err, c.want)
			}
		})
	}
}

// FuzzSetIn: on any document a TOML parser accepts, SetIn either refuses
// or yields a document that still parses, holds the new value at
// nodes.pve1.phase and leaves every other top-level key alone.
func FuzzSetIn(f *testing.F) {
	for _, s := range []string{
		"phase = \"a\" # c\n[nodes.pve1]\nphase = \"b\"\n", "[nodes]\n[nodes.pve2]\nphase = 'x'\n", "",
		"a = 1\n[features]\nx = true\n", "[nodes.pve1] # c\n# d\n\n[x]\n", "[[nodes.pve1]]\n", "nodes = {}\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		var before map[string]any
		if gotoml.Unmarshal([]byte(src), &before) != nil {
			return
		}
		out, err := SetIn([]byte(src), []string{"nodes", "pve1"}, "phase", "rust-full")
		if err != nil {
			return
		}
		var after map[string]any
		if err := gotoml.Unmarshal(out, &after); err != nil {
			t.Fatalf("valid TOML became invalid: %v\n%q\n%q", err, src, out)
		}
		nodes, _ := after["nodes"].(map[string]any)
		pve1, _ := nodes["pve1"].(map[string]any)
		if pve1["phase"] != "rust-full" {
			t.Fatalf("nodes.pve1.phase = %#v after SetIn\n%q", pve1["phase"], out)
		}
		for k := range before {
			if k != "nodes" && !reflect.DeepEqual(before[k], after[k]) {
				t.Fatalf("key %s changed: %#v → %#v\n%q\n%q", k, before[k], after[k], src, out)
			}
		}
	})
}
