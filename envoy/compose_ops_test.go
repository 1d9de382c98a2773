package envoy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// hostPath maps a path inside a compose service back to the repository,
// through the service's bind mounts ("./src:/dst[:ro]").
func hostPath(t *testing.T, svc composeService, inside string) string {
	t.Helper()
	for _, v := range svc.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || !strings.HasPrefix(parts[0], "./") {
			continue
		}
		if inside == parts[1] || strings.HasPrefix(inside, parts[1]+"/") {
			return filepath.Join("..", parts[0], strings.TrimPrefix(inside, parts[1]))
		}
	}
	t.Fatalf("%s is not bind-mounted from the repository (volumes %q)", inside, svc.Volumes)
	return ""
}

// TestComposePrometheusAndGrafana follows the wiring of the monitoring
// services through the files they mount: Prometheus's config and rules,
// the router's admin port it scrapes, Grafana's datasource pointing at
// Prometheus, and the provisioned dashboard.
func TestComposePrometheusAndGrafana(t *testing.T) {
	cf := loadCompose(t)
	prom, ok := cf.Services["prometheus"]
	if !ok {
		t.Fatal("docker-compose.yaml has no prometheus service")
	}
	graf, ok := cf.Services["grafana"]
	if !ok {
		t.Fatal("docker-compose.yaml has no grafana service")
	}

	t.Run("prometheus scrapes the router and loads the rules", func(t *testing.T) {
		var confPath string
		for _, a := range prom.Command {
			if v, ok := strings.CutPrefix(a, "--config.file="); ok {
				confPath = v
			}
		}
		if confPath == "" {
			t.Fatalf("prometheus command %q has no --config.file", prom.Command)
		}
		data, err := os.ReadFile(hostPath(t, prom, confPath))
		if err != nil {
			t.Fatal(err)
		}
		var pc struct {
			RuleFiles     []string `json:"rule_files"`
			ScrapeConfigs []struct {
				JobName       string `json:"job_name"`
				StaticConfigs []struct {
					Targets []string `json:"targets"`
				} `json:"static_configs"`
			} `json:"scrape_configs"`
		}
		if err := yaml.Unmarshal(data, &pc); err != nil {
			t.Fatal(err)
		}
		for _, rf := range pc.RuleFiles {
			inside := rf
			if !filepath.IsAbs(rf) {
				inside = filepath.Join(filepath.Dir(confPath), rf)
			}
			if _, err := os.Stat(hostPath(t, prom, inside)); err != nil {
				t.Errorf("rule file %s: %v", rf, err)
			}
		}
		if !slices.Contains(pc.RuleFiles, "rules.yml") {
			t.Errorf("rule_files %q does not load rules.yml", pc.RuleFiles)
		}
		router := cf.Services["migration-router"]
		adminPort := portOf(t, flag(router.Command, "--admin-listen"))
		found := false
		for _, sc := range pc.ScrapeConfigs {
			for _, st := range sc.StaticConfigs {
				if slices.Contains(st.Targets, "migration-router:"+adminPort) {
					found = sc.JobName == "pve-migration-router"
				}
			}
		}
		if !found {
			t.Errorf("no scrape job pve-migration-router targets migration-router:%s (the alert rules select job=\"pve-migration-router\")", adminPort)
		}
		if !slices.Contains(router.Expose, adminPort) {
			t.Errorf("migration-router does not expose its admin port %s", adminPort)
		}
	})

	t.Run("grafana has the datasource and the dashboard", func(t *testing.T) {
		dsFile := hostPath(t, graf, "/etc/grafana/provisioning/datasources/prometheus.yaml")
		data, err := os.ReadFile(dsFile)
		if err != nil {
			t.Fatal(err)
		}
		var ds struct {
			Datasources []struct {
				Type string `json:"type"`
				URL  string `json:"url"`
			} `json:"datasources"`
		}
		if err := yaml.Unmarshal(data, &ds); err != nil {
			t.Fatal(err)
		}
		if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL != "http://prometheus:9090" {
			t.Errorf("datasources %+v, want one prometheus at http://prometheus:9090", ds.Datasources)
		}
		if !slices.Contains(prom.Expose, "9090") {
			t.Errorf("prometheus does not expose 9090")
		}
		provFile := hostPath(t, graf, "/etc/grafana/provisioning/dashboards/pve-migration.yaml")
		data, err = os.ReadFile(provFile)
		if err != nil {
			t.Fatal(err)
		}
		var prov struct {
			Providers []struct {
				Options struct {
					Path string `json:"path"`
				} `json:"options"`
			} `json:"providers"`
		}
		if err := yaml.Unmarshal(data, &prov); err != nil {
			t.Fatal(err)
		}
		if len(prov.Providers) != 1 {
			t.Fatalf("dashboard providers %+v", prov.Providers)
		}
		dash := hostPath(t, graf, prov.Providers[0].Options.Path+"/pve-migration-dashboard.json")
		if _, err := os.Stat(dash); err != nil {
			t.Errorf("the provisioned dashboard path does not hold the dashboard: %v", err)
		}
		if home := graf.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; home != "" {
			if _, err := os.Stat(hostPath(t, graf, home)); err != nil {
				t.Errorf("home dashboard %s: %v", home, err)
			}
		}
	})
}
