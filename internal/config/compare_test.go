package config

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pve-migration/router/routing"
)

func TestCompareDefaults(t *testing.T) {
	s := mustParse(t, "x.conf", `phase = "perl-only"`, nil)
	want := DefaultCompare()
	if !reflect.DeepEqual(s.Compare, want) {
		t.Errorf("Compare = %+v, want %+v", s.Compare, want)
	}
	if s.Compare.Enabled || s.Compare.SamplePercent != 10 || s.Compare.MaxBodyBytes != 1048576 ||
		s.Compare.Timeout != 5*time.Second || s.Compare.MaxInflight != 4 || !s.Compare.Schema ||
		s.Compare.APISchema != "/usr/share/pve-docs/api-viewer/apidoc.js" {
		t.Errorf("defaults differ from the contract: %+v", s.Compare)
	}
	if !reflect.DeepEqual(s.Compare.Categories, []routing.Category{routing.NodeNetworkRead, routing.SDNRead}) {
		t.Errorf("categories = %v", s.Compare.Categories)
	}
}

func TestCompareValues(t *testing.T) {
	s := mustParse(t, "x.conf", `
[compare]
enabled = true
sample_percent = 100
categories = ["sdn-read", "SDN-read"]
max_body_bytes = 4096
timeout = 1.5
max_inflight = 8
schema = false
api_schema = "/tmp/apidoc.js"

[endpoints."/api2/json/nodes/{node}/network"]
compare_ignore = ["data[].active", "data[].exists", "data[].active"]
`, nil)
	c := s.Compare
	if !c.Enabled || c.SamplePercent != 100 || c.MaxBodyBytes != 4096 || c.Timeout != 1500*time.Millisecond ||
		c.MaxInflight != 8 || c.Schema || c.APISchema != "/tmp/apidoc.js" {
		t.Errorf("Compare = %+v", c)
	}
	if !reflect.DeepEqual(c.Categories, []routing.Category{routing.SDNRead}) {
		t.Errorf("categories = %v, want [sdn-read]", c.Categories)
	}
	if got := c.Ignore["/nodes/{node}/network"]; !reflect.DeepEqual(got, []string{"data[].active", "data[].exists"}) {
		t.Errorf("ignore = %v", got)
	}
	if !c.Wants(routing.SDNRead) || c.Wants(routing.NodeNetworkRead) {
		t.Error("Wants disagrees with categories")
	}
	// An endpoint entry with only compare_ignore changes no decision.
	if r := s.Policy.Endpoints["/nodes/{node}/network"]; r.UseRust != nil {
		t.Errorf("rule = %+v", r)
	}
}

func TestCompareInvalid(t *testing.T) {
	tests := []struct {
		name, data string
		want       []string // substrings of the error
	}{
		{"write category", `[compare]
categories = ["node-network-read", "sdn-write"]`, []string{"x.conf", "compare.categories", `"sdn-write"`, "not a read category"}},
		{"basic write", `[compare]
categories = ["node-network-basic-write"]`, []string{`"node-network-basic-write"`, "not a read category"}},
		{"unknown category", `[compare]
categories = ["sdn-reed"]`, []string{`unknown category "sdn-reed"`, `did you mean "sdn-read"`}},
		{"percent", `[compare]
sample_percent = 101`, []string{"compare.sample_percent", "101", "0 to 100"}},
		{"negative percent", `[compare]
sample_percent = -1`, []string{"compare.sample_percent"}},
		{"inflight", `[compare]
max_inflight = 0`, []string{"compare.max_inflight"}},
		{"body", `[compare]
max_body_bytes = "big"`, []string{"compare.max_body_bytes", `"big"`}},
		{"body too large", `[compare]
max_body_bytes = 100000000000`, []string{"compare.max_body_bytes", "100000000000", "at most 67108864"}},
		{"timeout", `[compare]
timeout = 0`, []string{"compare.timeout"}},
		{"unknown key", `[compare]
sample_precent = 5`, []string{`unknown key "sample_precent"`, `did you mean "sample_percent"`}},
		{"not a table", `compare = 1`, []string{"compare", "expected a table"}},
		{"schema", `[compare]
schema = "yes"`, []string{"compare.schema", "boolean"}},
		{"api_schema", `[compare]
api_schema = ""`, []string{"compare.api_schema"}},
		{"ignore path", `[endpoints."/nodes/{node}/network"]
compare_ignore = ["data[.active"]`, []string{"compare_ignore", `"data[.active"`, "invalid field path"}},
		{"ignore not array", `[endpoints."/nodes/{node}/network"]
compare_ignore = "data"`, []string{"compare_ignore", "expected an array"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("x.conf", []byte(tt.data), nil)
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
