package ctl

import (
	"io"
	"strings"
)

// style colours words for a human at a terminal. Colour is only on when
// stdout is a terminal, NO_COLOR is unset (https://no-color.org) and TERM
// is not "dumb": piped output, logs and golden files stay plain text.
type style struct{ on bool }

func newStyle(w io.Writer, env func(string) string) style {
	return style{on: isTerminal(w) && env("NO_COLOR") == "" && env("TERM") != "dumb"}
}

func (s style) wrap(code, text string) string {
	if !s.on || text == "" {
		return text
	}
	return "\x1b[" + code + "m" + text + "\x1b[0m"
}

func (s style) good(t string) string { return s.wrap("32", t) }
func (s style) bad(t string) string  { return s.wrap("31", t) }
func (s style) warn(t string) string { return s.wrap("33", t) }
func (s style) bold(t string) string { return s.wrap("1", t) }

// backend colours rust and perl apart, the one thing an operator scans for.
func (s style) backend(b string) string {
	if strings.EqualFold(b, "rust") {
		return s.wrap("36", b)
	}
	return b
}

// table aligns columns by their visible width, so that coloured cells
// (whose escape codes tabwriter would count) line up, and never leaves
// trailing blanks.
type table struct {
	rows [][]string
	// right aligns every column but the first to the right (numbers).
	right bool
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer, indent string) {
	var widths []int
	for _, r := range t.rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], visibleWidth(c))
		}
	}
	var b strings.Builder
	for _, r := range t.rows {
		var line strings.Builder
		line.WriteString(indent)
		for i, c := range r {
			pad := strings.Repeat(" ", widths[i]-visibleWidth(c))
			if i > 0 {
				line.WriteString("  ")
			}
			if t.right && i > 0 {
				line.WriteString(pad + c)
			} else {
				line.WriteString(c + pad)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " "))
		b.WriteString("\n")
	}
	_, _ = io.WriteString(w, b.String())
}

// visibleWidth counts the runes a terminal shows: ANSI colour sequences
// take no room.
func visibleWidth(s string) int {
	n, esc := 0, false
	for _, r := range s {
		switch {
		case esc:
			esc = r != 'm'
		case r == '\x1b':
			esc = true
		default:
			n++
		}
	}
	return n
}
