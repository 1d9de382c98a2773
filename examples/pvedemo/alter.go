package pvedemo

import (
	"encoding/json"
	"fmt"
	"strings"
)

// alterAnswer applies the diverge and noise faults to a GET answer's data.
// Untouched answers are returned as they are.
func (s *Server) alterAnswer(data any) any {
	f := s.Faults()
	if f.Diverge == "" && f.Noise == "" {
		return data
	}
	b, err := json.Marshal(data)
	if err != nil {
		return data
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return data
	}
	if k := fieldName(f.Diverge); k != "" {
		v = walkField(v, k, diverged)
	}
	if k := fieldName(f.Noise); k != "" {
		v = walkField(v, k, func(any) any {
			s.mu.Lock()
			n := s.rng.Uint64()
			s.mu.Unlock()
			return fmt.Sprintf("noise-%016x", n)
		})
	}
	return v
}

// fieldName is the last name of a field path ("data[].mtu" → "mtu").
func fieldName(p string) string {
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		p = p[i+1:]
	}
	return strings.TrimSuffix(p, "[]")
}

// walkField replaces the value of key in every object of v.
func walkField(v any, key string, fn func(any) any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if k == key {
				x[k] = fn(e)
			} else {
				x[k] = walkField(e, key, fn)
			}
		}
	case []any:
		for i, e := range x {
			x[i] = walkField(e, key, fn)
		}
	}
	return v
}

// diverged is a value of the same JSON type that differs from v.
func diverged(v any) any {
	switch x := v.(type) {
	case string:
		return x + "-diverged"
	case float64:
		return x + 1
	case bool:
		return !x
	case nil:
		return "diverged"
	}
	return "diverged"
}
