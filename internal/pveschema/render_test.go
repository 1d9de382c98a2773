package pveschema

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func sampleReport() Report {
	t := NewTally()
	t.Record("/cluster/sdn/vnets", "GET", BackendPerl, []Violation{{Path: "data[].alias", Rule: RulePattern, Example: `"<script>alert(1)</script>"`}})
	t.Record("/cluster/sdn/vnets", "GET", BackendRust, []Violation{
		{Path: "data[].alias", Rule: RulePattern, Example: `"x"`},
		{Path: "data[].tag", Rule: RuleType, Example: "\"a\tb\nc\""},
	})
	return t.Report(Source{Name: "embedded", Version: "PVE 9.1.3"})
}

func TestWriteHTMLEscapesAnswers(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if strings.Contains(out, "<script>") {
		t.Fatalf("answer text not escaped:\n%s", out)
	}
	for _, want := range []string{`<section id="schema">`, "embedded PVE 9.1.3", `<tr class="rust-only"><td>/cluster/sdn/vnets</td><td>GET</td><td>rust</td><td><code>data[].tag</code></td><td>type</td><td>1</td>`, "&lt;script&gt;", ">baseline<"} {
		if !strings.Contains(out, want) {
			t.Errorf("HTML lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	if err := (Report{Source: "embedded", Version: "PVE 9.1.3"}).WriteHTML(&b); err != nil || !strings.Contains(b.String(), "No violations.") {
		t.Fatalf("empty report: %v\n%s", err, b.String())
	}
}

func TestWriteText(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteText(&b); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 5 || lines[0] != "schema: embedded PVE 9.1.3" || !strings.HasPrefix(lines[1], "BACKEND") {
		t.Fatalf("text:\n%s", b.String())
	}
	if !strings.HasPrefix(lines[2], "rust ") || !strings.Contains(lines[2], "data[].tag") || !strings.Contains(lines[2], `"a\tb\nc"`) {
		t.Fatalf("first row is not rust's own, or control characters not escaped: %q", lines[2])
	}
	b.Reset()
	_ = (Report{Source: "x", Version: "y"}).WriteText(&b)
	if b.String() != "schema: x y\nno schema violations\n" {
		t.Fatalf("empty: %q", b.String())
	}
}

func TestStatusOf(t *testing.T) {
	c, err := Embedded()
	if err != nil {
		t.Fatal(err)
	}
	st := StatusOf(c, errors.New("api_schema /x: no such file"))
	if st.Source != "embedded" || st.Version != "PVE 9.1.3" || st.Methods != 649 || len(st.Unchecked) == 0 || st.Error != "api_schema /x: no such file" {
		t.Fatalf("%+v", st)
	}
	if st := StatusOf(c, nil); st.Error != "" {
		t.Fatalf("%+v", st)
	}
}
