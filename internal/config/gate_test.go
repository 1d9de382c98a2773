package config

import (
	"reflect"
	"testing"
	"time"

	"github.com/pve-migration/router/routing"
)

func TestGateAndCanaryTables(t *testing.T) {
	for _, tc := range []struct {
		name   string
		file   string
		gate   Gate
		canary routing.Canary
	}{
		{"absent: defaults", `phase = "rust-read-only"`, DefaultGate(), routing.Canary{}},
		{"all keys", `
[gate]
enabled = true
window = 60
min_requests = 5
max_rust_error_rate = 0.1
max_latency_ratio = 2
max_mismatch_rate = 0
[canary]
users = ["terraform@pve!ci", "alice@pve", "alice@pve"]
percent = 10
`, Gate{Enabled: true, Window: time.Minute, MinRequests: 5, MaxRustErrorRate: 0.1, MaxLatencyRatio: 2, MaxMismatchRate: 0},
			routing.Canary{Users: []string{"terraform@pve!ci", "alice@pve"}, Percent: 10}},
		{"partial gate keeps other defaults", "[gate]\nenabled = true\nwindow = 1.5\n",
			func() Gate { g := DefaultGate(); g.Enabled, g.Window = true, 1500*time.Millisecond; return g }(), routing.Canary{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse("f.conf", []byte(tc.file), nil)
			if err != nil {
				t.Fatal(err)
			}
			if s.Gate != tc.gate {
				t.Errorf("gate = %+v, want %+v", s.Gate, tc.gate)
			}
			if !reflect.DeepEqual(s.Policy.Canary, tc.canary) {
				t.Errorf("canary = %+v, want %+v", s.Policy.Canary, tc.canary)
			}
		})
	}
}

// A bad [gate] or [canary] edit must leave the last good snapshot serving.
func TestBadGateEditKeepsLastGood(t *testing.T) {
	good, err := Parse("f.conf", []byte("[gate]\nenabled = true\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	st := NewStore(good)
	bad, err := Parse("f.conf", []byte("[gate]\nenabled = true\nmax_rust_error_rate = 2\n"), nil)
	if res := st.Apply(bad, err, time.Now()); res != ResultError {
		t.Fatalf("reload result %s, want error", res)
	}
	if st.Current() != good || !st.Current().Gate.Enabled {
		t.Fatal("the last good gate settings are not serving")
	}
}
