// Package tomledit changes the value of one top-level key of a TOML document
// in place, leaving every other byte alone: comments, blank lines, key order,
// quoting, the trailing comment on the edited line and the line endings.
//
// It exists because the migration config lives in /etc/pve, where operators
// document their choices in comments ("# rust-read-only since 2026-03-02,
// ticket 4711"); decoding and re-encoding the file with a TOML library would
// throw those away and reorder keys. The editor is deliberately small: it
// scans just enough TOML to find where top-level keys and values start and
// end (strings, multi-line strings, arrays and inline tables spanning lines,
// comments) and never judges the document's meaning. Callers validate the
// result with the real parser before they use it.
package tomledit

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Value is a top-level key's value as written in the document.
type Value struct {
	// Raw is the value's text exactly as written (`"rust-read-only"`,
	// `'x'`, `true`, `30`).
	Raw string
	// Line is the 1-based line on which the key stands.
	Line int
}

// String returns the value of a string literal without its quotes and
// escapes, and Raw for anything else (booleans, numbers, arrays).
func (v Value) String() string {
	switch {
	case strings.HasPrefix(v.Raw, `'''`) || strings.HasPrefix(v.Raw, `"""`):
		return v.Raw
	case len(v.Raw) >= 2 && v.Raw[0] == '\'' && v.Raw[len(v.Raw)-1] == '\'':
		return v.Raw[1 : len(v.Raw)-1]
	case len(v.Raw) >= 2 && v.Raw[0] == '"' && v.Raw[len(v.Raw)-1] == '"':
		if s, err := unquoteBasic(v.Raw); err == nil {
			return s
		}
	}
	return v.Raw
}

// Lookup finds a top-level key (one that stands before the first [table]).
// ok is false when the key is absent. An error means the document is not
// TOML this package can scan; it names the line.
func Lookup(src []byte, key string) (v Value, ok bool, err error) {
	doc, err := scan(src)
	if err != nil {
		return Value{}, false, err
	}
	e, err := doc.find(key)
	if err != nil || e == nil {
		return Value{}, false, err
	}
	return Value{Raw: string(src[e.valStart:e.valEnd]), Line: e.line}, true, nil
}

// Set returns a copy of src in which the top-level key has the value v, a
// string, bool, int, int64 or float64. Only the bytes of the old value
// change; a string keeps the old value's quote style when it can. When the
// key is absent it is inserted after the last top-level key or, if there is
// none, before the first table (and the comment lines directly above it),
// so it stays a top-level key; in a document without tables it is appended.
// src itself is never modified.
func Set(src []byte, key string, v any) ([]byte, error) {
	if key == "" {
		return nil, errors.New("tomledit: empty key")
	}
	doc, err := scan(src)
	if err != nil {
		return nil, err
	}
	e, err := doc.find(key)
	if err != nil {
		return nil, err
	}
	if e != nil {
		old := src[e.valStart:e.valEnd]
		if bytes.ContainsAny(old, "\r\n") {
			return nil, fmt.Errorf("tomledit: line %d: %s has a multi-line value; edit it by hand", e.line, key)
		}
		lit, err := literal(v, string(old))
		if err != nil {
			return nil, err
		}
		out := make([]byte, 0, len(src)+len(lit))
		out = append(out, src[:e.valStart]...)
		out = append(out, lit...)
		return append(out, src[e.valEnd:]...), nil
	}

	lit, err := literal(v, "")
	if err != nil {
		return nil, err
	}
	nl := "\n"
	if bytes.Contains(src, []byte("\r\n")) {
		nl = "\r\n"
	}
	line := formatKey(key) + " = " + lit + nl
	at, sep := doc.insertionPoint()
	var out []byte
	out = append(out, src[:at]...)
	if at > 0 && src[at-1] != '\n' {
		out = append(out, nl...) // the document ended without a newline
	}
	out = append(out, line...)
	if sep {
		out = append(out, nl...)
	}
	return append(out, src[at:]...), nil
}

// entry is one top-level key = value.
type entry struct {
	key              []string // dotted key, unquoted
	line             int
	valStart, valEnd int
	next             int // offset of the line after the entry
}

type document struct {
	src     []byte
	entries []entry
	// table is the offset of the first table header's line, -1 if none.
	table int
	// tableComments is where the run of comment lines directly above the
	// first table header starts (== table when there is none).
	tableComments int
}

func (d *document) find(key string) (*entry, error) {
	var found *entry
	for i := range d.entries {
		e := &d.entries[i]
		if len(e.key) > 1 && e.key[0] == key {
			return nil, fmt.Errorf("tomledit: line %d: %s is used as a table (%s)", e.line, key, strings.Join(e.key, "."))
		}
		if len(e.key) == 1 && e.key[0] == key {
			if found != nil {
				return nil, fmt.Errorf("tomledit: line %d: %s is already defined on line %d", e.line, key, found.line)
			}
			found = e
		}
	}
	return found, nil
}

// insertionPoint is where a new top-level key goes, and whether a blank
// line should separate it from what follows (a table and its comments).
func (d *document) insertionPoint() (int, bool) {
	if n := len(d.entries); n > 0 {
		return d.entries[n-1].next, false
	}
	if d.table >= 0 {
		return d.tableComments, true
	}
	return len(d.src), false
}

// scanner walks the document byte by byte. It recognises only the
// structure needed to find where values begin and end.
type scanner struct {
	src  []byte
	i    int
	line int
}

func scan(src []byte) (*document, error) {
	s := &scanner{src: src, line: 1}
	if bytes.HasPrefix(src, []byte("\xef\xbb\xbf")) {
		s.i = 3
	}
	d := &document{src: src, table: -1}
	commentRun := -1 // start of the current run of comment-only lines
	for s.i < len(src) {
		lineStart := s.i
		s.skipSpace()
		switch c := s.peek(); {
		case c == '\n' || c == '\r':
			if err := s.eol(); err != nil {
				return nil, err
			}
			commentRun = -1
			continue
		case c == '#':
			s.skipComment()
			if err := s.eol(); err != nil {
				return nil, err
			}
			if commentRun < 0 {
				commentRun = lineStart
			}
			continue
		case c == '[':
			d.table = lineStart
			d.tableComments = lineStart
			if commentRun >= 0 {
				d.tableComments = commentRun
			}
			return d, nil
		}
		commentRun = -1
		e := entry{line: s.line}
		key, err := s.key()
		if err != nil {
			return nil, err
		}
		e.key = key
		s.skipSpace()
		if s.peek() != '=' {
			return nil, s.errorf("expected = after key %s", strings.Join(key, "."))
		}
		s.i++
		s.skipSpace()
		e.valStart = s.i
		if err := s.value(); err != nil {
			return nil, err
		}
		e.valEnd = s.i
		s.skipSpace()
		if s.peek() == '#' {
			s.skipComment()
		}
		if err := s.eol(); err != nil {
			return nil, err
		}
		e.next = s.i
		d.entries = append(d.entries, e)
	}
	return d, nil
}

const eof = -1

func (s *scanner) peek() int {
	if s.i >= len(s.src) {
		return eof
	}
	return int(s.src[s.i])
}

func (s *scanner) errorf(format string, args ...any) error {
	return fmt.Errorf("tomledit: line %d: %s", s.line, fmt.Sprintf(format, args...))
}

func (s *scanner) skipSpace() {
	for s.i < len(s.src) && (s.src[s.i] == ' ' || s.src[s.i] == '\t') {
		s.i++
	}
}

func (s *scanner) skipComment() {
	for s.i < len(s.src) && s.src[s.i] != '\n' && s.src[s.i] != '\r' {
		s.i++
	}
}

// eol consumes a line ending (or accepts the end of the document); any
// other byte is an error.
func (s *scanner) eol() error {
	switch s.peek() {
	case eof:
		return nil
	case '\n':
		s.i++
	case '\r':
		if s.i+1 < len(s.src) && s.src[s.i+1] == '\n' {
			s.i += 2
		} else {
			return s.errorf("carriage return without line feed")
		}
	default:
		return s.errorf("unexpected %q after the value", rune(s.src[s.i]))
	}
	s.line++
	return nil
}

// skipBlank skips whitespace, newlines and comments inside arrays and
// inline tables.
func (s *scanner) skipBlank() error {
	for {
		s.skipSpace()
		switch s.peek() {
		case '#':
			s.skipComment()
		case '\n', '\r':
			if err := s.eol(); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

func isBare(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// key reads a possibly dotted key and returns its unquoted parts.
func (s *scanner) key() ([]string, error) {
	var parts []string
	for {
		s.skipSpace()
		var part string
		switch c := s.peek(); {
		case c == '"' || c == '\'':
			start := s.i
			if err := s.singleLineString(byte(c)); err != nil {
				return nil, err
			}
			raw := string(s.src[start:s.i])
			part = Value{Raw: raw}.String()
		case c != eof && isBare(byte(c)):
			start := s.i
			for s.i < len(s.src) && isBare(s.src[s.i]) {
				s.i++
			}
			part = string(s.src[start:s.i])
		default:
			return nil, s.errorf("expected a key")
		}
		parts = append(parts, part)
		s.skipSpace()
		if s.peek() != '.' {
			return parts, nil
		}
		s.i++
	}
}

// value skips one TOML value of any type.
func (s *scanner) value() error {
	switch c := s.peek(); c {
	case eof, '\n', '\r', '#':
		return s.errorf("missing value")
	case '"', '\'':
		q := byte(c)
		if bytes.HasPrefix(s.src[s.i:], []byte{q, q, q}) {
			return s.multiLineString(q)
		}
		return s.singleLineString(q)
	case '[':
		return s.array()
	case '{':
		return s.inlineTable()
	}
	start := s.i
	for s.i < len(s.src) {
		c := s.src[s.i]
		if c == ' ' && isDate(s.src[start:s.i]) && s.i+3 < len(s.src) && isDigit(s.src[s.i+1]) && isDigit(s.src[s.i+2]) && s.src[s.i+3] == ':' {
			s.i++ // "1979-05-27 07:32:00": a datetime with a space
			continue
		}
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '#' || c == ',' || c == ']' || c == '}' {
			break
		}
		s.i++
	}
	if s.i == start {
		return s.errorf("missing value")
	}
	return nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isDate(b []byte) bool {
	if len(b) != 10 || b[4] != '-' || b[7] != '-' {
		return false
	}
	for _, i := range []int{0, 1, 2, 3, 5, 6, 8, 9} {
		if !isDigit(b[i]) {
			return false
		}
	}
	return true
}

func (s *scanner) singleLineString(q byte) error {
	s.i++
	for s.i < len(s.src) {
		switch c := s.src[s.i]; {
		case c == q:
			s.i++
			return nil
		case c == '\\' && q == '"':
			s.i += 2
		case c == '\n' || c == '\r':
			return s.errorf("unterminated string")
		default:
			s.i++
		}
	}
	return s.errorf("unterminated string")
}

func (s *scanner) multiLineString(q byte) error {
	delim := []byte{q, q, q}
	startLine := s.line
	s.i += 3
	for s.i < len(s.src) {
		switch c := s.src[s.i]; {
		case c == '\\' && q == '"':
			s.i++
			if s.i < len(s.src) && s.src[s.i] == '\n' {
				s.line++
			}
			s.i++
		case c == q && bytes.HasPrefix(s.src[s.i:], delim):
			s.i += 3
			// Up to two more quotes belong to the content: """a"""" is `a"`.
			for n := 0; n < 2 && s.peek() == int(q); n++ {
				s.i++
			}
			return nil
		default:
			if c == '\n' {
				s.line++
			}
			s.i++
		}
	}
	return fmt.Errorf("tomledit: line %d: unterminated multi-line string", startLine)
}

func (s *scanner) array() error {
	startLine := s.line
	s.i++
	for {
		if err := s.skipBlank(); err != nil {
			return err
		}
		switch s.peek() {
		case eof:
			return fmt.Errorf("tomledit: line %d: unterminated array", startLine)
		case ']':
			s.i++
			return nil
		}
		if err := s.value(); err != nil {
			return err
		}
		if err := s.skipBlank(); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		case eof:
			return fmt.Errorf("tomledit: line %d: unterminated array", startLine)
		default:
			return s.errorf("expected , or ] in array")
		}
	}
}

func (s *scanner) inlineTable() error {
	startLine := s.line
	s.i++
	for {
		if err := s.skipBlank(); err != nil {
			return err
		}
		switch s.peek() {
		case eof:
			return fmt.Errorf("tomledit: line %d: unterminated inline table", startLine)
		case '}':
			s.i++
			return nil
		}
		if _, err := s.key(); err != nil {
			return err
		}
		s.skipSpace()
		if s.peek() != '=' {
			return s.errorf("expected = in inline table")
		}
		s.i++
		s.skipSpace()
		if err := s.value(); err != nil {
			return err
		}
		if err := s.skipBlank(); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		case eof:
			return fmt.Errorf("tomledit: line %d: unterminated inline table", startLine)
		default:
			return s.errorf("expected , or } in inline table")
		}
	}
}

// literal formats v as a TOML value. A string keeps old's quote style
// (single-quoted literal strings stay literal) when its content allows.
func literal(v any, old string) (string, error) {
	switch x := v.(type) {
	case string:
		if strings.HasPrefix(old, "'") && !strings.HasPrefix(old, "'''") && canBeLiteral(x) {
			return "'" + x + "'", nil
		}
		return quoteBasic(x), nil
	case bool:
		return strconv.FormatBool(x), nil
	case int:
		return strconv.Itoa(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		s := strconv.FormatFloat(x, 'g', -1, 64)
		if !strings.ContainsAny(s, ".eEn") { // TOML floats need a dot or exponent
			s += ".0"
		}
		return s, nil
	}
	return "", fmt.Errorf("tomledit: cannot write a %T", v)
}

func canBeLiteral(s string) bool {
	for _, r := range s {
		if r == '\'' || r < 0x20 && r != '\t' || r == 0x7f {
			return false
		}
	}
	return utf8.ValidString(s)
}

// quoteBasic writes a TOML basic string. strconv.Quote is not used because
// Go's \x escapes are not TOML.
func quoteBasic(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// unquoteBasic reads a TOML basic string; its escapes are a subset of Go's
// except \e, which Go lacks.
func unquoteBasic(raw string) (string, error) {
	return strconv.Unquote(strings.ReplaceAll(raw, `\e`, `\x1b`))
}

func formatKey(k string) string {
	for i := 0; i < len(k); i++ {
		if !isBare(k[i]) {
			return quoteBasic(k)
		}
	}
	return k
}
