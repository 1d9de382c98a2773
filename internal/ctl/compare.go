package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/pve-migration/router/internal/compare"
	pb "github.com/pve-migration/router/proto/pvemigration/v1"
)

func compareCommand() *command {
	return &command{
		name:    "compare",
		summary: "show the shadow comparison: where rust answers GETs unlike perl",
		details: `Asks the running router (its gRPC API, --router) for the shadow comparison
report ([compare] in the config file): per template, how many sampled GETs
were compared, matched, mismatched, were noise, failed or were skipped, and
per field path how often it differed, of what kind (value, type = number vs
numeric string, shape, missing, extra, status, noise), with one example pair.
Rows come worst first. The same report is on the admin port as /compare
(HTML) and /compare.json; --json prints that document.

Before you advance a phase, let compare run for a day and read this.`,
		examples: []string{
			prog + " compare",
			prog + " compare --json --router unix:/run/migration-router/grpc.sock",
		},
		maxArgs: 0,
		define: func(fs *flag.FlagSet) runFunc {
			jsonOut := fs.Bool("json", false, "print the report as JSON (the /compare.json document)")
			router := fs.String("router", defaultRouter(), "the router's gRPC `ADDR` (host:port or unix:/path)")
			timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for the router")
			return func(a *app, _ configFlag, _ []string) int {
				return a.compare(*router, *timeout, *jsonOut)
			}
		},
	}
}

func (a *app) compare(addr string, timeout time.Duration, jsonOut bool) int {
	raw, err := fetchCompare(a.ctx, addr, timeout)
	if err != nil {
		fmt.Fprintf(a.stderr, "error: the router is not reachable at %s: %s\n", addr, grpcMessage(err))
		return ExitFailure
	}
	var s compare.Summary
	if err := json.Unmarshal(raw, &s); err != nil {
		fmt.Fprintf(a.stderr, "error: the router's compare report is not valid JSON: %v\n", err)
		return ExitFailure
	}
	if jsonOut {
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			fmt.Fprintf(a.stderr, "error: %v\n", err)
			return ExitFailure
		}
		buf.WriteByte('\n')
		_, _ = a.stdout.Write(buf.Bytes())
		return ExitOK
	}
	writeCompareTable(a.stdout, s, a.style)
	if s.Schema != nil {
		fmt.Fprintln(a.stdout)
		_ = s.Schema.WriteText(a.stdout)
	}
	return ExitOK
}

func fetchCompare(ctx context.Context, addr string, timeout time.Duration) ([]byte, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := pb.NewCompareServiceClient(conn).GetCompare(ctx, &pb.GetCompareRequest{})
	if err != nil {
		return nil, err
	}
	return resp.GetReportJson(), nil
}

// writeCompareTable prints the report as /compare shows it: a header line,
// the templates worst first, their differing fields, and the reasons of
// errors and skips.
func writeCompareTable(w io.Writer, s compare.Summary, st style) {
	state := "off"
	if s.Enabled {
		state = "on"
	}
	fmt.Fprintf(w, "phase %s · compare %s · sample %g%% · window %s – %s (%s)\n\n", s.Phase, state, s.SamplePercent,
		s.Since.UTC().Format("2006-01-02 15:04:05"), s.Until.UTC().Format("15:04:05 UTC"), s.Until.Sub(s.Since).Round(time.Second))
	if len(s.Templates) == 0 {
		fmt.Fprintln(w, "nothing compared yet")
		if !s.Enabled {
			fmt.Fprintln(w, "compare is off: set [compare] enabled = true in the config file")
		}
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TEMPLATE\tMETHOD\tCOMPARED\tMATCHED\tMISMATCHED\tRATE\tNOISE\tERRORS\tSKIPPED")
	var fields, reasons bool
	for _, t := range s.Templates {
		rate := "-"
		if t.Compared > 0 {
			rate = fmt.Sprintf("%.2f%%", 100*t.MismatchRate())
		}
		mis := fmt.Sprint(t.Mismatched)
		if t.Mismatched > 0 {
			mis = st.bad(mis)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%d\t%d\t%d\n", t.Template, t.Method, t.Compared, t.Matched, mis, rate, t.Noise, t.Errors, t.Skipped)
		fields = fields || len(t.Fields) > 0
		reasons = reasons || len(t.Reasons) > 0
	}
	_ = tw.Flush()
	if fields {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TEMPLATE\tPATH\tKIND\tCOUNT\tPERL\tRUST")
		for _, t := range s.Templates {
			for _, f := range t.Fields {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", t.Template, f.Path, f.Kind, f.Count, f.Example.Perl, f.Example.Rust)
			}
		}
		_ = tw.Flush()
	}
	if reasons {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TEMPLATE\tERROR OR SKIP\tCOUNT")
		for _, t := range s.Templates {
			rs := slices.Sorted(maps.Keys(t.Reasons))
			for _, r := range rs {
				fmt.Fprintf(tw, "%s\t%s\t%d\n", t.Template, r, t.Reasons[r])
			}
		}
		_ = tw.Flush()
	}
}
