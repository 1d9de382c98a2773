package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/pve-migration/router/routing"
)

const nodesConf = `# cluster: pve1 first, then the rest
phase = "rust-read-only"

[features]
enable_sdn_migration = true

[nodes.pve1]
phase = "rust-sdn" # moved first, ticket 4711

[nodes.pve3]
phase = "PerlOnly"
`

// TestNodePrecedence is the precedence with node tables, the environment
// override and perl-only, decided by routing.Decide on snapshots parsed
// from a real file, as the router on each node would.
func TestNodePrecedence(t *testing.T) {
	type want struct {
		backend routing.Backend
		reason  routing.Reason
	}
	rust := func(r routing.Reason) want { return want{routing.Rust, r} }
	perl := func(r routing.Reason) want { return want{routing.Perl, r} }
	const (
		read   = "/api2/json/nodes/%s/network"
		sdnPut = "/api2/json/cluster/sdn"
	)
	cases := []struct {
		name     string
		env      map[string]string
		local    routing.Local
		method   string
		path     string
		want     want
		effPhase routing.Phase
	}{
		{"node table beats top level", nil, routing.Local{Node: "pve1"}, "PUT", "/api2/json/nodes/pve1/network", rust(routing.ReasonPhase), routing.RustSDN},
		{"node without table follows top level", nil, routing.Local{Node: "pve2"}, "GET", "/api2/json/nodes/pve2/network", rust(routing.ReasonPhase), routing.RustReadOnly},
		{"top-level phase holds writes on pve2", nil, routing.Local{Node: "pve2"}, "PUT", "/api2/json/nodes/pve2/network", perl(routing.ReasonPhase), routing.RustReadOnly},
		{"node pinned perl-only", nil, routing.Local{Node: "pve3"}, "GET", "/api2/json/nodes/pve3/network", perl(routing.ReasonPerlOnly), routing.PerlOnly},
		{"localhost is this node", nil, routing.Local{Node: "pve1"}, "PUT", "/api2/json/nodes/localhost/network", rust(routing.ReasonPhase), routing.RustSDN},
		{"another node goes to perl", nil, routing.Local{Node: "pve1"}, "GET", "/api2/json/nodes/pve2/network", perl(routing.ReasonRemoteNode), routing.RustSDN},
		{"cluster SDN follows the top level", nil, routing.Local{Node: "pve1"}, "PUT", sdnPut, perl(routing.ReasonPhase), routing.RustSDN},
		{"cluster SDN on a perl-only node", nil, routing.Local{Node: "pve3"}, "GET", "/api2/json/cluster/sdn/vnets", perl(routing.ReasonPerlOnly), routing.PerlOnly},
		{"kill switch beats the node table", nil, routing.Local{Node: "pve1", KillSwitch: true}, "GET", "/api2/json/nodes/pve1/network", perl(routing.ReasonKillSwitch), routing.RustSDN},
		{"env beats the node table", map[string]string{EnvPhase: "perl-only"}, routing.Local{Node: "pve1"}, "GET", "/api2/json/nodes/pve1/network", perl(routing.ReasonPerlOnly), routing.PerlOnly},
		{"env beats a perl-only node table", map[string]string{EnvPhase: "rust-read-only"}, routing.Local{Node: "pve3"}, "GET", "/api2/json/nodes/pve3/network", rust(routing.ReasonPhase), routing.RustReadOnly},
		{"no node name: tables unused", nil, routing.Local{}, "PUT", "/api2/json/nodes/pve1/network", perl(routing.ReasonPhase), routing.RustReadOnly},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			snap, err := Parse("nodes.conf", []byte(nodesConf), func(k string) string { return c.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			pol := snap.Policy
			pol.Local = c.local
			if got := pol.EffectivePhase(); got != c.effPhase {
				t.Errorf("EffectivePhase() = %s, want %s", got, c.effPhase)
			}
			d := routing.Decide(&pol, routing.Request{Method: c.method, Path: c.path})
			if d.Backend != c.want.backend || d.Reason != c.want.reason {
				t.Errorf("%s %s on %q = %s (%s), want %s (%s)", c.method, c.path, c.local.Node,
					d.Backend, d.Reason, c.want.backend, c.want.reason)
			}
		})
	}
}

func TestNodeTablesParsed(t *testing.T) {
	snap, err := Parse("nodes.conf", []byte(nodesConf), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]routing.Phase{"pve1": routing.RustSDN, "pve3": routing.PerlOnly}
	if len(snap.Policy.Nodes) != 2 || snap.Policy.Nodes["pve1"] != want["pve1"] || snap.Policy.Nodes["pve3"] != want["pve3"] {
		t.Errorf("Nodes = %v, want %v", snap.Policy.Nodes, want)
	}
	if snap.Sources["nodes"] != SourceFile {
		t.Errorf("Sources[nodes] = %q, want file", snap.Sources["nodes"])
	}
	env := func(k string) string { return map[string]string{EnvPhase: "perl-only"}[k] }
	snapEnv, err := Parse("nodes.conf", []byte(nodesConf), env)
	if err != nil {
		t.Fatal(err)
	}
	if snapEnv.Policy.Nodes != nil || len(snapEnv.FileNodes) != 2 || snapEnv.Sources["nodes"] != SourceEnv {
		t.Errorf("with %s: Nodes = %v, FileNodes = %v, source %q; want nil, the file's two, env",
			EnvPhase, snapEnv.Policy.Nodes, snapEnv.FileNodes, snapEnv.Sources["nodes"])
	}
	if snapEnv.Digest != snap.Digest {
		t.Errorf("the digest depends on the environment: %s vs %s", snapEnv.Digest, snap.Digest)
	}
}

func TestDigest(t *testing.T) {
	parse := func(s string) string {
		t.Helper()
		snap, err := Parse("d.conf", []byte(s), nil)
		if err != nil {
			t.Fatal(err)
		}
		return snap.Digest
	}
	base := parse(nodesConf)
	if len(base) != 32 {
		t.Fatalf("digest %q: want 32 hex digits", base)
	}
	t.Run("comments do not count", func(t *testing.T) {
		if d := parse("# new comment\n" + strings.ReplaceAll(nodesConf, "# moved first, ticket 4711", "")); d != base {
			t.Errorf("digest changed with a comment edit: %s vs %s", d, base)
		}
	})
	t.Run("a node phase counts", func(t *testing.T) {
		if d := parse(strings.Replace(nodesConf, `"PerlOnly"`, `"rust-read-only"`, 1)); d == base {
			t.Error("digest unchanged after a node table's phase changed")
		}
	})
	t.Run("the top-level phase counts", func(t *testing.T) {
		if d := parse(strings.Replace(nodesConf, `phase = "rust-read-only"`, `phase = "perl-only"`, 1)); d == base {
			t.Error("digest unchanged after the phase changed")
		}
	})
}

func TestNodeTableErrors(t *testing.T) {
	cases := []struct {
		name, conf string
		want       []string
	}{
		{"invalid name", "[nodes.\"pve_1\"]\nphase = \"perl-only\"\n", []string{`nodes."pve_1"`, `invalid node name "pve_1"`}},
		{"leading hyphen", "[nodes.\"-pve\"]\nphase = \"perl-only\"\n", []string{`invalid node name "-pve"`}},
		{"localhost", "[nodes.localhost]\nphase = \"perl-only\"\n", []string{`"localhost" is not a node name`}},
		{"unknown key", "[nodes.pve1]\nphse = \"perl-only\"\n", []string{"nodes.pve1.phse", `did you mean "phase"?`}},
		{"phase typo", "[nodes.pve1]\nphase = \"rust-reed-only\"\n", []string{"nodes.pve1.phase", `did you mean "rust-read-only"?`}},
		{"phase not a string", "[nodes.pve1]\nphase = 3\n", []string{"nodes.pve1.phase", "expected a string"}},
		{"node not a table", "[nodes]\npve1 = \"perl-only\"\n", []string{"nodes.pve1", "expected a table [nodes.pve1]"}},
		{"nodes not a table", "nodes = 1\n", []string{"nodes", "expected tables [nodes.NAME]"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("/etc/pve/network-migration.conf", []byte(c.conf), nil)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse = %v, want a *ValidationError", err)
			}
			msg := err.Error()
			for _, w := range append(c.want, "/etc/pve/network-migration.conf") {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestValidNodeName(t *testing.T) {
	for name, want := range map[string]bool{
		"pve1": true, "a": true, "PVE-node-2": true, "1pve": true,
		"": false, "-a": false, "a-": false, "a.b": false, "pve_1": false, "localhost": false,
		strings.Repeat("a", 63): true, strings.Repeat("a", 64): false,
	} {
		if got := ValidNodeName(name); got != want {
			t.Errorf("ValidNodeName(%q) = %t, want %t", name, got, want)
		}
	}
}
