package dataplane

import (
	"testing"

	"github.com/pve-migration/router/examples/pvedemo"
)

// TestWriteNeverReplayedAfterApply is finding 0 of issue 13: a write
// without a body but with an Idempotency-Key (or X-Idempotency-Key) that
// the backend applied before its connection died must reach that backend
// exactly once and no other backend. The backend is the demo one with its
// drop_after_write fault (applies the write, then closes only that
// connection), reached over a keep-alive connection a GET left in the pool:
// that is where net/http would replay a request it thinks idempotent.
func TestWriteNeverReplayedAfterApply(t *testing.T) {
	cases := []struct {
		name   string
		phase  string // perl-only: the perl route; rust-basic-write: the rust route
		method string
		path   string // what the backend records
		query  string
		header string
	}{
		{"perl route revert", "perl-only", "DELETE", netPath, "", "Idempotency-Key"},
		{"perl route interface delete", "perl-only", "DELETE", netPath + "/eno1", "", "X-Idempotency-Key"},
		{"rust route revert", "rust-basic-write", "DELETE", netPath, "", "Idempotency-Key"},
		{"rust route interface delete", "rust-basic-write", "DELETE", netPath + "/eno1", "", "X-Idempotency-Key"},
		{"rust route apply", "rust-basic-write", "PUT", netPath, "", "Idempotency-Key"},
		{"rust route query-only create", "rust-basic-write", "POST", netPath, "?iface=eth7&type=eth", "Idempotency-Key"},
		{"rust route query-only update", "rust-basic-write", "PUT", netPath + "/eno1", "?type=eth&mtu=9000", "X-Idempotency-Key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, envOptions{phase: c.phase})
			target, other := e.rust, e.perl
			if c.phase == "perl-only" {
				target, other = e.perl, e.rust
			}
			// A GET leaves a keep-alive connection to the target in the pool.
			if r := e.do("GET", netPath, nil, nil); r.status != 200 || r.servedBy != string(target.Flavor()) {
				t.Fatalf("warm-up GET: %d served by %q", r.status, r.servedBy)
			}
			if err := target.SetFaults(pvedemo.Faults{DropAfterWrite: true}); err != nil {
				t.Fatal(err)
			}
			r := e.do(c.method, c.path+c.query, nil, map[string]string{c.header: "key-1"})
			if r.status != 503 || r.attempts != "1" {
				t.Errorf("%s %s: %d after %s attempts, want 503 after 1 (the answer was lost, the write may be applied)", c.method, c.path, r.status, r.attempts)
			}
			if n := seen(target, c.method, c.path); n != 1 {
				t.Errorf("%s received the write %d times, want exactly once", target.Flavor(), n)
			}
			if n := seen(other, c.method, c.path); n != 0 {
				t.Errorf("%s received the write %d times after %s may have applied it", other.Flavor(), n, target.Flavor())
			}
		})
	}
}
