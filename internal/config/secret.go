package config

import (
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
)

const redacted = "[redacted]"

// Secret is a credential (the PVE API token) that must never reach a log
// line, an error message, a status page or a crash dump. Every way Go prints
// or encodes a value (fmt verbs including %#v, encoding/json, encoding.Text,
// log/slog) yields "[redacted]"; only Reveal returns the value, so a leak
// needs a deliberate call that is easy to find in review.
type Secret string

// String hides the value from fmt's %v and %s and from anything else that
// calls Stringer.
func (Secret) String() string { return redacted }

// GoString hides the value from %#v.
func (Secret) GoString() string { return redacted }

// Format hides the value from every fmt verb, including %q, %x and %d,
// which would otherwise bypass String.
func (Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// MarshalJSON hides the value from /status and other JSON output.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText hides the value from text encoders (TOML, YAML, XML, map keys).
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue hides the value from log/slog, whatever the handler.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// Reveal returns the secret itself. Call it only where the value is sent
// to its destination (the Authorization header), never to log or report.
func (s Secret) Reveal() string { return string(s) }

// IsSet reports whether a secret was configured, for status output that
// must say "a token is in use" without showing it.
func (s Secret) IsSet() bool { return s != "" }

// ID returns the non-secret USER@REALM!TOKENID part of a PVE API token, so
// logs and status can say which token is in use. It is "" when the secret
// is not a well-formed token.
func (s Secret) ID() string {
	m := tokenRE.FindStringSubmatch(string(s))
	if m == nil {
		return ""
	}
	return m[1]
}

// tokenRE follows PVE's own rules: a userid (user@realm) whose realm and
// token id start with a letter, then "!TOKENID=SECRET".
var tokenRE = regexp.MustCompile(`^([^\s:/]+@[A-Za-z][A-Za-z0-9.\-_]+![A-Za-z][A-Za-z0-9.\-_]+)=(\S+)$`)

// checkToken validates a PVE API token without ever putting it in the
// message: the caller's error goes to logs and terminals.
func checkToken(v string) error {
	const want = "expected USER@REALM!TOKENID=SECRET (value not shown)"
	// Checked first: PVE's user names may contain '=', so the pasted
	// header value would otherwise pass as user "PVEAPIToken=root".
	if len(v) >= len("PVEAPIToken=") && strings.EqualFold(v[:len("PVEAPIToken=")], "PVEAPIToken=") {
		return fmt.Errorf("drop the \"PVEAPIToken=\" prefix: %s", want)
	}
	if !tokenRE.MatchString(v) {
		return fmt.Errorf("not a PVE API token: %s", want)
	}
	return nil
}
