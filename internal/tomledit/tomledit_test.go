package tomledit

import (
	"strings"
	"testing"

	gotoml "github.com/pelletier/go-toml/v2"
)

func TestSet(t *testing.T) {
	tests := []struct {
		name string
		src  string
		key  string
		v    any
		want string
	}{
		{"plain", "phase = \"perl-only\"\n", "phase", "rust-full", "phase = \"rust-full\"\n"},
		{"no spaces", "phase=\"perl-only\"\n", "phase", "rust-sdn", "phase=\"rust-sdn\"\n"},
		{"single quotes kept", "phase = 'perl-only'\n", "phase", "rust-sdn", "phase = 'rust-sdn'\n"},
		{"single quotes, value needs escaping", "phase = 'a'\n", "phase", "it's", "phase = \"it's\"\n"},
		{"trailing comment kept", "phase   =  \"perl-only\"   # since monday \"quoted\" = x\n", "phase", "rust-read-only",
			"phase   =  \"rust-read-only\"   # since monday \"quoted\" = x\n"},
		{"hash inside the string", "phase = \"a#b\" # c\n", "phase", "x", "phase = \"x\" # c\n"},
		{"indented", "  \tphase = \"perl-only\"\n", "phase", "x", "  \tphase = \"x\"\n"},
		{"quoted key", "\"phase\" = \"perl-only\"\n", "phase", "x", "\"phase\" = \"x\"\n"},
		{"bool", "fallback_enabled = true # keep on\n", "fallback_enabled", false, "fallback_enabled = false # keep on\n"},
		{"crlf kept", "a = 1\r\nphase = \"perl-only\"\r\n", "phase", "x", "a = 1\r\nphase = \"x\"\r\n"},
		{"no final newline", "phase = \"perl-only\"", "phase", "x", "phase = \"x\""},
		{"bom", "\ufeffphase = \"perl-only\"\n", "phase", "x", "\ufeffphase = \"x\"\n"},
		{"same key in a table untouched", "phase = \"a\"\n[t]\nphase = \"b\"\n", "phase", "c", "phase = \"c\"\n[t]\nphase = \"b\"\n"},
		{"insert after last top-level key", "# head\nfallback_enabled = true\n\n# Feature flags\n[features]\nx = 1\n", "phase", "rust-full",
			"# head\nfallback_enabled = true\nphase = \"rust-full\"\n\n# Feature flags\n[features]\nx = 1\n"},
		{"insert before first table and its comments", "# head\n\n# Feature flags\n[features]\nphase = 1\n", "phase", "x",
			"# head\n\nphase = \"x\"\n\n# Feature flags\n[features]\nphase = 1\n"},
		{"insert into empty", "", "phase", "x", "phase = \"x\"\n"},
		{"insert into comments only, no final newline", "# only a comment", "phase", "x", "# only a comment\nphase = \"x\"\n"},
		{"insert after key without final newline", "a = 1", "phase", "x", "a = 1\nphase = \"x\"\n"},
		{"insert crlf", "a = 1\r\n[t]\r\n", "phase", "x", "a = 1\r\nphase = \"x\"\r\n[t]\r\n"},
		{"multi-line array with brackets is skipped", "a = [\n  [1, 2], # ]\n  \"]\",\n]\nphase = \"p\"\n[t]\n", "phase", "x",
			"a = [\n  [1, 2], # ]\n  \"]\",\n]\nphase = \"x\"\n[t]\n"},
		{"multi-line string with a fake key is skipped", "s = \"\"\"\nphase = \"no\"\n[fake]\n\"\"\"\nphase = \"p\"\n", "phase", "x",
			"s = \"\"\"\nphase = \"no\"\n[fake]\n\"\"\"\nphase = \"x\"\n"},
		{"literal multi-line string", "s = '''\n[x]'''\n", "phase", "x", "s = '''\n[x]'''\nphase = \"x\"\n"},
		{"inline table", "t = { a = \"}\", b = [1] }\nphase = 'p'\n", "phase", "x", "t = { a = \"}\", b = [1] }\nphase = 'x'\n"},
		{"datetime with space", "d = 1979-05-27 07:32:00Z # c\nphase = \"p\"\n", "phase", "x", "d = 1979-05-27 07:32:00Z # c\nphase = \"x\"\n"},
		{"dotted key with another head", "features.x = 1\n", "phase", "y", "features.x = 1\nphase = \"y\"\n"},
		{"escapes in new value", "phase = \"p\"\n", "phase", "a\"b\\c\n", "phase = \"a\\\"b\\\\c\\n\"\n"},
		{"int", "n = 1\n", "n", 30, "n = 30\n"},
		{"float", "n = 1\n", "n", 2.0, "n = 2.0\n"},
		{"quoted new key", "", "a b", true, "\"a b\" = true\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := []byte(tt.src)
			got, err := Set(src, tt.key, tt.v)
			if err != nil {
				t.Fatalf("Set: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("Set:\n got %q\nwant %q", got, tt.want)
			}
			if string(src) != tt.src {
				t.Errorf("Set modified its input")
			}
			// The result must still be TOML, with the key holding the value.
			var m map[string]any
			if err := gotoml.Unmarshal([]byte(strings.TrimPrefix(string(got), "\ufeff")), &m); err != nil {
				t.Fatalf("result is not TOML: %v\n%s", err, got)
			}
			want := tt.v
			if i, ok := want.(int); ok {
				want = int64(i)
			}
			if m[tt.key] != want {
				t.Errorf("decoded %s = %#v, want %#v", tt.key, m[tt.key], want)
			}
		})
	}
}

func TestSetErrors(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"duplicate", "phase = 'a'\nphase = 'b'\n", "line 2: phase is already defined on line 1"},
		{"multi-line value", "phase = \"\"\"\na\"\"\"\n", "multi-line value"},
		{"unterminated string", "phase = \"a\n", "line 1: unterminated string"},
		{"unterminated array", "a = [1,\n2\n", "line 1: unterminated array"},
		{"garbage after value", "a = 1 2\n", "line 1: unexpected '2'"},
		{"no equals", "a 1\n", "line 1: expected = after key a"},
		{"missing value", "a =\n", "line 1: missing value"},
		{"key used as a table", "phase.x = 1\n", "line 1: phase is used as a table (phase.x)"},
		{"lone cr", "a = 1\rphase = 2\n", "carriage return"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Set([]byte(tt.src), "phase", "x")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Set error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if _, err := Set(nil, "n", struct{}{}); err == nil {
		t.Error("Set with an unsupported type: no error")
	}
}

func TestLookup(t *testing.T) {
	src := []byte("# c\na = 1\nphase = 'rust-sdn' # x\nq = \"a\\u0041\"\n[t]\nb = 2\n")
	tests := []struct {
		key      string
		ok       bool
		raw, str string
		line     int
	}{
		{"phase", true, "'rust-sdn'", "rust-sdn", 3},
		{"a", true, "1", "1", 2},
		{"q", true, `"a\u0041"`, "aA", 4},
		{"b", false, "", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			v, ok, err := Lookup(src, tt.key)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.ok || v.Raw != tt.raw || v.String() != tt.str || v.Line != tt.line {
				t.Errorf("Lookup(%s) = %+v %q %v, want raw %q str %q line %d ok %v", tt.key, v, v.String(), ok, tt.raw, tt.str, tt.line, tt.ok)
			}
		})
	}
}

// FuzzSet checks that an edit of a document the scanner accepts changes
// nothing but the value: the bytes before and after the value are the same,
// and a valid TOML document stays valid.
func FuzzSet(f *testing.F) {
	for _, s := range []string{"phase = \"a\" # c\n[t]\nx = 1\n", "a = [1,\n2]\n", "", "# c\n[t]\n", "s = '''\n'''\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		out, err := Set([]byte(src), "phase", "rust-full")
		if err != nil {
			return
		}
		var before map[string]any
		if gotoml.Unmarshal([]byte(src), &before) != nil {
			return
		}
		var after map[string]any
		if err := gotoml.Unmarshal(out, &after); err != nil {
			t.Fatalf("valid TOML became invalid: %v\n%q\n%q", err, src, out)
		}
		if after["phase"] != "rust-full" {
			t.Fatalf("phase = %#v after Set\n%q", after["phase"], out)
		}
		delete(before, "phase")
		delete(after, "phase")
		if len(before) != len(after) {
			t.Fatalf("keys changed: %v → %v", before, after)
		}
	})
}
