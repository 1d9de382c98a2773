package grafana

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pve-migration/router/examples/pvedemo"
	"github.com/pve-migration/router/internal/logsink"
	"github.com/pve-migration/router/internal/routerapp"
	"github.com/pve-migration/router/internal/telemetry"
)

const dashboardFile = "pve-migration-dashboard.json"

type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name     string `json:"name"`
			Type     string `json:"type"`
			Query    any    `json:"query"`
			AllValue string `json:"allValue"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID   string `json:"refId"`
		Expr    string `json:"expr"`
		Instant bool   `json:"instant"`
	} `json:"targets"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// query is one panel target.
type query struct {
	panel, ref, expr string
}

func queries(d dashboard) []query {
	var qs []query
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			qs = append(qs, query{panel: p.Title, ref: tg.RefID, expr: tg.Expr})
		}
	}
	return qs
}

var metricRe = regexp.MustCompile(`\bpve_migration_[a-z_]+\b`)

// family maps a sample name to its metric family (histogram suffixes).
func family(name string) string {
	for _, s := range []string{"_bucket", "_count", "_sum"} {
		if strings.HasSuffix(name, s) && strings.Contains(name, "_duration_seconds") {
			return strings.TrimSuffix(name, s)
		}
	}
	return name
}

// TestDashboardStructure checks what Grafana would otherwise find out when
// an operator imports the file: unique panel ids, every panel on the
// dashboard's Prometheus variable, unique refIds, the grid, the node
// variable, and a panel for each thing the issue lists.
func TestDashboardStructure(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q", d.UID, d.Title)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" || vars["instance"] != "query" {
		t.Errorf("templating variables %v, want datasource (datasource) and instance (query)", vars)
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H <= 0 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want the ${datasource} variable", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: refId %q empty or repeated", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			if !strings.Contains(tg.Expr, `instance=~"$instance"`) {
				t.Errorf("panel %q %s: the query ignores the node variable: %s", p.Title, tg.RefID, tg.Expr)
			}
		}
	}
	// What the issue asks the dashboard to show, by the metric behind it.
	want := map[string]string{
		"requests by backend and category": "pve_migration_requests_total",
		"rust success rate":                "pve_migration_requests_total",
		"fallback rate":                    telemetry.MetricFallbacks,
		"latency per backend (p50/p99)":    telemetry.MetricUpstreamDuration,
		"decision latency":                 telemetry.MetricDecisionDuration,
		"reloads":                          telemetry.MetricConfigReloads,
		"phase per node":                   telemetry.MetricPhaseInfo,
		"compare":                          "pve_migration_compare_total",
		"gate":                             "pve_migration_gate_trips_total",
	}
	used := map[string]bool{}
	for _, q := range queries(d) {
		for _, m := range metricRe.FindAllString(q.expr, -1) {
			used[family(m)] = true
		}
		if strings.Contains(q.expr, "histogram_quantile(0.99") {
			used["p99:"+family(metricRe.FindString(q.expr))] = true
		}
		if strings.Contains(q.expr, "histogram_quantile(0.5") {
			used["p50:"+family(metricRe.FindString(q.expr))] = true
		}
	}
	for what, m := range want {
		if !used[m] {
			t.Errorf("no panel shows %s (%s)", what, m)
		}
	}
	for _, h := range []string{telemetry.MetricUpstreamDuration, telemetry.MetricDecisionDuration} {
		if !used["p50:"+h] || !used["p99:"+h] {
			t.Errorf("%s: want p50 and p99 panels", h)
		}
	}
}

// prometheusBin is Debian's prometheus (scripts/prometheus.sh deps), or
// $PROMETHEUS_BIN.
func prometheusBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PROMETHEUS_BIN"); p != "" {
		return p
	}
	p, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus not on PATH: `make test-dashboard` installs Debian's prometheus package (or set PROMETHEUS_BIN)")
	}
	return p
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func demoBackend(t *testing.T, flavor pvedemo.Flavor, state string) (*pvedemo.Server, string) {
	t.Helper()
	srv, err := pvedemo.New(pvedemo.Options{Flavor: flavor, StateDir: state, Seed: 17})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv, "http://" + ln.Addr().String()
}

func waitFor(t *testing.T, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// promResult is the part of a Prometheus API answer the test reads.
type promResult struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	} `json:"data"`
}

func promGet(base, path string, params url.Values) (promResult, error) {
	var r promResult
	resp, err := http.Get(base + path + "?" + params.Encode())
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("%s: %w: %s", path, err, body)
	}
	return r, nil
}

// hasNumber reports whether a vector result has a sample that is a number
// (histogram_quantile and ratios give NaN on an empty window).
func (r promResult) hasNumber() bool {
	for _, s := range r.Data.Result {
		if str, ok := s.Value[1].(string); ok {
			if f, err := strconv.ParseFloat(str, 64); err == nil && !math.IsNaN(f) {
				return true
			}
		}
	}
	return false
}

// exportedFamilies reads the router's /metrics and returns its families.
func exportedFamilies(t *testing.T, admin string) map[string]bool {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	fams := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			fams[f[2]] = true
		}
	}
	return fams
}

// TestDashboardQueriesAgainstPrometheus runs the dashboard for real: the
// router (in-process, embedded data plane) in front of the two demo
// backends, traffic of every category with Rust failing some reads (so
// there are fallbacks), a rejected and an accepted config edit, and
// Debian's Prometheus scraping the admin port with rules.yml loaded. Every
// panel query, with Grafana's variables filled in as Grafana would, must
// parse; every query over metric families this router exports must return
// numbers. Queries over families it does not export yet (compare, gate:
// other parts of the contract) are only checked for validity, and listed.
func TestDashboardQueriesAgainstPrometheus(t *testing.T) {
	promBin := prometheusBin(t)
	if testing.Short() {
		t.Skip("-short: the Prometheus run takes about a minute")
	}
	d := loadDashboard(t)

	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	_, perl := demoBackend(t, pvedemo.FlavorPerl, state)
	rustSrv, rust := demoBackend(t, pvedemo.FlavorRust, state)
	// Some Rust reads fail: they fall back to Perl (pve_migration_fallbacks_total).
	if err := rustSrv.SetFaults(pvedemo.Faults{ErrorRate: 0.25}); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "network-migration.conf")
	writeConf := func(body string) {
		tmp := conf + ".tmp"
		if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, conf); err != nil {
			t.Fatal(err)
		}
	}
	// Compare on for every read and the gate on with limits this traffic
	// does not break, so that their panels have data too.
	good := fmt.Sprintf("phase = \"rust-read-only\"\nperl_api_base_url = %q\n"+
		"[compare]\nenabled = true\nsample_percent = 100\n"+
		"[gate]\nenabled = true\nmax_rust_error_rate = 1.0\nmax_latency_ratio = 1000\nmax_mismatch_rate = 1.0\n", perl)
	writeConf(good)

	admin, proxy := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	var routerLog logsink.Buffer
	code := make(chan int, 1)
	go func() {
		code <- routerapp.Run(ctx, []string{"--config", conf, "--grpc-listen", "unix:" + filepath.Join(dir, "extproc.sock"),
			"--admin-listen", admin, "--proxy-listen", proxy, "--perl-upstream", perl, "--rust-upstream", rust,
			"--reload-interval", "100ms", "--log-level", "warn", "--node", "pve1", "--kill-switch", filepath.Join(dir, "kill"), "--state-file", "off"}, io.Discard, &routerLog)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case c := <-code:
			if c != routerapp.ExitOK {
				t.Errorf("router exited %d; log:\n%s", c, routerLog.String())
			}
		case <-time.After(20 * time.Second):
			t.Error("router did not stop")
		}
	})
	waitFor(t, "router /health", 30*time.Second, func() bool {
		resp, err := http.Get("http://" + admin + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	// Traffic until the test ends: every category, reads and writes.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := &http.Client{Timeout: 10 * time.Second}
		defer c.CloseIdleConnections()
		reqs := []struct{ method, path, body string }{
			{"GET", "/api2/json/nodes/pve1/network", ""},
			{"GET", "/api2/json/nodes/pve1/network/eno1", ""},
			{"GET", "/api2/extjs/nodes/pve1/network", ""},
			{"GET", "/api2/json/cluster/sdn/vnets", ""},
			{"GET", "/api2/json/nodes/pve1/qemu", ""},
			{"PUT", "/api2/json/nodes/pve1/network/eno1", "type=eth&mtu=1500"},
		}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			r := reqs[i%len(reqs)]
			req, _ := http.NewRequest(r.method, "http://"+proxy+r.path, strings.NewReader(r.body))
			if r.body != "" {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			if resp, err := c.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })

	// Real Prometheus: scrape every second, with the alert rules loaded.
	rules, err := filepath.Abs("../prometheus/rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	promAddr := freeAddr(t)
	promConf := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(promConf, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: pve-migration-router
    static_configs:
      - targets: [%q]
`, rules, admin)), 0o644); err != nil {
		t.Fatal(err)
	}
	var promLog logsink.Buffer
	pctx, pcancel := context.WithCancel(context.Background())
	prom := exec.CommandContext(pctx, promBin, "--config.file="+promConf, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	prom.Stdout, prom.Stderr = &promLog, &promLog
	if err := prom.Start(); err != nil {
		t.Fatalf("start %s: %v", promBin, err)
	}
	promDone := make(chan error, 1)
	go func() { promDone <- prom.Wait() }()
	t.Cleanup(func() {
		pcancel()
		<-promDone
	})
	base := "http://" + promAddr
	waitFor(t, "Prometheus ready", 60*time.Second, func() bool {
		select {
		case err := <-promDone:
			promDone <- err
			t.Fatalf("prometheus exited: %v\n%s", err, promLog.String())
		default:
		}
		resp, err := http.Get(base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	// A rejected edit, then the good file again (both reload results),
	// once Prometheus has seen the counters at 0, as it would on a node.
	waitFor(t, "a scrape with no rejected reload", 60*time.Second, func() bool {
		r, err := promGet(base, "/api/v1/query", url.Values{"query": {telemetry.MetricConfigReloads + `{result="error"} == 0`}})
		return err == nil && len(r.Data.Result) == 1
	})
	writeConf("phase = \"rust-read-onyl\"\n")
	waitFor(t, "a rejected reload", 30*time.Second, func() bool {
		return strings.Contains(routerLog.String(), "config reload failed")
	})
	writeConf(good + "# edited\n")

	// The rules file loads in a real Prometheus, every rule healthy.
	t.Run("rules loaded", func(t *testing.T) {
		var rr struct {
			Data struct {
				Groups []struct {
					Rules []struct {
						Name, Health, LastError string
					} `json:"rules"`
				} `json:"groups"`
			} `json:"data"`
		}
		waitFor(t, "rules evaluated", 30*time.Second, func() bool {
			resp, err := http.Get(base + "/api/v1/rules")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			if err := json.NewDecoder(resp.Body).Decode(&rr); err != nil || len(rr.Data.Groups) == 0 {
				return false
			}
			for _, r := range rr.Data.Groups[0].Rules {
				if r.Health != "ok" {
					return false
				}
			}
			return true
		})
		if n := len(rr.Data.Groups[0].Rules); n < 3 {
			t.Errorf("%d rules loaded", n)
		}
	})

	// The families the traffic above must produce, compare and gate
	// included.
	var fams map[string]bool
	mustExport := []string{telemetry.MetricRequests, telemetry.MetricFallbacks, telemetry.MetricUpstreamDuration,
		telemetry.MetricDecisionDuration, telemetry.MetricConfigReloads, telemetry.MetricPhaseInfo,
		"pve_migration_dataplane_retries_total", "pve_migration_dataplane_ext_proc_fail_open_total",
		"pve_migration_compare_total", telemetry.MetricSchemaViolations, "pve_migration_gate_trips_total"}
	waitFor(t, "the router to export "+strings.Join(mustExport, ", "), 60*time.Second, func() bool {
		fams = exportedFamilies(t, admin)
		for _, f := range mustExport {
			if !fams[f] {
				return false
			}
		}
		return true
	})

	// Grafana's variables as Grafana fills them: one node selected.
	// Grafana escapes a regex variable's metacharacters with a doubled
	// backslash inside the PromQL string (127\\.0\\.0\\.1).
	fill := strings.NewReplacer("$instance", strings.ReplaceAll(regexp.QuoteMeta(admin), `\`, `\\`), "$__rate_interval", "15s", "$__interval", "5s", "$__range", "5m")
	t.Run("node variable", func(t *testing.T) {
		waitFor(t, "label_values(pve_migration_phase_info, instance)", 30*time.Second, func() bool {
			resp, err := http.Get(base + "/api/v1/label/instance/values?" + url.Values{"match[]": {telemetry.MetricPhaseInfo}}.Encode())
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			var r struct {
				Status string   `json:"status"`
				Data   []string `json:"data"`
			}
			return json.NewDecoder(resp.Body).Decode(&r) == nil && slices.Contains(r.Data, admin)
		})
	})

	// The alert expressions match the label sets a real router exports
	// (promtool's tests use series written by hand): the fallbacks this
	// traffic causes and the rejected edit make their alerts active; Rust
	// errors do not, because every failed Rust read was served by Perl.
	t.Run("alerts on real metrics", func(t *testing.T) {
		active := func() map[string]string {
			resp, err := http.Get(base + "/api/v1/alerts")
			if err != nil {
				return nil
			}
			defer resp.Body.Close()
			var ar struct {
				Data struct {
					Alerts []struct {
						Labels map[string]string `json:"labels"`
						State  string            `json:"state"`
					} `json:"alerts"`
				} `json:"data"`
			}
			if json.NewDecoder(resp.Body).Decode(&ar) != nil {
				return nil
			}
			m := map[string]string{}
			for _, a := range ar.Data.Alerts {
				m[a.Labels["alertname"]+" "+a.Labels["category"]] = a.State
			}
			return m
		}
		var got map[string]string
		deadline := time.Now().Add(60 * time.Second)
		for {
			got = active()
			if got["PVEMigrationFallbacks node-network-read"] != "" && got["PVEMigrationConfigReloadFailed "] == "firing" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("PVEMigrationFallbacks (node-network-read) and PVEMigrationConfigReloadFailed are not both active; alerts: %v", got)
			}
			time.Sleep(200 * time.Millisecond)
		}
		for k, state := range got {
			if strings.HasPrefix(k, "PVEMigrationRustErrors ") || strings.HasPrefix(k, "PVEMigrationRouterDown ") || strings.HasPrefix(k, "PVEMigrationNodeNotReporting ") {
				t.Errorf("%s is %s against a healthy router whose failed Rust reads all fell back", k, state)
			}
		}
	})

	var notRequired []string
	for _, q := range queries(d) {
		expr := fill.Replace(q.expr)
		if strings.Contains(expr, "$") {
			t.Errorf("panel %q %s: unfilled variable in %s", q.panel, q.ref, expr)
			continue
		}
		var missing []string
		for _, m := range metricRe.FindAllString(expr, -1) {
			if f := family(m); !fams[f] && !slices.Contains(missing, f) {
				missing = append(missing, f)
			}
		}
		t.Run(q.panel+" "+q.ref, func(t *testing.T) {
			var r promResult
			waitFor(t, "data for "+expr, 90*time.Second, func() bool {
				var err error
				r, err = promGet(base, "/api/v1/query", url.Values{"query": {expr}})
				if err != nil {
					t.Fatalf("%s: %v", expr, err)
				}
				if r.Status != "success" {
					t.Fatalf("Prometheus rejects the query of panel %q: %s: %s\n%s", q.panel, r.ErrorType, r.Error, expr)
				}
				return len(missing) > 0 || r.hasNumber()
			})
			if len(missing) > 0 {
				notRequired = append(notRequired, fmt.Sprintf("%s %s (%s)", q.panel, q.ref, strings.Join(missing, ", ")))
			}
		})
	}
	sort.Strings(notRequired)
	if len(notRequired) > 0 {
		// Every family the dashboard reads is exported now (compare,
		// schema and gate included): a panel without data is a defect.
		t.Errorf("panels whose families the router does not export:\n  %s", strings.Join(notRequired, "\n  "))
	}
}
