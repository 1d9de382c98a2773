package pveschema

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"
)

// TestPatternsAgainstPerl checks the Perl-to-Go translation against Perl
// itself, where a perl binary is installed: every pattern of PVE 9.1's
// schema (and the translator's own test patterns) against hand-picked and
// generated values, matched as check_prop does (m/^$pattern$/), plus
// is_integer and is_number on each value.
func TestPatternsAgainstPerl(t *testing.T) {
	perl, err := exec.LookPath("perl")
	if err != nil {
		t.Skip("no perl on this host")
	}
	s, err := Parse(embeddedJSON(t))
	if err != nil {
		t.Fatal(err)
	}
	patterns := map[string]bool{}
	var collect func(v any)
	collect = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if p, ok := x["pattern"].(string); ok {
				patterns[p] = true
			}
			for _, e := range x {
				collect(e)
			}
		case []any:
			for _, e := range x {
				collect(e)
			}
		}
	}
	for _, r := range s.returns {
		collect(r)
	}
	for _, p := range []string{`(?i:a(?^:b))`, `a++b`, `\d+`, `\w+`, `a\sb`, `\S+`, `\W\D`, `[[:digit:]x]+`, `a\0b`, `ab\Z`, `[^]a]+`, `[A-Za-z0-9\-_\s]{,8}`} {
		patterns[p] = true
	}
	fixed := []string{"", "a", "abc", "ABC", "abc\n", "abc\n\n", "it's", "myuser1's network", "Büro Netz (2)", "١٢٣", "123",
		"24", "+5", "-3", "1.5", ".5", "5.", "1e3", "1E-3", "0x10", " 24", "24\n", "1.2.3", "a b", "a\u00a0b", "a\tb",
		"a\x00b", "discard;noatime", "a=1,b=2", "1:2", "2-4094", "eth0", "vmbr0.10", "0755", "/dev/sda", "socket",
		"q35", "pc-i440fx-9.0+pve1", "10/second", "100-1", "ide0", "now", "2026-12-06T07:00:00", "ff:ff", "K", "\u212a"}
	rng := rand.New(rand.NewPCG(19, 1))
	alphabet := []rune("aZ09_-.:;,=+ ()'/\\\n\tüK\u212a\u00a0١x")
	var pairs [][2]string
	for p := range patterns {
		for _, v := range fixed {
			pairs = append(pairs, [2]string{p, v})
		}
		for i := 0; i < 40; i++ {
			n := rng.IntN(12)
			var b strings.Builder
			for j := 0; j < n; j++ {
				b.WriteRune(alphabet[rng.IntN(len(alphabet))])
			}
			pairs = append(pairs, [2]string{p, b.String()})
		}
	}
	in, err := json.Marshal(pairs)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(perl, "testdata/perlmatch.pl")
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("perl: %v %s", err, stderr.String())
	}
	var res [][3]int
	if err := json.Unmarshal(out, &res); err != nil || len(res) != len(pairs) {
		t.Fatalf("perl output: %v (%d results for %d pairs)", err, len(res), len(pairs))
	}
	compiled := map[string]func(string) bool{}
	for p := range patterns {
		re, err := compilePerlAnchored(p)
		if err != nil {
			compiled[p] = nil
			continue
		}
		compiled[p] = re.MatchString
	}
	mismatches := 0
	for i, pr := range pairs {
		p, v := pr[0], pr[1]
		want := res[i]
		if m := compiled[p]; m != nil && want[0] >= 0 && m(v) != (want[0] == 1) {
			mismatches++
			if mismatches <= 20 {
				t.Errorf("pattern %q value %q: Go %v, Perl %v", p, v, m(v), want[0] == 1)
			}
		}
		if isInteger(v) != (want[1] == 1) {
			t.Errorf("is_integer(%q): Go %v, Perl %v", v, isInteger(v), want[1] == 1)
		}
		if isNumber(v) != (want[2] == 1) {
			t.Errorf("is_number(%q): Go %v, Perl %v", v, isNumber(v), want[2] == 1)
		}
	}
	t.Logf("%d patterns, %d pairs compared with %s", len(patterns), len(pairs), perl)
}
