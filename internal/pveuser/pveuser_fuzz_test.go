package pveuser

import (
	"strings"
	"testing"
)

// FuzzFromHeaders: header values are untrusted input on the request path.
// Whatever they hold, parsing never panics, and what comes back is either
// nothing or a well-formed id that carries no secret.
func FuzzFromHeaders(f *testing.F) {
	for _, s := range []string{
		"PVEAPIToken=tf@pve!ci=secret", "PVEAPIToken tf@pve!ci=a=b;c", "x PVEAPIToken=a@b!c=d",
		"PVEAuthCookie=PVE:root@pam:65A1B2C3::sig", "a=b; PVEAuthCookie=PVE%3Aroot%40pam%3A1::s", "PVEAuthCookie=%", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, id := range []string{FromAuthorization(v), FromCookie(v), FromAuthorizationBytes([]byte(v)), FromCookieBytes([]byte(v))} {
			if id == "" {
				continue
			}
			if err := Check(id); err != nil {
				t.Fatalf("returned malformed id %q: %v", id, err)
			}
			if strings.ContainsAny(id, "=;:") {
				t.Fatalf("returned %q, which holds a separator of the secret", id)
			}
		}
	})
}
