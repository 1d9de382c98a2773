package prometheus

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/pve-migration/router/internal/telemetry"
)

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []rule `json:"rules"`
	} `json:"groups"`
}

type rule struct {
	Alert       string            `json:"alert"`
	Record      string            `json:"record"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

type unitTests struct {
	RuleFiles []string `json:"rule_files"`
	Tests     []struct {
		Name           string `json:"name"`
		AlertRuleTests []struct {
			EvalTime  string `json:"eval_time"`
			Alertname string `json:"alertname"`
			ExpAlerts []any  `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

func alerts(t *testing.T) []rule {
	t.Helper()
	data, err := os.ReadFile("rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.UnmarshalStrict(data, &rf); err != nil {
		t.Fatalf("rules.yml: %v", err)
	}
	var out []rule
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out = append(out, r)
			}
		}
	}
	return out
}

// knownMetrics are the families an alert may use: the router's own (the
// telemetry constants), the embedded data plane's
// (internal/routerapp/dpmetrics.go), the contract's additions that other
// parts of the router export (compare, schema, gate), and Prometheus's up.
func knownMetrics() map[string]bool {
	m := map[string]bool{"up": true}
	for _, n := range []string{
		telemetry.MetricRequests, telemetry.MetricFallbacks, telemetry.MetricConfigReloads, telemetry.MetricPhaseInfo,
		telemetry.MetricUpstreamDuration + "_bucket", telemetry.MetricUpstreamDuration + "_count", telemetry.MetricUpstreamDuration + "_sum",
		telemetry.MetricDecisionDuration + "_bucket", telemetry.MetricDecisionDuration + "_count", telemetry.MetricDecisionDuration + "_sum",
		"pve_migration_dataplane_requests_total", "pve_migration_dataplane_retries_total", "pve_migration_dataplane_served_total",
		"pve_migration_dataplane_ext_proc_fail_open_total", "pve_migration_dataplane_ext_proc_errors_total",
		"pve_migration_compare_total", "pve_migration_schema_violations_total", "pve_migration_gate_trips_total",
	} {
		m[n] = true
	}
	return m
}

var metricRe = regexp.MustCompile(`\bpve_migration_[a-z_]+\b|\bup\b`)

// TestAlertRules checks what promtool cannot: the contract's alerts exist,
// every alert has a severity and a summary that names the next
// migration-ctl command, and no expression uses a metric name the router
// does not export (a typo would make an alert that can never fire).
func TestAlertRules(t *testing.T) {
	rs := alerts(t)
	names := map[string]bool{}
	for _, r := range rs {
		if names[r.Alert] {
			t.Errorf("alert %s is defined twice", r.Alert)
		}
		names[r.Alert] = true
	}
	for _, want := range []string{
		"PVEMigrationRustErrors", "PVEMigrationFallbacks", "PVEMigrationConfigReloadFailed",
		"PVEMigrationGateTripped", "PVEMigrationCompareMismatches", "PVEMigrationRouterDown", "PVEMigrationNodeNotReporting",
	} {
		if !names[want] {
			t.Errorf("rules.yml has no alert %s", want)
		}
	}
	known := knownMetrics()
	for _, r := range rs {
		t.Run(r.Alert, func(t *testing.T) {
			if !strings.HasPrefix(r.Alert, "PVEMigration") {
				t.Errorf("alert name %q does not start with PVEMigration", r.Alert)
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("severity %q, want warning or critical", s)
			}
			if !strings.Contains(r.Annotations["summary"], "`migration-ctl ") {
				t.Errorf("summary %q does not name a `migration-ctl ...` command", r.Annotations["summary"])
			}
			if r.Annotations["description"] == "" {
				t.Error("no description")
			}
			used := metricRe.FindAllString(r.Expr, -1)
			if len(used) == 0 {
				t.Errorf("expr uses no pve_migration metric: %s", r.Expr)
			}
			for _, m := range used {
				if !known[m] {
					t.Errorf("expr uses %s, which the router does not export", m)
				}
			}
		})
	}
}

// TestRuleUnitTestsCoverEveryAlert: each alert has a promtool case where it
// fires and one where it does not.
func TestRuleUnitTestsCoverEveryAlert(t *testing.T) {
	data, err := os.ReadFile("rules_test.yml")
	if err != nil {
		t.Fatal(err)
	}
	var ut unitTests
	if err := yaml.Unmarshal(data, &ut); err != nil {
		t.Fatalf("rules_test.yml: %v", err)
	}
	if !slices.Equal(ut.RuleFiles, []string{"rules.yml"}) {
		t.Errorf("rules_test.yml loads %q, want [rules.yml]", ut.RuleFiles)
	}
	fires, quiet := map[string]int{}, map[string]int{}
	for _, tc := range ut.Tests {
		for _, a := range tc.AlertRuleTests {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname]++
			} else {
				quiet[a.Alertname]++
			}
		}
	}
	for _, r := range alerts(t) {
		if fires[r.Alert] == 0 {
			t.Errorf("%s: no promtool case where it fires", r.Alert)
		}
		if quiet[r.Alert] == 0 {
			t.Errorf("%s: no promtool case where it stays quiet", r.Alert)
		}
	}
}

// promtool is Debian's (package prometheus), or $PROMTOOL.
func promtool(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PROMTOOL"); p != "" {
		return p
	}
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not on PATH: `make test-rules` installs Debian's prometheus package (or set PROMTOOL)")
	}
	return p
}

func runPromtool(t *testing.T, bin, dir string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestPromtool runs promtool over the files as they are, then proves that
// the unit tests catch a broken alert: with any one alert's expression
// replaced by one that never fires, `promtool test rules` must fail.
func TestPromtool(t *testing.T) {
	bin := promtool(t)
	for _, args := range [][]string{
		{"check", "rules", "rules.yml"},
		{"check", "config", "prometheus.yml"},
		{"test", "rules", "rules_test.yml"},
	} {
		if out, err := runPromtool(t, bin, ".", args...); err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	src, err := os.ReadFile("rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile("rules_test.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rf map[string]any
	if err := yaml.Unmarshal(src, &rf); err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, r := range alerts(t) {
		names = append(names, r.Alert)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run("broken "+name, func(t *testing.T) {
			dir := t.TempDir()
			broken := breakAlert(t, rf, name)
			if err := os.WriteFile(filepath.Join(dir, "rules.yml"), broken, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "rules_test.yml"), tests, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := runPromtool(t, bin, dir, "test", "rules", "rules_test.yml")
			if err == nil {
				t.Fatalf("promtool test rules passed with %s never firing:\n%s", name, out)
			}
			if !strings.Contains(out, name) {
				t.Errorf("promtool failed without naming %s:\n%s", name, out)
			}
		})
	}
}

// breakAlert returns the rule file with alert name's expression replaced by
// one that is never true.
func breakAlert(t *testing.T, rf map[string]any, name string) []byte {
	t.Helper()
	data, err := yaml.Marshal(rf)
	if err != nil {
		t.Fatal(err)
	}
	var cp map[string]any
	if err := yaml.Unmarshal(data, &cp); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, g := range cp["groups"].([]any) {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			if m := r.(map[string]any); m["alert"] == name {
				m["expr"] = "vector(1) > 2"
				found = true
			}
		}
	}
	if !found {
		t.Fatalf("alert %s not found", name)
	}
	out, err := yaml.Marshal(cp)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
