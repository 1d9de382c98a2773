package server_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/internal/shadow"
	"github.com/pve-migration/router/routing"
	"github.com/pve-migration/router/server/extproctest"
)

// fakeShadower records what the Processor hands the shadow comparison.
type fakeShadower struct {
	mu      sync.Mutex
	sample  bool
	sampled []string // "category node"
	jobs    []shadow.Job
	writes  []string // "+node" / "-node"
}

func (f *fakeShadower) Sample(c routing.Category, node string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sampled = append(f.sampled, c.String()+" "+node)
	return f.sample
}
func (f *fakeShadower) Submit(j shadow.Job) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs = append(f.jobs, j)
}
func (f *fakeShadower) WriteStarted(node string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes = append(f.writes, "+"+node)
	return uint64(len(f.writes))
}
func (f *fakeShadower) WriteDone(node string, id uint64, status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes = append(f.writes, fmt.Sprintf("-%s %d %d", node, id, status))
}

// TestProcessorFeedsShadow: only a sampled GET answered 200 by a backend
// becomes a job, with the caller's credentials and the request's facts;
// writes in network categories are bracketed; nothing else reaches it.
func TestProcessorFeedsShadow(t *testing.T) {
	creds := map[string]string{"authorization": "PVEAPIToken=u@pam!t=s3cr3t", "cookie": "PVEAuthCookie=abc"}
	tests := []struct {
		name     string
		sample   bool
		req      extproctest.Request
		sampled  []string
		wantJob  bool
		writes   []string
		servedBy string
	}{
		{"sampled GET 200", true, extproctest.Request{Method: "GET", Path: "/api2/json/nodes/pve1/network?type=bridge", Headers: creds,
			Upstream: extproctest.Upstream{Status: 200, ServedBy: "perl", Attempts: 1}}, []string{"node-network-read pve1"}, true, nil, "perl"},
		{"sampled GET served by rust", true, extproctest.Request{Method: "GET", Path: "/api2/extjs/cluster/sdn/vnets", Headers: creds,
			Upstream: extproctest.Upstream{Status: 200, ServedBy: "rust", Attempts: 1}}, []string{"sdn-read "}, true, nil, "rust"},
		{"not sampled", false, extproctest.Request{Method: "GET", Path: "/api2/json/nodes/pve1/network", Headers: creds,
			Upstream: extproctest.Upstream{Status: 200, ServedBy: "perl", Attempts: 1}}, []string{"node-network-read pve1"}, false, nil, ""},
		{"GET 500", true, extproctest.Request{Method: "GET", Path: "/api2/json/nodes/pve1/network", Headers: creds,
			Upstream: extproctest.Upstream{Status: 500, ServedBy: "perl", Attempts: 1}}, []string{"node-network-read pve1"}, false, nil, ""},
		{"local reply", true, extproctest.Request{Method: "GET", Path: "/api2/json/nodes/pve1/network", Headers: creds,
			Upstream: extproctest.Upstream{Status: 200, Attempts: 1}}, []string{"node-network-read pve1"}, false, nil, ""},
		{"not network", true, extproctest.Request{Method: "GET", Path: "/api2/json/version", Headers: creds,
			Upstream: extproctest.Upstream{Status: 200, ServedBy: "perl", Attempts: 1}}, nil, false, nil, ""},
		{"write", true, extproctest.Request{Method: "POST", Path: "/api2/json/nodes/pve1/network?type=bridge", Headers: creds,
			Upstream: extproctest.Upstream{Status: 200, ServedBy: "perl", Attempts: 1}}, nil, false, []string{"+pve1", "-pve1 1 200"}, ""},
		{"sdn write", true, extproctest.Request{Method: "PUT", Path: "/api2/json/cluster/sdn", Headers: creds,
			Upstream: extproctest.Upstream{Status: 200, ServedBy: "perl", Attempts: 1}}, nil, false, []string{"+", "- 1 200"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeShadower{sample: tt.sample}
			h := newHarness(t, snapshot(routing.RustFull, func(s *config.Snapshot) { s.Policy.Features.EnableSDNMigration = true }), harnessOpts{shadow: f})
			h.do(t, tt.req)
			h.stop(t)
			f.mu.Lock()
			defer f.mu.Unlock()
			if !slices.Equal(f.sampled, tt.sampled) {
				t.Errorf("Sample calls %q, want %q", f.sampled, tt.sampled)
			}
			if !slices.Equal(f.writes, tt.writes) {
				t.Errorf("writes %q, want %q", f.writes, tt.writes)
			}
			if !tt.wantJob {
				if len(f.jobs) != 0 {
					t.Errorf("jobs %v, want none", f.jobs)
				}
				return
			}
			if len(f.jobs) != 1 {
				t.Fatalf("%d jobs, want 1", len(f.jobs))
			}
			j := f.jobs[0]
			if j.Authorization != creds["authorization"] || j.Cookie != creds["cookie"] || j.ServedBy != tt.servedBy || j.Template == "" || j.Path == "" {
				t.Errorf("job %+v", j)
			}
			if strings.Contains(tt.req.Path, "?") && j.RawQuery != "type=bridge" {
				t.Errorf("query %q", j.RawQuery)
			}
		})
	}
}

// TestKillSwitchStopsShadow: the kill switch is the rollback of a node
// without quorum, where [compare] cannot be turned off in the file either.
// While it is on, a GET goes to perl and no shadow job (which would send
// the caller's credentials to rust) is even sampled.
func TestKillSwitchStopsShadow(t *testing.T) {
	for _, kill := range []bool{false, true} {
		t.Run(map[bool]string{false: "off", true: "on"}[kill], func(t *testing.T) {
			f := &fakeShadower{sample: true}
			h := newHarness(t, snapshot(routing.PerlOnly), harnessOpts{shadow: f,
				local: func() routing.Local { return routing.Local{Node: "pve1", KillSwitch: kill} }})
			h.do(t, extproctest.Request{Method: "GET", Path: "/api2/json/nodes/pve1/network",
				Headers:  map[string]string{"authorization": "PVEAPIToken=u@pam!t=s3cr3t"},
				Upstream: extproctest.Upstream{Status: 200, ServedBy: "perl", Attempts: 1}})
			h.stop(t)
			f.mu.Lock()
			defer f.mu.Unlock()
			if kill && (len(f.sampled) != 0 || len(f.jobs) != 0) {
				t.Errorf("kill switch on: sampled %q, jobs %d; want none", f.sampled, len(f.jobs))
			}
			if !kill && len(f.jobs) != 1 {
				t.Errorf("kill switch off: %d jobs, want 1 (compare runs in perl-only)", len(f.jobs))
			}
		})
	}
}
