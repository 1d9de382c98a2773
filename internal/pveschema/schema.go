// Package pveschema checks PVE API answers against PVE's own API schema,
// by PVE's own rules.
//
// PVE publishes the return schema of every API method (the API viewer's
// apidoc.js; its tree is the same as pve-docs' apidata.js). Those schemas are
// not JSON Schema: pve-common's PVE/JSONSchema.pm (check_prop, check_object,
// check_type) gives them their meaning, and that meaning is lenient where
// JSON Schema is strict ("24" is an integer, 1 and 0 are booleans, extra keys
// are allowed) and strict where JSON Schema is lenient (every property is
// required unless it says optional). A typed PVE client breaks where an
// answer leaves these rules, so the router checks the answers that the
// shadow comparison already holds, rust's and perl's alike, perl's being the
// baseline: PVE does not check its own answers over HTTP.
//
// The package is pure apart from Load and LoadFile: Parse turns a schema
// file into a Schema, Compile turns it into a Checker once per config load
// (regular expressions translated from Perl, formats resolved, methods
// looked up by template), and Checker.Check decodes one answer and walks
// it, never compiling anything. Tally adds the violations of many answers
// up for the compare report, perl's marking the baseline.
package pveschema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Schema is PVE's API schema as the API viewer ships it, reduced to what a
// check needs: the return schema of every method, by path template and
// HTTP method. It is immutable once parsed.
type Schema struct {
	// returns maps "METHOD /path/{var}" to the method's raw `returns`
	// schema, decoded as encoding/json decodes into any.
	returns map[string]map[string]any
}

// apiNode is one node of the API viewer's tree.
type apiNode struct {
	Path     string                     `json:"path"`
	Info     map[string]json.RawMessage `json:"info"`
	Children []apiNode                  `json:"children"`
}

// methodInfo is the part of a method's description the checker uses.
type methodInfo struct {
	Returns json.RawMessage `json:"returns"`
}

// Parse reads a schema in any of the forms PVE ships it in: the API
// viewer's apidoc.js (`const apiSchema = [ ... ];` followed by viewer code
// that is not JSON), pve-docs' apidata.js, or the bare JSON array
// (apidata.json). The array is taken by matching brackets outside strings,
// never by running the script or cutting it at a line.
func Parse(data []byte) (*Schema, error) {
	arr, err := extractArray(data)
	if err != nil {
		return nil, err
	}
	var tree []apiNode
	if err := json.Unmarshal(arr, &tree); err != nil {
		return nil, fmt.Errorf("schema tree is not valid JSON: %w", err)
	}
	s := &Schema{returns: make(map[string]map[string]any)}
	if err := s.add(tree); err != nil {
		return nil, err
	}
	if len(s.returns) == 0 {
		return nil, errors.New("schema tree holds no API method")
	}
	return s, nil
}

func (s *Schema) add(nodes []apiNode) error {
	for _, n := range nodes {
		for m, raw := range n.Info {
			method := strings.ToUpper(m)
			var mi methodInfo
			if err := json.Unmarshal(raw, &mi); err != nil {
				return fmt.Errorf("schema of %s %s: %w", method, n.Path, err)
			}
			ret := map[string]any{}
			if len(mi.Returns) > 0 && !bytes.Equal(bytes.TrimSpace(mi.Returns), []byte("null")) {
				if err := json.Unmarshal(mi.Returns, &ret); err != nil {
					return fmt.Errorf("returns of %s %s: %w", method, n.Path, err)
				}
			}
			s.returns[method+" "+n.Path] = ret
		}
		if err := s.add(n.Children); err != nil {
			return err
		}
	}
	return nil
}

// Methods is the number of method+path pairs in the schema (649 for PVE
// 9.1.3); status shows it so that a truncated file is noticed.
func (s *Schema) Methods() int { return len(s.returns) }

// extractArray finds the schema's top-level JSON array in data. A file that
// starts with '[' is the array itself; otherwise the array is the first '['
// after "apiSchema", ended by its matching ']' with strings skipped (PVE's
// descriptions hold brackets and quotes).
func extractArray(data []byte) ([]byte, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n\ufeff")
	start := -1
	if len(trimmed) > 0 && trimmed[0] == '[' {
		data = trimmed
		start = 0
	} else {
		i := bytes.Index(data, []byte("apiSchema"))
		if i < 0 {
			return nil, errors.New("no JSON array and no `apiSchema` variable found (expected PVE's apidoc.js, apidata.js or apidata.json)")
		}
		j := bytes.IndexByte(data[i:], '[')
		if j < 0 {
			return nil, errors.New("`apiSchema` is not followed by an array")
		}
		start = i + j
	}
	depth := 0
	var quote byte
	for i := start; i < len(data); i++ {
		c := data[i]
		if quote != 0 {
			switch c {
			case '\\':
				i++
			case quote:
				quote = 0
			}
			continue
		}
		switch c {
		case '"', '\'':
			quote = c
		case '[', '{':
			depth++
		case ']', '}':
			depth--
			if depth == 0 {
				return data[start : i+1], nil
			}
		}
	}
	return nil, errors.New("schema array is not closed (file truncated?)")
}
