package envoy

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRouteTableRepresentativeRequests(t *testing.T) {
	readPlan := RoutePlan{
		Name: "rust_read", Cluster: "rust_then_perl",
		RetryOn:              []string{"5xx", "reset", "connect-failure", "refused-stream", "retriable-status-codes", "retriable-headers"},
		RetriableStatusCodes: []uint32{501}, RetriableHeaders: []string{"x-pve-fallback"}, NumRetries: 1,
		PerTryTimeout: 30 * time.Second, Timeout: 65 * time.Second,
		Upstreams: []string{"rust", "perl"},
	}
	extjsPlan := readPlan
	extjsPlan.Name, extjsPlan.Cluster = "rust_read_extjs", "rust_then_perl_extjs"
	writePlan := RoutePlan{
		Name: "rust_write", Cluster: "rust_then_perl",
		RetryOn:              []string{"connect-failure", "refused-stream", "reset-before-request", "retriable-status-codes"},
		RetriableStatusCodes: []uint32{501}, NumRetries: 1,
		PerTryTimeout: 30 * time.Second, Timeout: 65 * time.Second,
		Upstreams: []string{"rust", "perl"},
	}
	perlPlan := RoutePlan{Name: "perl_default", Cluster: "perl", Upstreams: []string{"perl"}}

	const path = "/api2/json/nodes/pve1/network/eth0"
	type row struct {
		backend string // "" = header absent
		key     string // header name as sent
		method  string
		want    RoutePlan
		path    string // "" = path
	}
	var rows []row
	// Web UI reads get the upstream stage that reads extjs answers; web UI
	// writes and HEAD do not.
	const extjs = "/api2/extjs/nodes/pve1/network/eth0"
	rows = append(rows,
		row{"rust", "x-pve-backend", "GET", extjsPlan, extjs},
		row{"rust", "x-pve-backend", "HEAD", readPlan, extjs},
		row{"rust", "x-pve-backend", "PUT", writePlan, extjs},
		row{"rust", "x-pve-backend", "DELETE", writePlan, extjs},
		row{"perl", "x-pve-backend", "GET", perlPlan, extjs},
		row{"", "x-pve-backend", "GET", perlPlan, extjs},
	)
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "DELETE"} {
		for _, v := range []string{"", "perl", "RUST", "Rust", " rust", "rust,perl", "rustx"} {
			rows = append(rows, row{v, "x-pve-backend", m, perlPlan, ""})
		}
	}
	for _, key := range []string{"x-pve-backend", "X-PVE-Backend"} {
		rows = append(rows,
			row{"rust", key, "GET", readPlan, ""},
			row{"rust", key, "HEAD", readPlan, ""},
			row{"rust", key, "POST", writePlan, ""},
			row{"rust", key, "PUT", writePlan, ""},
			row{"rust", key, "DELETE", writePlan, ""},
			// PVE answers 501 to anything else; it never goes to rust.
			row{"rust", key, "OPTIONS", perlPlan, ""},
			row{"rust", key, "PATCH", perlPlan, ""},
			row{"rust", key, "get", perlPlan, ""},
		)
	}
	for _, c := range configs() {
		t.Run(c.name, func(t *testing.T) {
			rt, err := NewRouteTable(load(t, c.data))
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				name := r.method + " " + r.key + "=" + r.backend
				if r.backend == "" {
					name = r.method + " no header"
				}
				p := path
				if r.path != "" {
					p = r.path
					name += " " + p
				}
				t.Run(name, func(t *testing.T) {
					h := map[string]string{"host": "pve1:8006", "user-agent": "test"}
					if r.backend != "" {
						h[r.key] = r.backend
					}
					got, ok := rt.Match(r.method, p, h)
					if !ok {
						t.Fatal("no route matched")
					}
					if !planEqual(got, r.want) {
						t.Errorf("Match = %+v\nwant    %+v", got, r.want)
					}
					if got.Name == "rust_write" {
						for _, bad := range unsafeForWrites {
							if slices.Contains(got.RetryOn, bad) {
								t.Errorf("write retries on %s", bad)
							}
						}
					}
				})
			}
		})
	}
}

func planEqual(a, b RoutePlan) bool {
	return a.Name == b.Name && a.Cluster == b.Cluster && slices.Equal(a.RetryOn, b.RetryOn) &&
		slices.Equal(a.RetriableStatusCodes, b.RetriableStatusCodes) && slices.Equal(a.RetriableHeaders, b.RetriableHeaders) && a.NumRetries == b.NumRetries &&
		a.PerTryTimeout == b.PerTryTimeout && a.Timeout == b.Timeout && slices.Equal(a.Upstreams, b.Upstreams)
}

func TestRouteTableMatchReturnsCopies(t *testing.T) {
	rt, err := NewRouteTable(load(t, DemoConfig()))
	if err != nil {
		t.Fatal(err)
	}
	h := map[string]string{"x-pve-backend": "rust"}
	p, _ := rt.Match("GET", "/", h)
	p.Upstreams[0] = "mutated"
	p.RetryOn[0] = "mutated"
	q, _ := rt.Match("GET", "/", h)
	if q.Upstreams[0] != "rust" || q.RetryOn[0] != "5xx" {
		t.Fatalf("Match shares slices between calls: %+v", q)
	}
}

// evaluatorConfig is a minimal bootstrap exercising the match features
// RouteTable implements beyond what envoy.yaml uses.
const evaluatorConfig = `
static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: t
          route_config:
            virtual_hosts:
            - name: v
              domains: ["*"]
              retry_policy: { retry_on: "5xx" }
              routes:
              - name: exact_path
                match: { path: /exact }
                route: { cluster: a, timeout: 1s }
              - name: regex_path
                match: { safe_regex: { regex: "/re/[0-9]+" } }
                route: { cluster: a }
              - name: present
                match: { prefix: /p, headers: [ { name: x-flag, present_match: true } ] }
                route: { cluster: a }
              - name: absent
                match: { prefix: /p, headers: [ { name: x-flag, present_match: false } ] }
                route: { cluster: b }
              - name: inverted
                match: { prefix: /i, headers: [ { name: x-v, string_match: { exact: "no" }, invert_match: true } ] }
                route: { cluster: a }
              - name: inverted_missing_as_empty
                match: { prefix: /m, headers: [ { name: x-v, string_match: { exact: "no" }, invert_match: true, treat_missing_header_as_empty: true } ] }
                route: { cluster: a }
              - name: ignore_case_prefix
                match: { prefix: /s, headers: [ { name: x-v, string_match: { prefix: AB, ignore_case: true } } ] }
                route: { cluster: a }
              - name: suffix_contains
                match: { prefix: /s, headers: [ { name: x-v, string_match: { suffix: yz } }, { name: x-w, string_match: { contains: mid } } ] }
                route: { cluster: a }
              - name: case_insensitive_prefix
                match: { prefix: /CI/, case_sensitive: false }
                route: { cluster: a }
              - name: fallback
                match: { prefix: / }
                route: { cluster: b }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: a
    load_assignment: { cluster_name: a }
  - name: b
    load_assignment: { cluster_name: b }
`

func TestRouteTableMatchFeatures(t *testing.T) {
	rt, err := NewRouteTable(load(t, []byte(evaluatorConfig)))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		method, path string
		headers      map[string]string
		want         string
	}{
		{"GET", "/exact", nil, "exact_path"},
		{"GET", "/exact?q=1", nil, "exact_path"}, // path match ignores the query
		{"GET", "/exact/", nil, "fallback"},
		{"GET", "/re/42", nil, "regex_path"},
		{"GET", "/re/42?x", nil, "regex_path"},
		{"GET", "/re/4a", nil, "fallback"}, // full match, not a substring
		{"GET", "/p", map[string]string{"X-Flag": ""}, "present"},
		{"GET", "/p", nil, "absent"},
		{"GET", "/i", map[string]string{"x-v": "yes"}, "inverted"},
		{"GET", "/i", map[string]string{"x-v": "no"}, "fallback"},
		{"GET", "/i", nil, "fallback"}, // missing header never matches, even inverted
		{"GET", "/m", nil, "inverted_missing_as_empty"},
		{"GET", "/s", map[string]string{"x-v": "abc"}, "ignore_case_prefix"},
		{"GET", "/s", map[string]string{"x-v": "xyz", "x-w": "amidst"}, "suffix_contains"},
		{"GET", "/s", map[string]string{"x-v": "xyz"}, "fallback"},
		{"GET", "/ci/x", nil, "case_insensitive_prefix"},
	}
	for _, tc := range cases {
		t.Run(tc.path+" "+strings.Join(slices.Sorted(mapKeys(tc.headers)), ","), func(t *testing.T) {
			got, ok := rt.Match(tc.method, tc.path, tc.headers)
			if !ok || got.Name != tc.want {
				t.Fatalf("Match(%s %s %v) = %q, %v; want %q", tc.method, tc.path, tc.headers, got.Name, ok, tc.want)
			}
		})
	}
	// Defaults: Envoy's 15 s route timeout, and a virtual-host retry policy
	// with num_retries unset means 1 retry.
	p, _ := rt.Match("GET", "/re/1", nil)
	if p.Timeout != 15*time.Second || p.NumRetries != 1 || !slices.Equal(p.RetryOn, []string{"5xx"}) || !slices.Equal(p.Upstreams, []string{"a"}) {
		t.Errorf("defaults: %+v", p)
	}
	if p, _ := rt.Match("GET", "/exact", nil); p.Timeout != time.Second {
		t.Errorf("timeout = %s, want 1s", p.Timeout)
	}
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestNewRouteTableRefusesUnsupportedMatching(t *testing.T) {
	cases := []struct {
		name, old, new string
		want           string
	}{
		{"query parameter match", "match: { path: /exact }", "match: { path: /exact, query_parameters: [ { name: q, present_match: true } ] }", "query_parameters"},
		{"range header match", "{ name: x-flag, present_match: true }", "{ name: x-flag, range_match: { start: 1, end: 2 } }", "range_match"},
		{"weighted clusters", "route: { cluster: a, timeout: 1s }", "route: { weighted_clusters: { clusters: [ { name: a, weight: 1 } ] } }", "single-cluster"},
		{"two virtual hosts", "            - name: v\n", "            - name: w\n              domains: [w]\n              routes: [ { match: { prefix: / }, route: { cluster: a } } ]\n            - name: v\n", "2 virtual hosts"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(evaluatorConfig, tc.old) {
				t.Fatalf("evaluatorConfig lacks %q", tc.old)
			}
			b := load(t, []byte(strings.Replace(evaluatorConfig, tc.old, tc.new, 1)))
			_, err := NewRouteTable(b)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewRouteTable error = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestExtProcMissingFilter(t *testing.T) {
	_, err := ExtProc(load(t, []byte(evaluatorConfig)))
	if err == nil || !strings.Contains(err.Error(), "no envoy.filters.http.ext_proc filter") {
		t.Fatalf("ExtProc error = %v", err)
	}
}
