package pveschema

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth is encoding/json's nesting limit, kept so that both decoders
// refuse the same inputs.
const maxDepth = 10000

// decode parses one JSON value into the forms encoding/json produces with
// UseNumber (map[string]any, []any, string, json.Number, bool, nil), with
// the same result and the same inputs refused (FuzzDecode holds the two
// against each other), at a fraction of the cost: no reflection, map sizes
// known before the map is made. The schema check is cheap; decoding is most
// of what a worker pays per answer.
func decode(b []byte) (any, error) { return decodeInterned(b, nil) }

// decodeInterned is decode with object keys that are in names taken from
// it instead of allocated: a compiled schema's property names cover almost
// every key of an answer.
func decodeInterned(b []byte, names map[string]string) (any, error) {
	d := decoder{b: b, names: names}
	d.space()
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	d.space()
	if d.i != len(d.b) {
		return nil, d.errorf("trailing data after the JSON value")
	}
	return v, nil
}

type decoder struct {
	b []byte
	i int
	// keys and vals are scratch stacks for objects being decoded, so that
	// a map is made once with its final size.
	keys []string
	vals []any
	// names interns object keys (nil: none).
	names map[string]string
}

func (d *decoder) errorf(format string, args ...any) error {
	return fmt.Errorf("invalid JSON at offset %d: %s", d.i, fmt.Sprintf(format, args...))
}

var errEOF = errors.New("unexpected end of JSON input")

func (d *decoder) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *decoder) value(depth int) (any, error) {
	if d.i >= len(d.b) {
		return nil, errEOF
	}
	switch c := d.b[d.i]; {
	case c == '{':
		if depth >= maxDepth {
			return nil, d.errorf("exceeded max depth")
		}
		return d.object(depth + 1)
	case c == '[':
		if depth >= maxDepth {
			return nil, d.errorf("exceeded max depth")
		}
		return d.array(depth + 1)
	case c == '"':
		return d.str()
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	case c == 't':
		return d.literal("true", true)
	case c == 'f':
		return d.literal("false", false)
	case c == 'n':
		return d.literal("null", nil)
	}
	return nil, d.errorf("unexpected character %q", d.b[d.i])
}

func (d *decoder) literal(word string, v any) (any, error) {
	if len(d.b)-d.i < len(word) || string(d.b[d.i:d.i+len(word)]) != word {
		if len(d.b)-d.i < len(word) && string(d.b[d.i:]) == word[:len(d.b)-d.i] {
			return nil, errEOF
		}
		return nil, d.errorf("invalid literal")
	}
	d.i += len(word)
	return v, nil
}

func (d *decoder) object(depth int) (any, error) {
	d.i++ // {
	base, vbase := len(d.keys), len(d.vals)
	d.space()
	if d.i < len(d.b) && d.b[d.i] == '}' {
		d.i++
		return map[string]any{}, nil
	}
	for {
		d.space()
		if d.i >= len(d.b) {
			return nil, errEOF
		}
		if d.b[d.i] != '"' {
			return nil, d.errorf("object key is not a string")
		}
		k, err := d.key()
		if err != nil {
			return nil, err
		}
		d.space()
		if d.i >= len(d.b) {
			return nil, errEOF
		}
		if d.b[d.i] != ':' {
			return nil, d.errorf("missing colon after object key")
		}
		d.i++
		d.space()
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		d.keys = append(d.keys, k)
		d.vals = append(d.vals, v)
		d.space()
		if d.i >= len(d.b) {
			return nil, errEOF
		}
		switch d.b[d.i] {
		case ',':
			d.i++
			continue
		case '}':
			d.i++
			m := make(map[string]any, len(d.keys)-base)
			for j := base; j < len(d.keys); j++ {
				m[d.keys[j]] = d.vals[vbase+j-base]
			}
			clear(d.vals[vbase:])
			d.keys, d.vals = d.keys[:base], d.vals[:vbase]
			return m, nil
		}
		return nil, d.errorf("expected , or } in object")
	}
}

func (d *decoder) array(depth int) (any, error) {
	d.i++ // [
	d.space()
	if d.i < len(d.b) && d.b[d.i] == ']' {
		d.i++
		return []any{}, nil
	}
	base := len(d.vals)
	for {
		d.space()
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		d.vals = append(d.vals, v)
		d.space()
		if d.i >= len(d.b) {
			return nil, errEOF
		}
		switch d.b[d.i] {
		case ',':
			d.i++
			continue
		case ']':
			d.i++
			out := make([]any, len(d.vals)-base)
			copy(out, d.vals[base:])
			clear(d.vals[base:])
			d.vals = d.vals[:base]
			return out, nil
		}
		return nil, d.errorf("expected , or ] in array")
	}
}

// number scans JSON's number grammar and keeps its text, as UseNumber does.
func (d *decoder) number() (any, error) {
	start := d.i
	if d.b[d.i] == '-' {
		d.i++
	}
	digits := func() int {
		n := 0
		for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
			d.i++
			n++
		}
		return n
	}
	if d.i >= len(d.b) {
		return nil, errEOF
	}
	switch {
	case d.b[d.i] == '0':
		d.i++
	case d.b[d.i] >= '1' && d.b[d.i] <= '9':
		digits()
	default:
		return nil, d.errorf("invalid number")
	}
	if d.i < len(d.b) && d.b[d.i] == '.' {
		d.i++
		if d.i >= len(d.b) {
			return nil, errEOF
		}
		if digits() == 0 {
			return nil, d.errorf("invalid number")
		}
	}
	if d.i < len(d.b) && (d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		d.i++
		if d.i < len(d.b) && (d.b[d.i] == '+' || d.b[d.i] == '-') {
			d.i++
		}
		if d.i >= len(d.b) {
			return nil, errEOF
		}
		if digits() == 0 {
			return nil, d.errorf("invalid number")
		}
	}
	return json.Number(d.b[start:d.i]), nil
}

// key decodes an object key, interned when it is a plain string the
// schema names (the lookup with string(bytes) does not allocate).
func (d *decoder) key() (string, error) {
	if d.names != nil {
		start := d.i + 1
		for j := start; j < len(d.b); j++ {
			c := d.b[j]
			if c == '"' {
				if k, ok := d.names[string(d.b[start:j])]; ok {
					d.i = j + 1
					return k, nil
				}
				break
			}
			if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
				break
			}
		}
	}
	return d.str()
}

// str decodes a string the way encoding/json does: escapes resolved,
// invalid UTF-8 and lone surrogates replaced by U+FFFD, raw control
// characters refused.
func (d *decoder) str() (string, error) {
	d.i++ // "
	start := d.i
	// Fast path: no escapes, valid UTF-8.
	for d.i < len(d.b) {
		c := d.b[d.i]
		if c == '"' {
			s := d.b[start:d.i]
			d.i++
			return string(s), nil
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		d.i++
	}
	buf := make([]byte, 0, d.i-start+16)
	buf = append(buf, d.b[start:d.i]...)
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			return string(buf), nil
		case c < 0x20:
			return "", d.errorf("control character in string")
		case c == '\\':
			d.i++
			if d.i >= len(d.b) {
				return "", errEOF
			}
			e := d.b[d.i]
			d.i++
			switch e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				r, ok := d.hex4()
				if !ok {
					if d.i+4 > len(d.b) {
						return "", errEOF
					}
					return "", d.errorf("invalid \\u escape")
				}
				if utf16.IsSurrogate(r) {
					// A high surrogate followed by an escaped low one is
					// one character; anything else is U+FFFD.
					if d.i+6 <= len(d.b) && d.b[d.i] == '\\' && d.b[d.i+1] == 'u' {
						save := d.i
						d.i += 2
						r2, ok2 := d.hex4()
						if ok2 {
							if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
								buf = utf8.AppendRune(buf, dec)
								continue
							}
						}
						d.i = save
					}
					r = utf8.RuneError
				}
				buf = utf8.AppendRune(buf, r)
			default:
				return "", d.errorf("invalid escape \\%c", e)
			}
		case c < utf8.RuneSelf:
			buf = append(buf, c)
			d.i++
		default:
			r, size := utf8.DecodeRune(d.b[d.i:])
			if r == utf8.RuneError && size == 1 {
				buf = utf8.AppendRune(buf, utf8.RuneError)
			} else {
				buf = append(buf, d.b[d.i:d.i+size]...)
			}
			d.i += size
		}
	}
	return "", errEOF
}

func (d *decoder) hex4() (rune, bool) {
	if d.i+4 > len(d.b) {
		return 0, false
	}
	var r rune
	for _, c := range d.b[d.i : d.i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r*16 + rune(c)
	}
	d.i += 4
	return r, true
}
