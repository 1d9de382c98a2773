package compare

import (
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"

	"github.com/pve-migration/router/internal/pveschema"
)

// page is the /compare report: plain HTML and CSS, no script, so it works
// in any browser and in a text-mode one, and shows nothing a script could
// leak. Templates come worst first, as Summary sorts them.
var page = template.Must(template.New("compare").Funcs(template.FuncMap{
	"pct": func(n, d uint64) string {
		if d == 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f%%", 100*float64(n)/float64(d))
	},
	"when": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"span": func(a, b time.Time) string { return b.Sub(a).Round(time.Second).String() },
	"raw":  func(b []byte) string { return string(b) },
	// schema renders the schema section with pveschema's own template,
	// which escapes every value taken from an answer.
	"schema": func(r *pveschema.Report) (template.HTML, error) {
		var b strings.Builder
		if err := r.WriteHTML(&b); err != nil {
			return "", err
		}
		return template.HTML(b.String()), nil
	},
	"anyReasons": func(ts []TemplateSummary) bool {
		for _, t := range ts {
			if len(t.Reasons) > 0 {
				return true
			}
		}
		return false
	},
}).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Shadow comparison – pve-migration-router</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #bbb;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#eee}
td{white-space:nowrap}
td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.bad td{background:#fde8e8}
tr.ok td{background:#eaf6ea}
tr.rust-only td{background:#fde8e8}
code{font-size:90%}
.kind-noise{color:#777}
</style>
</head>
<body>
<h1>Shadow comparison</h1>
<p id="meta">Phase <b id="phase">{{.Phase}}</b> ·
compare <b id="enabled">{{if .Enabled}}on{{else}}off{{end}}</b> ·
sample rate <b id="sample">{{.SamplePercent}}%</b> ·
window <b id="window">{{when .Since}} – {{when .Until}} ({{span .Since .Until}})</b></p>
<p>Each sampled GET is asked again of the backend that did not serve it and twice of the one that did.
A field that differs between the two answers of one backend is <i>noise</i>; one that differs only across backends is a <i>mismatch</i>.
Before you advance a phase, let this run for a day and read the worst rows first.</p>

<h2>Templates, worst first</h2>
<table id="templates">
<thead><tr><th>template</th><th>method</th><th>category</th><th>compared</th><th>matched</th><th>mismatched</th><th>mismatch rate</th><th>noise</th><th>errors</th><th>skipped</th></tr></thead>
<tbody>
{{range .Templates}}<tr class="{{if .Mismatched}}bad{{else if .Compared}}ok{{end}}"><td><code>{{.Template}}</code></td><td>{{.Method}}</td><td>{{.Category}}</td><td class="n">{{.Compared}}</td><td class="n">{{.Matched}}</td><td class="n mismatched">{{.Mismatched}}</td><td class="n">{{pct .Mismatched .Compared}}</td><td class="n">{{.Noise}}</td><td class="n">{{.Errors}}</td><td class="n">{{.Skipped}}</td></tr>
{{else}}<tr><td colspan="10">nothing compared yet</td></tr>
{{end}}</tbody>
</table>

<h2>Fields</h2>
<table id="fields">
<thead><tr><th>template</th><th>path</th><th>kind</th><th>count</th><th>perl</th><th>rust</th></tr></thead>
<tbody>
{{range $t := .Templates}}{{range .Fields}}<tr class="kind-{{.Kind}}"><td><code>{{$t.Template}}</code></td><td><code>{{.Path}}</code></td><td>{{.Kind}}</td><td class="n">{{.Count}}</td><td><code>{{raw .Example.Perl}}</code></td><td><code>{{raw .Example.Rust}}</code></td></tr>
{{end}}{{end}}</tbody>
</table>

{{if anyReasons .Templates}}<h2>Errors and skips</h2>
<table id="reasons">
<thead><tr><th>template</th><th>reason</th><th>count</th></tr></thead>
<tbody>
{{range $t := .Templates}}{{range $r, $n := .Reasons}}<tr><td><code>{{$t.Template}}</code></td><td>{{$r}}</td><td class="n">{{$n}}</td></tr>
{{end}}{{end}}</tbody>
</table>{{end}}

<h2>Categories</h2>
<table id="categories">
<thead><tr><th>category</th><th>compared</th><th>matched</th><th>mismatched</th><th>noise</th><th>errors</th><th>skipped</th></tr></thead>
<tbody>
{{range .Categories}}<tr><td>{{.Category}}</td><td class="n">{{.Compared}}</td><td class="n">{{.Matched}}</td><td class="n">{{.Mismatched}}</td><td class="n">{{.Noise}}</td><td class="n">{{.Errors}}</td><td class="n">{{.Skipped}}</td></tr>
{{end}}</tbody>
</table>
{{if .Schema}}{{schema .Schema}}{{end}}
<p><a href="/compare.json">/compare.json</a> has the same data; <code>migration-ctl compare</code> prints it as a table.</p>
</body>
</html>
`))

// WriteHTML renders s as the /compare page.
func WriteHTML(w io.Writer, s Summary) error {
	if err := page.Execute(w, s); err != nil {
		return fmt.Errorf("render compare page: %w", err)
	}
	return nil
}
