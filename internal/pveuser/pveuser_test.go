package pveuser

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		id, err string
	}{
		{"root@pam", ""},
		{"terraform@pve!ci", ""},
		{"a.b-c@my-ldap.example", ""},
		{"user@x@pve", ""}, // the realm follows the last @, as in PVE
		{"", "empty user id"},
		{"root", "missing @REALM"},
		{"@pam", "empty user name"},
		{"ro ot@pam", "white space"},
		{"root@p", "realm \"p\""},
		{"root@1pam", "realm \"1pam\""},
		{"root@pam!", "token id \"\""},
		{"root@pam!t", "token id \"t\""},
		{"root@pam!ci=hunter2", "contains '='"},
		{strings.Repeat("u", 61) + "@pam", "longer than 64"},
	} {
		t.Run(tc.id, func(t *testing.T) {
			err := Check(tc.id)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("Check(%q) = %v", tc.id, err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("Check(%q) = %v, want %q", tc.id, err, tc.err)
			case err != nil && strings.Contains(err.Error(), "hunter2"):
				t.Fatalf("error echoes the secret: %v", err)
			}
		})
	}
}

func TestSuggest(t *testing.T) {
	for in, want := range map[string]string{
		"root@pam:ci":                   "root@pam!ci",
		"PVEAPIToken=tf@pve!ci=hunter2": "tf@pve!ci",
		"tf@pve!ci=hunter2":             "tf@pve!ci",
		"root":                          "root@pam",
		"root@pam":                      "",
		"ro ot":                         "",
		"root@1":                        "",
	} {
		if got := Suggest(in); got != want {
			t.Errorf("Suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFromHeaders(t *testing.T) {
	for _, tc := range []struct {
		name, auth, cookie, want string
	}{
		{"token with =", "", "", ""},
		{"token", "PVEAPIToken=tf@pve!ci=8c5a-secret", "", "tf@pve!ci"},
		{"token with space", "PVEAPIToken tf@pve!ci=8c5a-secret", "", "tf@pve!ci"},
		{"token secret with =", "PVEAPIToken=tf@pve!ci=a=b", "", ""}, // id "tf@pve!ci=a" is invalid
		{"token after other scheme", "Basic x PVEAPIToken=tf@pve!ci=s", "", "tf@pve!ci"},
		{"not a word", "XPVEAPIToken=tf@pve!ci=s", "", ""},
		{"token without token id", "PVEAPIToken=tf@pve=s", "", ""},
		{"ticket in authorization", "PVEAuthCookie=PVE:root@pam:65A1B2C3::c2lnbmF0dXJl", "", "root@pam"},
		{"cookie", "", "lang=en; PVEAuthCookie=PVE:alice@pve:65A1B2C3::c2ln/bmF+0dXJl==", "alice@pve"},
		{"cookie url-encoded", "", "PVEAuthCookie=PVE%3Aalice%40pve%3A65A1B2C3%3A%3Asig", "alice@pve"},
		{"cookie not a ticket", "", "PVEAuthCookie=garbage", ""},
		{"cookie bad escape", "", "PVEAuthCookie=PVE%3Aal%ZZice", ""},
		{"other cookie", "", "PVEAuthCookieX=PVE:root@pam:1::s", ""},
		{"bearer", "Bearer abc", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := FromAuthorization(tc.auth)
			if got == "" {
				got = FromCookie(tc.cookie)
			}
			if got != tc.want {
				t.Fatalf("user = %q, want %q", got, tc.want)
			}
		})
	}
}

// The []byte forms the router uses agree with the string forms, and the
// fast validity check agrees with Check.
func TestBytesFormsAgree(t *testing.T) {
	for _, v := range []string{"PVEAPIToken=tf@pve!ci=s", "PVEAPIToken tf@pve!ci=s;x", "PVEAuthCookie=PVE%3Aa%40pve%3A1::s", "x", ""} {
		if a, b := FromAuthorization(v), FromAuthorizationBytes([]byte(v)); a != b {
			t.Errorf("%q: %q vs %q", v, a, b)
		}
		if a, b := FromCookie(v), FromCookieBytes([]byte(v)); a != b {
			t.Errorf("%q: %q vs %q", v, a, b)
		}
	}
	for _, id := range []string{"root@pam", "tf@pve!ci", "root", "@pam", "a b@pam", "r@p", "r@pam!x", "u@x@pve", strings.Repeat("u", 61) + "@pam"} {
		want := Check(id) == nil
		got := validID(id, strings.Contains(id[strings.LastIndexByte(id, '@')+1:], "!"))
		if !strings.Contains(id, "@") {
			got = validID(id, false)
		}
		if got != want {
			t.Errorf("validID(%q) = %v, Check says %v", id, got, want)
		}
	}
}

func BenchmarkFromAuthorization(b *testing.B) {
	v := []byte("PVEAPIToken=terraform@pve!ci=0b8c4a1e-5f7d-4c1b-9a2e-3d4f5a6b7c8d")
	b.ReportAllocs()
	for b.Loop() {
		FromAuthorizationBytes(v)
	}
}
