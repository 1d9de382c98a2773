package pveschema

import (
	"fmt"
	"html/template"
	"io"
	"strings"
	"text/tabwriter"
)

// Status is what `status --json` and /status show about schema checking:
// which schema is in force and what it cannot check. Error is the load
// error of the configured file, if any (the embedded schema then serves).
type Status struct {
	// Source is "embedded" or the schema file's path.
	Source string `json:"source"`
	// Version is "PVE 9.1.3" or the file's "sha256:..." digest.
	Version string `json:"version"`
	// Methods is how many method+path pairs the schema describes.
	Methods int `json:"methods"`
	// Unchecked lists schema parts whose checks are skipped (never
	// violations).
	Unchecked []string `json:"unchecked,omitempty"`
	// Error is the configured file's load error; the embedded schema
	// serves while it is set.
	Error string `json:"error,omitempty"`
}

// StatusOf describes c and the error Load returned with it; Unchecked is
// the whole schema's list (Conformance.Status narrows it to the methods
// checked).
func StatusOf(c *Checker, loadErr error) Status {
	var st Status
	if c != nil {
		src := c.Source()
		st = Status{Source: src.Name, Version: src.Version, Methods: src.Methods, Unchecked: c.Unchecked()}
	}
	if loadErr != nil {
		st.Error = loadErr.Error()
	}
	return st
}

// htmlSection is the /compare page's schema section. Examples and paths
// come from backend answers: html/template escapes them.
var htmlSection = template.Must(template.New("schema").Parse(`<section id="schema">
<h2>Schema conformance</h2>
<p>Schema: {{.Source}} {{.Version}}. Rows marked baseline are broken by perl's answers too (PVE's own behaviour); the others are rust's to fix.</p>
{{- if .Violations}}
<table>
<thead><tr><th>template</th><th>method</th><th>backend</th><th>path</th><th>rule</th><th>count</th><th>example</th><th>baseline</th></tr></thead>
<tbody>
{{- range .Violations}}
<tr{{if .RustOnly}} class="rust-only"{{end}}><td>{{.Template}}</td><td>{{.Method}}</td><td>{{.Backend}}</td><td><code>{{.Path}}</code></td><td>{{.Rule}}</td><td>{{.Count}}</td><td><code>{{.Example}}</code></td><td>{{if .Baseline}}baseline{{end}}</td></tr>
{{- end}}
</tbody>
</table>
{{- else}}
<p>No violations.</p>
{{- end}}
</section>
`))

// WriteHTML writes the report as the /compare page's schema section.
func (r Report) WriteHTML(w io.Writer) error {
	return htmlSection.Execute(w, r)
}

// WriteText writes the report as `migration-ctl compare` prints it without
// --json: a header naming the schema, then one aligned row per violation,
// rust-only rows first.
func (r Report) WriteText(w io.Writer) error {
	if _, err := fmt.Fprintf(w, "schema: %s %s\n", r.Source, r.Version); err != nil {
		return err
	}
	if len(r.Violations) == 0 {
		_, err := fmt.Fprintln(w, "no schema violations")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BACKEND\tMETHOD\tTEMPLATE\tPATH\tRULE\tCOUNT\tBASELINE\tEXAMPLE")
	for _, v := range r.Violations {
		base := "no"
		if v.Baseline {
			base = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", v.Backend, v.Method, v.Template, v.Path, v.Rule, v.Count, base,
			strings.NewReplacer("\n", `\n`, "\t", `\t`, "\r", `\r`).Replace(v.Example))
	}
	return tw.Flush()
}
