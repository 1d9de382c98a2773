package routing

import (
	"path"
	"strings"
	"unicode/utf8"
)

// NormalizePath returns the path Decide classifies: query string
// dropped, percent-encoded unreserved characters decoded, "//"
// merged and "." and ".." resolved, trailing slash removed. This is what
// Envoy's normalize_path + merge_slashes does, so both see the same path.
//
// ok is false for a path no PVE client sends and nothing should route on:
// not absolute, a fragment ("#"), invalid percent-encoding, an encoded "/" or "\" (which
// servers disagree about), control characters or invalid UTF-8. Decide
// sends such requests to Perl, which answers them as it always has.
//
// A path that is already clean is returned without allocating.
func NormalizePath(p string) (clean string, ok bool) {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	if strings.IndexByte(p, '#') >= 0 {
		// A fragment is never part of a request target (RFC 9112 3.2);
		// where one arrives, servers disagree about what follows it.
		return "", false
	}
	if p == "" || p[0] != '/' {
		return "", false
	}
	if isClean(p) {
		return p, true
	}
	if !utf8.ValidString(p) {
		return "", false
	}
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c < 0x20 || c == 0x7f || c == '\\':
			return "", false
		case c == '%':
			if i+2 >= len(p) {
				return "", false
			}
			h, l := unhex(p[i+1]), unhex(p[i+2])
			if h < 0 || l < 0 {
				return "", false
			}
			d := byte(h<<4 | l)
			if isUnreserved(d) {
				b.WriteByte(d)
			} else {
				if d == '/' || d == '\\' || d < 0x20 || d == 0x7f {
					return "", false
				}
				// Keep other reserved escapes as they are, in upper case
				// (RFC 3986 6.2.2.1), so they never form a new segment.
				b.WriteByte('%')
				b.WriteByte(upperHex(p[i+1]))
				b.WriteByte(upperHex(p[i+2]))
			}
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return path.Clean(b.String()), true
}

// isClean reports whether p needs no normalisation: no escapes, no empty,
// "." or ".." segments, no trailing slash, only printable ASCII.
func isClean(p string) bool {
	if len(p) > 1 && p[len(p)-1] == '/' {
		return false
	}
	segStart := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c <= 0x20 || c >= 0x7f || c == '%' || c == '\\' {
			return false
		}
		if c == '/' {
			if i > 0 {
				seg := p[segStart+1 : i]
				if seg == "" || seg == "." || seg == ".." {
					return false
				}
			}
			segStart = i
		}
	}
	last := p[segStart+1:]
	return last != "." && last != ".."
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

func upperHex(c byte) byte {
	if 'a' <= c && c <= 'f' {
		return c - 'a' + 'A'
	}
	return c
}

// apiPath strips the format prefix. Only /api2/json and /api2/extjs carry
// the network API that Rust implements; /api2/html, /api2/spiceconfig and
// paths outside /api2 are not-network.
func apiPath(clean string) (string, bool) {
	const api = "/api2/"
	if !strings.HasPrefix(clean, api) {
		return "", false
	}
	rest := clean[len(api):]
	for _, f := range [...]string{"json", "extjs"} {
		if strings.HasPrefix(rest, f) && len(rest) > len(f) && rest[len(f)] == '/' {
			return rest[len(f):], true
		}
	}
	return "", false
}
