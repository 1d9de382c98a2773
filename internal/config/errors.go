package config

import (
	"fmt"
	"strings"
)

// Problem is one mistake in a configuration. Parse reports every problem
// at once, so an operator fixes a file in one round instead of one error
// per restart; tools such as `migration-ctl validate --json` can print the
// fields separately.
type Problem struct {
	// File is the config file's name, or "environment" for an environment
	// variable.
	File string `json:"file"`
	// Line and Column locate TOML syntax errors (1-based); zero otherwise,
	// because the decoded TOML no longer knows where a key was written.
	Line   int `json:"line,omitempty"`
	Column int `json:"column,omitempty"`
	// Key is the dotted TOML key (`endpoints."/api2/json/nodes/{node}/network".use_rust`)
	// or the environment variable's name.
	Key string `json:"key,omitempty"`
	// Value is the offending value as written, "" for tables and
	// "[redacted]" for secrets.
	Value string `json:"value,omitempty"`
	// Msg says what is wrong and, where one is close, the right spelling.
	Msg string `json:"message"`
	// Err is the underlying error, if any (for example a
	// *toml.DecodeError), kept for errors.As.
	Err error `json:"-"`
}

// String formats the problem as FILE[:LINE:COL]: KEY: message, the shape
// editors and grep understand.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", p.Line, p.Column)
	}
	if p.Key != "" {
		b.WriteString(": ")
		b.WriteString(p.Key)
	}
	b.WriteString(": ")
	b.WriteString(p.Msg)
	return b.String()
}

// ValidationError is what Parse returns for an invalid configuration: all
// problems found, in a stable order (syntax, then keys in sorted order,
// then environment variables), so the router's reload log, the CLI and the
// tests all show the same text.
type ValidationError struct {
	Problems []Problem
}

// Error lists one problem per line.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes the underlying errors so errors.As finds, say, the
// *toml.DecodeError of a syntax problem.
func (e *ValidationError) Unwrap() []error {
	var errs []error
	for _, p := range e.Problems {
		if p.Err != nil {
			errs = append(errs, p.Err)
		}
	}
	return errs
}
