package dataplane

import (
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestWritesVerifyTLS: writes go through a transport of their own per
// request (freshConnTransport, cloned from the read transport); it must
// keep the read transport's TLS checks: a pinned certificate is
// accepted, a wrong pin and an unknown CA fail like a connect failure,
// for PUT, POST and DELETE alike.
func TestWritesVerifyTLS(t *testing.T) {
	var writes int
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			writes++
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer tlsSrv.Close()
	sum := sha256.Sum256(tlsSrv.Certificate().Raw)
	pin := formatFingerprint(sum[:])
	wrong := strings.Repeat("AB:", 31) + "AB"
	cases := []struct {
		name     string
		upstream Upstream
		want     int
	}{
		{"pinned", Upstream{URL: tlsSrv.URL, Fingerprint: pin}, 200},
		{"wrong pin", Upstream{URL: tlsSrv.URL, Fingerprint: wrong}, 503},
		{"unknown CA", Upstream{URL: tlsSrv.URL}, 503},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := newUnitEnv(t, &fakeExtProc{}, nil, nil, func(o *Options) { o.Perl = c.upstream })
			for _, m := range []string{"PUT", "POST", "DELETE"} {
				before := writes
				resp, body := u.get(t, m, "/api2/json/nodes/pve1/network", strings.NewReader("type=eth"), map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
				if resp.StatusCode != c.want {
					t.Errorf("%s: %d %q, want %d", m, resp.StatusCode, body, c.want)
				}
				if got := writes - before; (c.want == 200) != (got == 1) || got > 1 {
					t.Errorf("%s: the backend saw the write %d times", m, got)
				}
			}
		})
	}
}
