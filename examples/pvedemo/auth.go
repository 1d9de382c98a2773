package pvedemo

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ticketLifetime is PVE's $ticket_lifetime (AccessControl.pm).
const ticketLifetime = 2 * time.Hour

// tokenRe is the header pattern of pve-access-control verify_token: the value
// after "PVEAPIToken=" or "PVEAPIToken " up to the next ";".
var tokenRe = regexp.MustCompile(`(?:^|\s)PVEAPIToken(?:=| )([^;]*)`)

// cookieInAuthRe is pveproxy's fallback: a ticket sent in the Authorization header.
var cookieInAuthRe = regexp.MustCompile(`(?:^|\s)PVEAuthCookie=([^;\s]*)`)

// authenticator checks API tokens and tickets. Tickets are signed with a key
// derived from the configured token so that a ticket issued by the perl
// backend is accepted by the rust backend, as PVE's cluster-wide authkey
// makes tickets valid on every node.
type authenticator struct {
	tokenID  string // USER@REALM!TOKENID
	secret   string
	password string
	key      []byte
	now      func() time.Time
}

// parseToken splits USER@REALM!TOKENID=SECRET at the last "=", as verify_token's
// greedy ^(.*)=(.*)$ does.
func parseToken(s string) (id, secret string, err error) {
	i := strings.LastIndexByte(s, '=')
	if i <= 0 || i == len(s)-1 {
		return "", "", fmt.Errorf("token %q: want USER@REALM!TOKENID=SECRET", redactToken(s))
	}
	id, secret = s[:i], s[i+1:]
	user, tokName, ok := strings.Cut(id, "!")
	if !ok || tokName == "" || !strings.Contains(user, "@") || strings.HasPrefix(user, "@") || strings.HasSuffix(user, "@") {
		return "", "", fmt.Errorf("token %q: want USER@REALM!TOKENID=SECRET", redactToken(s))
	}
	return id, secret, nil
}

// redactToken keeps the token id for error messages and hides the secret.
func redactToken(s string) string {
	if i := strings.LastIndexByte(s, '='); i >= 0 {
		return s[:i] + "=<redacted>"
	}
	return "<redacted>"
}

func newAuthenticator(token, password string) (*authenticator, error) {
	a := &authenticator{password: password, now: time.Now}
	if token != "" {
		id, secret, err := parseToken(token)
		if err != nil {
			return nil, err
		}
		a.tokenID, a.secret = id, secret
	}
	sum := sha256.Sum256([]byte("pve-demo-backend ticket key\x00" + token + "\x00" + password))
	a.key = sum[:]
	return a, nil
}

// enabled reports whether requests must authenticate at all. Without a
// token the demo is open, which is what quick examples want.
func (a *authenticator) enabled() bool { return a.tokenID != "" }

// authFailure is the reason PVE puts in the 401 status line.
type authFailure string

// authenticate returns the user id of the request, or the reason it failed.
// Token requests are exempt from CSRF; ticket requests that change something
// must carry the matching CSRFPreventionToken header.
func (a *authenticator) authenticate(r *http.Request) (string, authFailure) {
	authz := r.Header.Get("Authorization")
	if m := tokenRe.FindStringSubmatch(authz); m != nil {
		v := strings.TrimSpace(m[1])
		i := strings.LastIndexByte(v, '=')
		if i < 0 {
			return "", "invalid token value"
		}
		id, secret := v[:i], v[i+1:]
		if subtle.ConstantTimeCompare([]byte(id), []byte(a.tokenID)) != 1 ||
			subtle.ConstantTimeCompare([]byte(secret), []byte(a.secret)) != 1 {
			return "", "invalid token value"
		}
		return id, ""
	}
	ticket := ""
	if c, err := r.Cookie("PVEAuthCookie"); err == nil {
		ticket = c.Value
	} else if m := cookieInAuthRe.FindStringSubmatch(authz); m != nil {
		ticket = m[1]
	}
	if ticket == "" {
		return "", "No ticket"
	}
	if t, err := url.PathUnescape(ticket); err == nil {
		ticket = t
	}
	user, ok := a.verifyTicket(ticket)
	if !ok {
		return "", "invalid ticket"
	}
	if r.Method != http.MethodGet {
		if !a.verifyCSRF(r.Header.Get("CSRFPreventionToken"), user) {
			return "", "Permission denied - invalid csrf token"
		}
	}
	return user, ""
}

func (a *authenticator) sign(parts ...string) string {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(strings.Join(parts, "\x00")))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// issue returns a ticket and CSRF token for user, in PVE's shapes:
// "PVE:<user>:<hex time>::<signature>" and "<hex time>:<signature>".
func (a *authenticator) issue(user string) (ticket, csrf string) {
	ts := fmt.Sprintf("%08X", a.now().Unix())
	ticket = "PVE:" + user + ":" + ts + "::" + a.sign("ticket", user, ts)
	csrf = ts + ":" + a.sign("csrf", user, ts)
	return ticket, csrf
}

func (a *authenticator) fresh(hexTime string) bool {
	ts, err := strconv.ParseInt(hexTime, 16, 64)
	if err != nil {
		return false
	}
	age := a.now().Sub(time.Unix(ts, 0))
	return age > -5*time.Minute && age < ticketLifetime
}

func (a *authenticator) verifyTicket(t string) (string, bool) {
	rest, ok := strings.CutPrefix(t, "PVE:")
	if !ok {
		return "", false
	}
	head, sig, ok := strings.Cut(rest, "::")
	if !ok {
		return "", false
	}
	i := strings.LastIndexByte(head, ':')
	if i <= 0 {
		return "", false
	}
	user, ts := head[:i], head[i+1:]
	if !hmac.Equal([]byte(sig), []byte(a.sign("ticket", user, ts))) || !a.fresh(ts) {
		return "", false
	}
	return user, true
}

func (a *authenticator) verifyCSRF(token, user string) bool {
	ts, sig, ok := strings.Cut(token, ":")
	if !ok {
		return false
	}
	return hmac.Equal([]byte(sig), []byte(a.sign("csrf", user, ts))) && a.fresh(ts)
}
