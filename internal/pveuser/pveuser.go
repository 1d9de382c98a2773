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
	"bytes"
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
func validName[T text](s T) bool {
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
func FromAuthorization(v string) string { return fromAuthorization([]byte(v)) }

// FromAuthorizationBytes is FromAuthorization for a header as the router
// receives it; it allocates only the returned id.
func FromAuthorizationBytes(v []byte) string { return fromAuthorization(v) }

// FromCookie returns the user of the PVEAuthCookie ticket in a Cookie
// header value (`PVE:USER@REALM:HEXTIME::SIGNATURE`, URL-encoded or not);
// "" when there is none or it is malformed.
func FromCookie(v string) string { return fromCookie([]byte(v)) }

// FromCookieBytes is FromCookie for a header as the router receives it.
func FromCookieBytes(v []byte) string { return fromCookie(v) }

type text interface{ ~string | ~[]byte }

const tokenWord = "PVEAPIToken"

// fromAuthorization works on bytes with the bytes package's vectorised
// searches: it runs on the request path.
func fromAuthorization(v []byte) string {
	i := indexWord(v, tokenWord)
	if i < 0 {
		return fromCookie(v)
	}
	rest := v[i+len(tokenWord):]
	if len(rest) == 0 || (rest[0] != '=' && rest[0] != ' ') {
		return ""
	}
	rest = rest[1:]
	// pveproxy: ([^;]*) then ^(.*)=(.*)$, so the id ends at the last '='.
	if j := bytes.IndexByte(rest, ';'); j >= 0 {
		rest = rest[:j]
	}
	eq := bytes.LastIndexByte(rest, '=')
	if eq < 0 {
		return ""
	}
	id := rest[:eq]
	if !validID(id, true) {
		return ""
	}
	return string(id)
}

// indexWord finds word at the start of v or after white space.
func indexWord(v []byte, word string) int {
	for off := 0; ; {
		i := bytes.Index(v[off:], []byte(word))
		if i < 0 {
			return -1
		}
		i += off
		if i == 0 || v[i-1] == ' ' || v[i-1] == '\t' {
			return i
		}
		off = i + 1
	}
}

const cookieName = "PVEAuthCookie="

func fromCookie(v []byte) string {
	for i := 0; i < len(v); {
		for i < len(v) && (v[i] == ' ' || v[i] == ';' || v[i] == '\t') {
			i++
		}
		end := i
		for end < len(v) && v[end] != ';' {
			end++
		}
		pair := v[i:end]
		if bytes.HasPrefix(pair, []byte(cookieName)) {
			return ticketUser(pair[len(cookieName):])
		}
		i = end
	}
	return ""
}

// ticketUser extracts USER@REALM from a ticket into a stack buffer,
// decoding percent escapes; the signature is never copied.
func ticketUser(t []byte) string {
	var buf [MaxLen + 8]byte
	n := 0
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c == '"' && (i == 0 || i == len(t)-1) {
			continue
		}
		if c == '%' && i+2 < len(t) {
			h, ok := unhex(t[i+1], t[i+2])
			if !ok {
				return ""
			}
			c = h
			i += 2
		}
		if c == ':' && n > 4 {
			break
		}
		if n == len(buf) {
			return ""
		}
		buf[n] = c
		n++
	}
	const prefix = "PVE:"
	if n < len(prefix) || string(buf[:len(prefix)]) != prefix {
		return ""
	}
	id := buf[len(prefix):n]
	if !validID(id, false) {
		return ""
	}
	return string(id)
}

// validID is Check as a yes/no on either text type, without allocating;
// token says whether a !TOKENID is required (true) or forbidden (false).
func validID[T text](id T, token bool) bool {
	at := -1
	for i := len(id) - 1; i >= 0; i-- {
		if id[i] == '@' {
			at = i
			break
		}
	}
	if at <= 0 {
		return false
	}
	for i := 0; i < at; i++ {
		switch id[i] {
		case ' ', '\t', '\r', '\n', ':', '/', '=':
			return false
		}
	}
	rest := id[at+1:]
	bang := -1
	for i := 0; i < len(rest); i++ {
		if rest[i] == '!' {
			bang = i
			break
		}
	}
	if (bang >= 0) != token {
		return false
	}
	realm := rest
	if bang >= 0 {
		realm = rest[:bang]
		if !validName(rest[bang+1:]) {
			return false
		}
	}
	return at+1+len(realm) <= MaxLen && validName(realm)
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
