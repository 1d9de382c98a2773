package pvedemo

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

const testToken = "root@pam!ci=4f1b2c3d-aaaa-bbbb-cccc-0123456789ab"

func TestTokenAuth(t *testing.T) {
	b := startBackend(t, Options{Flavor: FlavorPerl, Token: testToken})
	tests := []struct {
		name   string
		authz  string
		method string
		want   int
	}{
		{"token with =", "PVEAPIToken=" + testToken, "GET", 200},
		{"token with space", "PVEAPIToken " + testToken, "GET", 200},
		{"token write needs no CSRF", "PVEAPIToken=" + testToken, "DELETE", 200},
		{"wrong secret", "PVEAPIToken=root@pam!ci=wrong", "GET", 401},
		{"wrong token id", "PVEAPIToken=root@pam!other=4f1b2c3d-aaaa-bbbb-cccc-0123456789ab", "GET", 401},
		{"no credentials", "", "GET", 401},
		{"garbage", "Bearer abc", "GET", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []reqOpt
			if tt.authz != "" {
				opts = append(opts, withHeader("Authorization", tt.authz))
			}
			r := b.do(t, tt.method, netPath, nil, opts...)
			if r.status != tt.want {
				t.Fatalf("status %d, want %d: %s", r.status, tt.want, r.raw)
			}
			if r.header.Get("X-Pve-Served-By") != "perl" {
				t.Errorf("401 lacks x-pve-served-by")
			}
		})
	}
	t.Run("debug needs no auth", func(t *testing.T) {
		if r := b.do(t, "GET", "/debug/applied", nil); r.status != 200 {
			t.Errorf("status %d", r.status)
		}
	})
}

func TestTicketAuth(t *testing.T) {
	dir := t.TempDir()
	perl := startBackend(t, Options{Flavor: FlavorPerl, Token: testToken, StateDir: dir, Password: "s3cret"})
	rust := startBackend(t, Options{Flavor: FlavorRust, Token: testToken, StateDir: dir, Password: "s3cret"})

	if r := perl.do(t, "POST", "/api2/json/access/ticket", form("username", "root@pam", "password", "nope")); r.status != 401 {
		t.Fatalf("wrong password: status %d", r.status)
	}
	r := perl.do(t, "POST", "/api2/json/access/ticket", form("username", "alice", "realm", "pve", "password", "s3cret"))
	if r.status != 200 {
		t.Fatalf("ticket: %d %s", r.status, r.raw)
	}
	d := r.dataMap(t)
	ticket, _ := d["ticket"].(string)
	csrf, _ := d["CSRFPreventionToken"].(string)
	if d["username"] != "alice@pve" || ticket == "" || csrf == "" {
		t.Fatalf("ticket reply %v", d)
	}
	cookie := withHeader("Cookie", "PVEAuthCookie="+url.QueryEscape(ticket))
	tests := []struct {
		name   string
		b      *backend
		method string
		path   string
		form   map[string]string
		opts   []reqOpt
		want   int
	}{
		{"GET with cookie", perl, "GET", netPath, nil, []reqOpt{cookie}, 200},
		{"ticket valid on the other backend", rust, "GET", netPath, nil, []reqOpt{cookie}, 200},
		{"POST without CSRF", perl, "POST", netPath, map[string]string{"iface": "eno1.7", "type": "vlan"}, []reqOpt{cookie}, 401},
		{"POST with wrong CSRF", perl, "POST", netPath, map[string]string{"iface": "eno1.7", "type": "vlan"}, []reqOpt{cookie, withHeader("CSRFPreventionToken", "00000000:abc")}, 401},
		{"POST with CSRF", rust, "POST", netPath, map[string]string{"iface": "eno1.7", "type": "vlan"}, []reqOpt{cookie, withHeader("CSRFPreventionToken", csrf)}, 200},
		{"tampered ticket", perl, "GET", netPath, nil, []reqOpt{withHeader("Cookie", "PVEAuthCookie="+url.QueryEscape(ticket+"x"))}, 401},
		{"ticket in Authorization header", perl, "GET", netPath, nil, []reqOpt{withHeader("Authorization", "PVEAuthCookie="+ticket)}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := form()
			for k, v := range tt.form {
				f.Set(k, v)
			}
			r := tt.b.do(t, tt.method, tt.path, f, tt.opts...)
			if r.status != tt.want {
				t.Fatalf("status %d, want %d: %s", r.status, tt.want, r.raw)
			}
		})
	}
	t.Run("apply UPID carries the ticket user", func(t *testing.T) {
		r := perl.do(t, "PUT", netPath, nil, cookie, withHeader("CSRFPreventionToken", csrf))
		if s, _ := r.data().(string); r.status != 200 || len(s) < 10 || s[len(s)-11:] != ":alice@pve:" {
			t.Errorf("apply %d %s", r.status, r.raw)
		}
	})
}

func TestTicketExpiry(t *testing.T) {
	a, err := newAuthenticator(testToken, "demo")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	a.now = func() time.Time { return now }
	ticket, _ := a.issue("root@pam")
	if _, ok := a.verifyTicket(ticket); !ok {
		t.Fatal("fresh ticket rejected")
	}
	now = now.Add(ticketLifetime + time.Second)
	if _, ok := a.verifyTicket(ticket); ok {
		t.Error("expired ticket accepted")
	}
}

func TestTokenOption(t *testing.T) {
	for _, bad := range []string{"root@pam", "root@pam!x=", "rootpam!x=y", "@pam!x=y", "root@pam=y"} {
		t.Run(bad, func(t *testing.T) {
			_, err := New(Options{Flavor: FlavorPerl, StateDir: t.TempDir(), Token: bad})
			if err == nil {
				t.Fatalf("token %q accepted", bad)
			}
			if ExitCode(err) != 2 {
				t.Errorf("exit code %d, want 2", ExitCode(err))
			}
		})
	}
	// The secret never appears in the error text.
	_, err := New(Options{Flavor: FlavorPerl, StateDir: t.TempDir(), Token: "root@pam=topsecret"})
	if err == nil || strings.Contains(err.Error(), "topsecret") {
		t.Errorf("error leaks secret: %v", err)
	}
}
