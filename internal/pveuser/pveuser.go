// Package pveuser reads and checks PVE user ids (`USER@REALM`) and API
// token ids (`USER@REALM!TOKENID`) by pve-access-control's rules, and
// finds the id a request claims in its `Authorization: PVEAPIToken=...`
// header or its `PVEAuthCookie` ticket. The canary list in the config and
// the router's request path share it, so an id the config accepts is
// exactly an id a request can carry.
//
// Nothing here verifies a credential: the backend authenticates. The
// functions return the id only, never a secret or a signature, so that the
// caller has nothing secret to log or keep.
package pveuser

import (
	"fmt"
	"strings"
)

// MaxLen is the longest user id PVE accepts (AccessControl.pm
// verify_username).
const MaxLen = 64

// Check reports whether id is `USER@REALM` or `USER@REALM!TOKENID` as
// PVE writes them: USER without white space, ':' or '/'; REALM and
// TOKENID a letter followed by at least one letter, digit, '.', '-' or
// '_'. The error says what is wrong, never echoing a token secret.
func Check(id string) error {
	if id == "" {
		return fmt.Errorf("empty user id")
	}
	if strings.ContainsRune(id, '=') {
		return fmt.Errorf("contains '=': an API token's secret does not belong here, only its id USER@REALM!TOKENID")
	}
	at := strings.LastIndexByte(id, '@')
	if at < 0 {
		return fmt.Errorf("missing @REALM (PVE user ids are USER@REALM, e.g. root@pam)")
	}
	user, rest := id[:at], id[at+1:]
	realm, token, hasToken := strings.Cut(rest, "!")
	if len(user)+1+len(realm) > MaxLen {
		return fmt.Errorf("user id longer than %d characters", MaxLen)
	}
	if user == "" {
		return fmt.Errorf("empty user name before @")
	}
	if strings.ContainsAny(user, " \t\r\n:/") {
		return fmt.Errorf("user name must not contain white space, ':' or '/'")
	}
	if !validName(realm) {
		return fmt.Errorf("realm %q: want a letter followed by letters, digits, '.', '-' or '_' (e.g. pam, pve)", realm)
	}
	if hasToken && !validName(token) {
		return fmt.Errorf("token id %q: want a letter followed by letters, digits, '.', '-' or '_'", token)
	}
	return nil
}

// validName is PVE's realm and token-id syntax: [A-Za-z][A-Za-z0-9.\-_]+.
func validName(s string) bool {
	if len(s) < 2 || !isLetter(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isLetter(c) && !(c >= '0' && c <= '9') && c != '.' && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// Suggest proposes the id an operator probably meant for a malformed one
// ("" when nothing plausible): the id part of a pasted full token, '!'
// for a ':' before the token id, a missing realm. It never returns a
// secret.
func Suggest(id string) string {
	s := strings.TrimSpace(id)
	s = strings.TrimPrefix(s, "PVEAPIToken=")
	if i := strings.LastIndexByte(s, '='); i >= 0 {
		s = s[:i] // USER@REALM!TOKENID=SECRET: keep the id, drop the secret
	}
	if at := strings.LastIndexByte(s, '@'); at >= 0 {
		if realm, token, ok := strings.Cut(s[at+1:], ":"); ok && !strings.Contains(realm, "!") {
			s = s[:at+1] + realm + "!" + token
		}
	} else if s != "" && !strings.ContainsAny(s, " \t:/!") {
		s += "@pam"
	}
	if s == id || Check(s) != nil {
		return ""
	}
	return s
}

// FromAuthorization returns the token id of an `Authorization:
// PVEAPIToken=USER@REALM!TOKENID=SECRET` (or `PVEAPIToken USER...`)
// header value, or the user of a PVEAuthCookie ticket sent in that header
// (pveproxy accepts both); "" when there is none or it is malformed. Like
// pveproxy, the secret is what follows the last '='.
func FromAuthorization(v string) string {
	if i := indexWord(v, "PVEAPIToken"); i >= 0 {
		rest := v[i+len("PVEAPIToken"):]
		if rest == "" || (rest[0] != '=' && rest[0] != ' ') {
			return ""
		}
		rest = rest[1:]
		if j := strings.IndexByte(rest, ';'); j >= 0 {
			rest = rest[:j]
		}
		eq := strings.LastIndexByte(rest, '=')
		if eq < 0 {
			return ""
		}
		id := rest[:eq]
		if !strings.Contains(id, "!") || Check(id) != nil {
			return ""
		}
		return id
	}
	return FromCookie(v)
}

// indexWord finds word at the start of v or after white space.
func indexWord(v, word string) int {
	for off := 0; ; {
		i := strings.Index(v[off:], word)
		if i < 0 {
			return -1
		}
		i += off
		if i == 0 || v[i-1] == ' ' || v[i-1] == '\t' {
			return i
		}
		off = i + len(word)
	}
}

// FromCookie returns the user of the PVEAuthCookie ticket in a Cookie
// header value (`PVE:USER@REALM:HEXTIME::SIGNATURE`, URL-encoded or not);
// "" when there is none or it is malformed.
func FromCookie(v string) string {
	for len(v) > 0 {
		var pair string
		pair, v, _ = strings.Cut(v, ";")
		name, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || name != "PVEAuthCookie" {
			continue
		}
		return ticketUser(val)
	}
	return ""
}

// ticketUser extracts USER@REALM from a ticket. Only the prefix up to the
// user's end is decoded; the signature is never copied.
func ticketUser(t string) string {
	t = strings.Trim(t, `"`)
	var b strings.Builder
	for i := 0; i < len(t) && b.Len() <= MaxLen+8; i++ {
		c := t[i]
		if c == '%' && i+2 < len(t) {
			h, ok := unhex(t[i+1], t[i+2])
			if !ok {
				return ""
			}
			c = h
			i += 2
		}
		if c == ':' && b.Len() > 4 {
			break
		}
		b.WriteByte(c)
	}
	s := b.String()
	if !strings.HasPrefix(s, "PVE:") {
		return ""
	}
	id := s[len("PVE:"):]
	if strings.Contains(id, "!") || Check(id) != nil {
		return ""
	}
	return id
}

func unhex(a, b byte) (byte, bool) {
	x, ok1 := hexVal(a)
	y, ok2 := hexVal(b)
	return x<<4 | y, ok1 && ok2
}

func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
