package routing

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"strings"
)

// MaxBodyBytes is the largest request body pveproxy accepts (512 KiB since
// libpve-http-server-perl 5.2.1). A larger body cannot be a valid PVE
// request, so nobody needs to parse it to route it.
const MaxBodyBytes = 512 << 10

// ErrAmbiguousType means the request names more than one interface type
// (repeated form keys, or query and body disagreeing). Callers treat it as
// an unknown type, which classifies as advanced.
var ErrAmbiguousType = errors.New("ambiguous interface type")

// IfaceType extracts the `type` parameter of a node-network POST/PUT from
// its query string and body, the way pveproxy merges them: form-urlencoded
// (the default when no content type is given) or JSON. It returns "" with a
// nil error when there is no type, and an error that names the problem when
// the body cannot be read as PVE would read it. The body is never echoed
// into the error: it may carry secrets (passwords, keys).
func IfaceType(contentType string, body []byte, rawQuery string) (string, error) {
	var fromQuery string
	if rawQuery != "" {
		q, err := url.ParseQuery(rawQuery)
		if err != nil {
			return "", fmt.Errorf("query string: %w", err)
		}
		if v := q["type"]; len(v) > 1 {
			return "", fmt.Errorf("query string: %w", ErrAmbiguousType)
		} else if len(v) == 1 {
			fromQuery = v[0]
		}
	}
	if len(body) > MaxBodyBytes {
		return "", fmt.Errorf("body of %d bytes is over PVE's limit of %d", len(body), MaxBodyBytes)
	}
	fromBody, err := bodyType(contentType, body)
	if err != nil {
		return "", err
	}
	switch {
	case fromBody == "":
		return fromQuery, nil
	case fromQuery == "" || fromQuery == fromBody:
		return fromBody, nil
	}
	return "", fmt.Errorf("query says %q, body says %q: %w", fromQuery, fromBody, ErrAmbiguousType)
}

func bodyType(contentType string, body []byte) (string, error) {
	if len(body) == 0 {
		return "", nil
	}
	mt := "application/x-www-form-urlencoded"
	if contentType != "" {
		var err error
		if mt, _, err = mime.ParseMediaType(contentType); err != nil {
			return "", fmt.Errorf("content-type %q: %w", contentType, err)
		}
	}
	switch strings.ToLower(mt) {
	case "application/json":
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			return "", fmt.Errorf("JSON body: %w", err)
		}
		raw, ok := m["type"]
		if !ok || string(raw) == "null" {
			return "", nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("JSON body: \"type\" is not a string")
		}
		return s, nil
	case "application/x-www-form-urlencoded":
		q, err := url.ParseQuery(string(body))
		if err != nil {
			return "", fmt.Errorf("form body: %w", err)
		}
		v := q["type"]
		if len(v) > 1 {
			return "", fmt.Errorf("form body: %w", ErrAmbiguousType)
		}
		if len(v) == 1 {
			return v[0], nil
		}
		return "", nil
	}
	return "", fmt.Errorf("content-type %q is neither form-urlencoded nor JSON", mt)
}
