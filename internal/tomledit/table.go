package tomledit

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// The functions of this file edit a key inside a [table] (the migration
// config's [nodes.NAME] tables) with the same promise as Set: only the
// value's bytes change, or, for a table that does not exist yet, a new
// table is appended; every comment and every other byte stays.

// header is one [table] or [[array]] header line.
type header struct {
	path  []string
	array bool
	line  int
	next  int // offset of the line after the header
}

// fullEntry is a key = value with the table it stands in.
type fullEntry struct {
	entry
	table []string // nil for top-level keys
}

// scanDocument scans the whole document, tables included.
func scanDocument(src []byte) ([]header, []fullEntry, error) {
	s := &scanner{src: src, line: 1}
	if bytes.HasPrefix(src, []byte("\xef\xbb\xbf")) {
		s.i = 3
	}
	var heads []header
	var entries []fullEntry
	var table []string
	for s.i < len(src) {
		s.skipSpace()
		switch c := s.peek(); {
		case c == '\n' || c == '\r':
			if err := s.eol(); err != nil {
				return nil, nil, err
			}
			continue
		case c == '#':
			s.skipComment()
			if err := s.eol(); err != nil {
				return nil, nil, err
			}
			continue
		case c == '[':
			h := header{line: s.line}
			s.i++
			if s.peek() == '[' {
				h.array = true
				s.i++
			}
			path, err := s.key()
			if err != nil {
				return nil, nil, err
			}
			s.skipSpace()
			closing := "]"
			if h.array {
				closing = "]]"
			}
			if !bytes.HasPrefix(src[s.i:], []byte(closing)) {
				return nil, nil, s.errorf("expected %s after table name %s", closing, strings.Join(path, "."))
			}
			s.i += len(closing)
			s.skipSpace()
			if s.peek() == '#' {
				s.skipComment()
			}
			if err := s.eol(); err != nil {
				return nil, nil, err
			}
			h.path, h.next = path, s.i
			heads = append(heads, h)
			table = path
			continue
		}
		e := fullEntry{entry: entry{line: s.line}, table: table}
		key, err := s.key()
		if err != nil {
			return nil, nil, err
		}
		e.key = key
		s.skipSpace()
		if s.peek() != '=' {
			return nil, nil, s.errorf("expected = after key %s", strings.Join(key, "."))
		}
		s.i++
		s.skipSpace()
		e.valStart = s.i
		if err := s.value(); err != nil {
			return nil, nil, err
		}
		e.valEnd = s.i
		s.skipSpace()
		if s.peek() == '#' {
			s.skipComment()
		}
		if err := s.eol(); err != nil {
			return nil, nil, err
		}
		e.next = s.i
		entries = append(entries, e)
	}
	return heads, entries, nil
}

func hasPrefix(p, prefix []string) bool {
	return len(p) >= len(prefix) && slices.Equal(p[:len(prefix)], prefix)
}

// findInTable returns the entry that sets table.key in its own [table]
// section, and an error when the same key (or the table itself) is
// defined another way (a dotted key, an inline table, an array of
// tables), which this package does not rewrite.
func findInTable(heads []header, entries []fullEntry, table []string, key string) (*fullEntry, *header, error) {
	want := append(slices.Clone(table), key)
	name := strings.Join(table, ".")
	var found *fullEntry
	for i := range entries {
		e := &entries[i]
		full := append(slices.Clone(e.table), e.key...)
		switch {
		case slices.Equal(e.table, table) && len(e.key) == 1 && e.key[0] == key:
			if found != nil {
				return nil, nil, fmt.Errorf("tomledit: line %d: %s.%s is already defined on line %d", e.line, name, key, found.line)
			}
			found = e
		case hasPrefix(full, want) || (hasPrefix(want, full) && len(full) < len(want)):
			return nil, nil, fmt.Errorf("tomledit: line %d: %s.%s is written as %s there; edit it by hand", e.line, name, key, strings.Join(full, "."))
		}
	}
	var head *header
	for i := range heads {
		h := &heads[i]
		if h.array && hasPrefix(want, h.path) {
			return nil, nil, fmt.Errorf("tomledit: line %d: [[%s]] is an array of tables; edit it by hand", h.line, strings.Join(h.path, "."))
		}
		if slices.Equal(h.path, table) {
			if head != nil {
				return nil, nil, fmt.Errorf("tomledit: line %d: [%s] is already defined on line %d", h.line, name, head.line)
			}
			head = h
		}
	}
	return found, head, nil
}

// LookupIn finds key inside the table whose dotted name is table (e.g.
// ["nodes", "pve1"]). ok is false when it is absent.
func LookupIn(src []byte, table []string, key string) (v Value, ok bool, err error) {
	heads, entries, err := scanDocument(src)
	if err != nil {
		return Value{}, false, err
	}
	e, _, err := findInTable(heads, entries, table, key)
	if err != nil || e == nil {
		return Value{}, false, err
	}
	return Value{Raw: string(src[e.valStart:e.valEnd]), Line: e.line}, true, nil
}

// SetIn returns a copy of src in which key has the value v inside the
// table named by table (at least one part): the value is replaced in
// place; a missing key is added after the table's last key; a missing
// table is appended at the end of the document, after a blank line. src
// itself is never modified.
func SetIn(src []byte, table []string, key string, v any) ([]byte, error) {
	if len(table) == 0 {
		return Set(src, key, v)
	}
	if key == "" {
		return nil, fmt.Errorf("tomledit: empty key")
	}
	heads, entries, err := scanDocument(src)
	if err != nil {
		return nil, err
	}
	e, head, err := findInTable(heads, entries, table, key)
	if err != nil {
		return nil, err
	}
	if e != nil {
		old := src[e.valStart:e.valEnd]
		if bytes.ContainsAny(old, "\r\n") {
			return nil, fmt.Errorf("tomledit: line %d: %s.%s has a multi-line value; edit it by hand", e.line, strings.Join(table, "."), key)
		}
		lit, err := literal(v, string(old))
		if err != nil {
			return nil, err
		}
		return splice(src, e.valStart, e.valEnd, lit), nil
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
	if head != nil {
		at := head.next
		for i := range entries {
			if slices.Equal(entries[i].table, table) && entries[i].valStart > head.next {
				at = max(at, entries[i].next)
			}
		}
		prefix := ""
		if at > 0 && src[at-1] != '\n' {
			prefix = nl
		}
		return splice(src, at, at, prefix+line), nil
	}
	parts := make([]string, len(table))
	for i, p := range table {
		parts[i] = formatKey(p)
	}
	var out []byte
	out = append(out, src...)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, nl...)
	}
	if len(out) > 0 && !bytes.HasSuffix(out, []byte(nl+nl)) {
		out = append(out, nl...)
	}
	out = append(out, "["+strings.Join(parts, ".")+"]"+nl...)
	return append(out, line...), nil
}

func splice(src []byte, start, end int, with string) []byte {
	out := make([]byte, 0, len(src)+len(with))
	out = append(out, src[:start]...)
	out = append(out, with...)
	return append(out, src[end:]...)
}
