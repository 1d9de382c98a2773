package envoy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// configs are the embedded bootstraps every contract test runs on.
func configs() []struct {
	name string
	data []byte
} {
	return []struct {
		name string
		data []byte
	}{
		{"envoy.yaml", DemoConfig()},
		{"envoy-pve-host.yaml", PVEHostConfig()},
	}
}

func TestEmbeddedConfigsLoad(t *testing.T) {
	for _, c := range configs() {
		t.Run(c.name, func(t *testing.T) {
			if _, err := LoadBootstrap(c.data); err != nil {
				t.Fatalf("LoadBootstrap: %v", err)
			}
		})
	}
}

// TestEmbeddedMatchesFiles guards against a stale build: the embedded bytes
// are the files in this directory.
func TestEmbeddedMatchesFiles(t *testing.T) {
	for _, c := range configs() {
		t.Run(c.name, func(t *testing.T) {
			disk, err := os.ReadFile(c.name)
			if err != nil {
				t.Fatal(err)
			}
			if string(disk) != string(c.data) {
				t.Fatalf("embedded %s differs from the file on disk", c.name)
			}
		})
	}
}

func TestEveryYAMLInDirectoryLoads(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("found %d YAML files, want at least envoy.yaml and envoy-pve-host.yaml", len(files))
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := LoadBootstrap(data); err != nil {
				t.Fatalf("LoadBootstrap(%s): %v", f, err)
			}
		})
	}
}

func TestDemoConfigIsACopy(t *testing.T) {
	a := DemoConfig()
	a[0] = '!'
	if DemoConfig()[0] == '!' {
		t.Fatal("DemoConfig returned the embedded slice itself")
	}
	b := PVEHostConfig()
	b[0] = '!'
	if PVEHostConfig()[0] == '!' {
		t.Fatal("PVEHostConfig returned the embedded slice itself")
	}
}

// breakConfig replaces old with new in the demo config, failing the test if
// old is not there exactly n times (so a change to envoy.yaml cannot turn a
// broken-config case into a silent no-op).
func breakConfig(t *testing.T, old, new string, n int) []byte {
	t.Helper()
	s := string(DemoConfig())
	if got := strings.Count(s, old); got != n {
		t.Fatalf("envoy.yaml contains %q %d times, the test expects %d", old, got, n)
	}
	return []byte(strings.ReplaceAll(s, old, new))
}

const previousPrioritiesZero = `                    num_retries: 1
                    retry_priority:
                      name: envoy.retry_priorities.previous_priorities
                      typed_config:
                        "@type": type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig
                        update_frequency: 0
`

func TestBrokenConfigsFail(t *testing.T) {
	cases := []struct {
		name     string
		old, new string
		n        int // occurrences of old
		want     []string
	}{
		{
			name: "unknown @type",
			old:  "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
			new:  "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcesor", n: 2,
			want: []string{"unable to resolve", "ExternalProcesor", "http_filters[0]"},
		},
		{
			name: "@type of another message",
			old:  "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
			new:  "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router", n: 2,
			want: []string{"unknown field", "http_filters[0].typed_config"},
		},
		{
			name: "route to a missing cluster",
			old:  "                  cluster: perl\n",
			new:  "                  cluster: perl_missing\n", n: 1,
			want: []string{`route "perl_default"`, `"perl_missing"`, "not defined", "routes[3].route.cluster"},
		},
		{
			name: "composite names a missing cluster",
			old:  "        - name: rust\n        - name: perl\n",
			new:  "        - name: rustt\n        - name: perl\n", n: 2,
			want: []string{"composite cluster", `"rustt"`, "not defined", "clusters[2].cluster_type.typed_config.clusters[0].name"},
		},
		{
			name: "ext_proc names a missing cluster",
			old:  "envoy_grpc: { cluster_name: migration_router }",
			new:  "envoy_grpc: { cluster_name: migration_routr }", n: 2,
			want: []string{"gRPC service", `"migration_routr"`, "not defined", "grpc_service.envoy_grpc.cluster_name"},
		},
		{
			name: "misspelled field inside an Any",
			old:  "failure_mode_allow: true",
			new:  "failure_mode_alow: true", n: 2,
			want: []string{`unknown field "failure_mode_alow"`, "http_filters[0].typed_config"},
		},
		{
			name: "misspelled field outside an Any",
			old:  "max_ejection_percent: 100",
			new:  "max_ejection_percnt: 100", n: 1,
			want: []string{`unknown field "max_ejection_percnt"`, "static_resources.clusters[1].outlier_detection"},
		},
		{
			name: "update_frequency 0 inside an Any",
			old:  "                    num_retries: 1\n",
			new:  previousPrioritiesZero, n: 3,
			want: []string{"PreviousPrioritiesConfig", "UpdateFrequency", "greater than 0", "retry_policy.retry_priority.typed_config"},
		},
		{
			name: "PGV rule inside an Any",
			old:  "stat_prefix: pve_api",
			new:  `stat_prefix: ""`, n: 1,
			want: []string{"HttpConnectionManager", "StatPrefix"},
		},
		{
			name: "PGV rule outside an Any",
			old:  "max_ejection_percent: 100",
			new:  "max_ejection_percent: 101", n: 1,
			want: []string{"bootstrap validation", "MaxEjectionPercent"},
		},
		{
			name: "bad enum value",
			old:  "route_cache_action: CLEAR",
			new:  "route_cache_action: CLEARX", n: 1,
			want: []string{"CLEARX", "route_cache_action"},
		},
		{
			name: "unknown retry_on token",
			old:  `retry_on: "5xx,reset,connect-failure`,
			new:  `retry_on: "5xx,resett,connect-failure`, n: 2,
			want: []string{`unknown retry_on condition "resett"`, "routes[0].route.retry_policy.retry_on"},
		},
		{
			name: "regex that does not compile",
			old:  `regex: "^(GET|HEAD)$"`,
			new:  `regex: "^(GET|HEAD$"`, n: 1,
			want: []string{"regex does not compile", "routes[1].match.headers[2].string_match.safe_regex.regex"},
		},
		{
			name: "composite cluster without CLUSTER_PROVIDED",
			old:  "    lb_policy: CLUSTER_PROVIDED\n",
			new:  "", n: 2,
			want: []string{`cluster "rust_then_perl"`, "CLUSTER_PROVIDED", "ROUND_ROBIN"},
		},
		{
			name: "upstream filter chain without upstream_codec last",
			old:  "        - name: envoy.filters.http.upstream_codec\n          typed_config:\n            \"@type\": type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec\n",
			new:  "", n: 1,
			want: []string{"http_filters", "envoy.filters.http.upstream_codec", "last"},
		},
		{
			name: "misspelled field in the upstream ext_proc stage",
			old:  "            allow_mode_override: true\n            allowed_override_modes:\n            - response_header_mode: SEND\n",
			new:  "            allow_mode_overide: true\n            allowed_override_modes:\n            - response_header_mode: SEND\n", n: 1,
			want: []string{`unknown field "allow_mode_overide"`, "typed_extension_protocol_options", "http_filters[0].typed_config"},
		},
		{
			name: "bad enum in the upstream ext_proc stage",
			old:  "              request_header_mode: SKIP\n",
			new:  "              request_header_mode: SKIPP\n", n: 1,
			want: []string{"SKIPP"},
		},
		{
			name: "duplicate cluster name",
			old:  "  - name: jaeger_otlp\n",
			new:  "  - name: perl\n", n: 1,
			want: []string{`duplicate cluster name "perl"`},
		},
		{
			name: "not YAML",
			old:  "static_resources:\n",
			new:  "static_resources:\n\t- [\n", n: 1,
			want: []string{"YAML"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadBootstrap(breakConfig(t, tc.old, tc.new, tc.n))
			if err == nil {
				t.Fatal("LoadBootstrap accepted the broken config")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestJSONPathAt(t *testing.T) {
	js := []byte(`{"a":{"b":[1,{"c":2,"d":[3]}]},"e":"x"}`)
	cases := []struct {
		at   string // the token the offset points at
		want string
	}{
		{`"a"`, "(bootstrap)"},
		{`"c"`, "a.b[1]"},
		{`2`, "a.b[1].c"},
		{`"d"`, "a.b[1]"},
		{`3`, "a.b[1].d[0]"},
		{`"e"`, "(bootstrap)"},
		{`"x"`, "e"},
	}
	for _, tc := range cases {
		t.Run(tc.at, func(t *testing.T) {
			off := strings.Index(string(js), tc.at)
			if got := jsonPathAt(js, off); got != tc.want {
				t.Errorf("jsonPathAt(%s) = %q, want %q", tc.at, got, tc.want)
			}
		})
	}
}
