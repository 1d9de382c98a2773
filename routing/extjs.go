package routing

import (
	"bytes"
	"encoding/json"
	"strings"
)

// ExtjsFormatPrefix is the path prefix of PVE's web UI format. pveproxy
// answers every error in it with HTTP 200 and the real status in the body
// ({"success":0,"status":500,...}), so no HTTP-level retry rule sees it.
const ExtjsFormatPrefix = "/api2/extjs/"

// ExtjsRetriable says whether rust's answer to a request may be checked for
// an extjs failure and retried on Perl: only a GET (the one method whose
// retry cannot apply anything twice) of a network template under
// /api2/extjs, with fallback on for that template (fallback_enabled and the
// endpoint's fallback_on_error). The caller knows from the upstream that
// rust answered; the fallback setting is read from p rather than from a full
// decision so that no later precedence rule can make a rust answer look
// retriable where the request's retry budget was set to zero. cleanPath is
// the normalised path (NormalizePath). Writes are never retried, so their
// failures are never looked at.
func ExtjsRetriable(p *Policy, method, cleanPath string) bool {
	if method != "GET" || !strings.HasPrefix(cleanPath, ExtjsFormatPrefix) {
		return false
	}
	c := Classify(method, cleanPath, "")
	if c.Category == NotNetwork {
		return false
	}
	rule, hasRule := p.Endpoints[c.Template]
	return p.FallbackEnabled && (!hasRule || rule.FallbackOnError == nil || *rule.FallbackOnError)
}

// ExtjsFailureStatus reads an extjs answer body and returns the status it
// reports when it is a server-side failure: success false (0, false, null
// or absent) with a numeric status of 500 or more. A 4xx in the body (a
// missing interface, a bad parameter) is an answer, not a failure, and so
// is anything that is not a JSON object: ok is false for all of them.
func ExtjsFailureStatus(body []byte) (status int, ok bool) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return 0, false
	}
	var env struct {
		Success json.RawMessage `json:"success"`
		Status  json.RawMessage `json:"status"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return 0, false
	}
	if truthy(env.Success) {
		return 0, false
	}
	var n json.Number
	if err := json.Unmarshal(env.Status, &n); err != nil {
		// pveproxy writes the status as a number; a string "500" is
		// accepted too, anything else is not a failure we can name.
		var s string
		if json.Unmarshal(env.Status, &s) != nil {
			return 0, false
		}
		n = json.Number(s)
	}
	v, err := n.Int64()
	if err != nil || v < 500 || v > 599 {
		return 0, false
	}
	return int(v), true
}

// truthy is Perl's truth for a JSON value: false, 0, "", "0", null and an
// absent value are false.
func truthy(raw json.RawMessage) bool {
	switch s := string(bytes.TrimSpace(raw)); s {
	case "", "null", "false", "0", `""`, `"0"`:
		return false
	default:
		if n, err := json.Number(s).Float64(); err == nil {
			return n != 0
		}
		return true
	}
}
