package pveschema

import (
	"math/rand/v2"
	"strings"
	"testing"
)

var fastFormats = []struct {
	name       string
	fast, slow func(string) bool
}{
	{"ipv4", fastIPv4, fmtIPv4.MatchString},
	{"CIDRv4", fastCIDRv4, verifyCIDRv4},
	{"pve-iface", fastIface, fmtIface.MatchString},
}

func checkFast(t *testing.T, s string) {
	t.Helper()
	for _, f := range fastFormats {
		if a, b := f.fast(s), f.slow(s); a != b {
			t.Fatalf("%s(%q): fast %v, regexp %v", f.name, s, a, b)
		}
	}
}

// The hand-written formats agree with their regular expressions on
// generated near-misses.
func TestFastFormatsAgree(t *testing.T) {
	seeds := []string{"", "1.2.3.4", "255.255.255.255", "256.0.0.1", "01.2.3.4", "1.2.3", "1.2.3.4.", "1.2.3.4\n", "1.2.3.4\n\n",
		"10.0.0.0/8", "10.0.0.0/7", "10.0.0.0/33", "10.0.0.0/024", "10.0.0.0/", "/8", "10.0.0.0/8\n", "1.2.3.4/٢٤",
		"eth0", "e", "eno1.2", "vmbr0:1", "eth0.", "eth0.x", "a123456789012345678901", "a12345678901234567890", "\u212aeth", "eth\u212a", "_a", "a_"}
	for _, s := range seeds {
		checkFast(t, s)
	}
	rng := rand.New(rand.NewPCG(19, 2))
	alphabet := "0123456789./:abeEhtz_\n-"
	for i := 0; i < 200000; i++ {
		n := rng.IntN(24)
		var b strings.Builder
		for j := 0; j < n; j++ {
			b.WriteByte(alphabet[rng.IntN(len(alphabet))])
		}
		checkFast(t, b.String())
	}
}

// FuzzFastFormats: any text, same verdict as the regular expression.
//
//	go test -run '^$' -fuzz FuzzFastFormats -fuzztime 30s ./internal/pveschema
func FuzzFastFormats(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "10.0.0.0/24", "eth0.10", "vmbr0:1\n", "\u212a1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkFast(t, s) })
}
