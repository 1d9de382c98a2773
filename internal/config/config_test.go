package config

import (
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	gotoml "github.com/pelletier/go-toml/v2"

	"github.com/pve-migration/router/routing"
)

var update = flag.Bool("update", false, "rewrite testdata/invalid/*.err from the current output")

// envMap turns a map into the env getter Parse takes.
func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func mustParse(t *testing.T, name, data string, env map[string]string) *Snapshot {
	t.Helper()
	s, err := Parse(name, []byte(data), envMap(env))
	if err != nil {
		t.Fatalf("Parse(%s): %v", name, err)
	}
	return s
}

// TestSeedExamplesLoadUnchanged: the contract requires the seed README's
// files to load as they are; testdata holds them byte for byte.
func TestSeedExamplesLoadUnchanged(t *testing.T) {
	t.Run("configuration-file-format", func(t *testing.T) {
		s, err := Load("testdata/seed-example.conf", nil)
		if err != nil {
			t.Fatal(err)
		}
		p := s.Policy
		if p.Phase != routing.RustReadOnly || !p.FallbackEnabled || p.FallbackTimeout != 30*time.Second {
			t.Errorf("phase/fallback/timeout = %v/%v/%v, want rust-read-only/true/30s", p.Phase, p.FallbackEnabled, p.FallbackTimeout)
		}
		if p.Features != (routing.Features{EnableSDNMigration: false, EnableAdvancedNetworking: true}) {
			t.Errorf("features = %+v", p.Features)
		}
		if s.PerlAPIBaseURL != "http://localhost:8006" || s.PerlAPITimeout != 60*time.Second || !s.LogDecisions || !s.MetricsEnabled {
			t.Errorf("perl url/timeout/log/metrics = %q/%v/%v/%v", s.PerlAPIBaseURL, s.PerlAPITimeout, s.LogDecisions, s.MetricsEnabled)
		}
		if len(p.Endpoints) != 1 {
			t.Fatalf("endpoints = %v, want one entry", p.Endpoints)
		}
		r, ok := p.Endpoints["/nodes/{node}/network"]
		if !ok {
			t.Fatalf("endpoints keyed %v, want /nodes/{node}/network", p.Endpoints)
		}
		if r.UseRust == nil || !*r.UseRust || r.FallbackOnError == nil || !*r.FallbackOnError ||
			r.RustTimeout != 30*time.Second || !reflect.DeepEqual(r.RustMethods, []string{"GET"}) {
			t.Errorf("endpoint rule = %+v", r)
		}
		if !s.FileExists || s.Path != "testdata/seed-example.conf" || s.PhaseSource != SourceFile || len(s.Warnings) != 0 {
			t.Errorf("exists/path/source/warnings = %v/%q/%v/%v", s.FileExists, s.Path, s.PhaseSource, s.Warnings)
		}
		if s.LoadedAt.IsZero() {
			t.Error("Load left LoadedAt zero")
		}
		d := routing.Decide(&s.Policy, routing.Request{Method: "GET", Path: "/api2/json/nodes/pve1/network"})
		if d.Backend != routing.Rust || d.Reason != routing.ReasonEndpointOverride {
			t.Errorf("Decide GET network = %+v, want rust by endpoint-override", d)
		}
	})
	t.Run("quick-start", func(t *testing.T) {
		s, err := Load("testdata/seed-quickstart.conf", nil)
		if err != nil {
			t.Fatal(err)
		}
		if s.Policy.Phase != routing.RustReadOnly || s.Sources["features.enable_sdn_migration"] != SourceDefault {
			t.Errorf("phase %v, features source %v", s.Policy.Phase, s.Sources["features.enable_sdn_migration"])
		}
	})
}

func TestDefaults(t *testing.T) {
	want := routing.DefaultPolicy()
	check := func(t *testing.T, s *Snapshot) {
		t.Helper()
		p := s.Policy
		if p.Phase != want.Phase || p.FallbackEnabled != want.FallbackEnabled || p.FallbackTimeout != 30*time.Second ||
			p.Features != want.Features || len(p.Endpoints) != 0 {
			t.Errorf("policy = %+v, want contract defaults", p)
		}
		if s.PerlAPIBaseURL != "https://127.0.0.1:8006" || s.PerlAPITimeout != 60*time.Second || !s.LogDecisions || !s.MetricsEnabled {
			t.Errorf("snapshot = %+v, want contract defaults", s)
		}
		if s.PhaseSource != SourceDefault || s.FallbackSource != SourceDefault || s.PerlAPIToken.IsSet() {
			t.Errorf("sources %v/%v token set %v", s.PhaseSource, s.FallbackSource, s.PerlAPIToken.IsSet())
		}
	}
	t.Run("empty file", func(t *testing.T) {
		s := mustParse(t, "empty.conf", "", nil)
		check(t, s)
		if !s.FileExists || s.Path != "empty.conf" {
			t.Errorf("exists/path = %v/%q", s.FileExists, s.Path)
		}
	})
	t.Run("missing implicit file", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "network-migration.conf")
		s, err := LoadResolved(missing, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		check(t, s)
		if s.FileExists || s.Path != "" {
			t.Errorf("exists/path = %v/%q, want false/\"\"", s.FileExists, s.Path)
		}
	})
	t.Run("missing named file", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "named.conf")
		for name, load := range map[string]func() (*Snapshot, error){
			"Load":         func() (*Snapshot, error) { return Load(missing, nil) },
			"LoadResolved": func() (*Snapshot, error) { return LoadResolved(missing, true, nil) },
		} {
			_, err := load()
			if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
				t.Errorf("%s: err = %v, want not-exist naming %s", name, err, missing)
			}
		}
	})
	t.Run("missing implicit file with env", func(t *testing.T) {
		s, err := LoadResolved(filepath.Join(t.TempDir(), "x.conf"), false, envMap(map[string]string{EnvPhase: "rust-full"}))
		if err != nil {
			t.Fatal(err)
		}
		if s.Policy.Phase != routing.RustFull || s.PhaseSource != SourceEnv {
			t.Errorf("phase %v from %v, want rust-full from env", s.Policy.Phase, s.PhaseSource)
		}
	})
}

func TestResolvePath(t *testing.T) {
	tests := []struct {
		name, flag, env, want string
		explicit              bool
	}{
		{"default", "", "", DefaultPath, false},
		{"env", "", "/srv/a.conf", "/srv/a.conf", true},
		{"flag beats env", "/srv/b.conf", "/srv/a.conf", "/srv/b.conf", true},
		{"default path named", DefaultPath, "", DefaultPath, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, explicit := ResolvePath(tt.flag, envMap(map[string]string{EnvConfig: tt.env}))
			if got != tt.want || explicit != tt.explicit {
				t.Errorf("ResolvePath = %q, %v; want %q, %v", got, explicit, tt.want, tt.explicit)
			}
		})
	}
}

func TestEnvOverridesBeatFile(t *testing.T) {
	const file = `phase = "rust-read-only"
fallback_enabled = true
perl_api_base_url = "http://localhost:8006"
`
	tests := []struct {
		name         string
		env          map[string]string
		phase        routing.Phase
		phaseSrc     Source
		fallback     bool
		fallbackSrc  Source
		url, tokenID string
	}{
		{"none", nil, routing.RustReadOnly, SourceFile, true, SourceFile, "http://localhost:8006", ""},
		{"phase rollback", map[string]string{EnvPhase: "perl-only"}, routing.PerlOnly, SourceEnv, true, SourceFile, "http://localhost:8006", ""},
		{"phase seed spelling", map[string]string{EnvPhase: "RustFull"}, routing.RustFull, SourceEnv, true, SourceFile, "http://localhost:8006", ""},
		{"fallback off", map[string]string{EnvFallback: "false"}, routing.RustReadOnly, SourceFile, false, SourceEnv, "http://localhost:8006", ""},
		{"fallback 0", map[string]string{EnvFallback: "0"}, routing.RustReadOnly, SourceFile, false, SourceEnv, "http://localhost:8006", ""},
		{"fallback no", map[string]string{EnvFallback: "NO"}, routing.RustReadOnly, SourceFile, false, SourceEnv, "http://localhost:8006", ""},
		{"fallback off word", map[string]string{EnvFallback: " off "}, routing.RustReadOnly, SourceFile, false, SourceEnv, "http://localhost:8006", ""},
		{"fallback on", map[string]string{EnvFallback: "on"}, routing.RustReadOnly, SourceFile, true, SourceEnv, "http://localhost:8006", ""},
		{"fallback yes", map[string]string{EnvFallback: "yes"}, routing.RustReadOnly, SourceFile, true, SourceEnv, "http://localhost:8006", ""},
		{"fallback 1", map[string]string{EnvFallback: "1"}, routing.RustReadOnly, SourceFile, true, SourceEnv, "http://localhost:8006", ""},
		{"empty vars are unset", map[string]string{EnvPhase: "", EnvFallback: ""}, routing.RustReadOnly, SourceFile, true, SourceFile, "http://localhost:8006", ""},
		{"url", map[string]string{EnvPerlAPIURL: "https://pve1.example:8006"}, routing.RustReadOnly, SourceFile, true, SourceFile, "https://pve1.example:8006", ""},
		{"token", map[string]string{EnvPerlAPIToken: "root@pam!router=0b8e7a3c-4f5d-4e57-a1d6-2b3c4d5e6f70"}, routing.RustReadOnly, SourceFile, true, SourceFile, "http://localhost:8006", "root@pam!router"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustParse(t, "f.conf", file, tt.env)
			if s.Policy.Phase != tt.phase || s.PhaseSource != tt.phaseSrc {
				t.Errorf("phase %v from %v, want %v from %v", s.Policy.Phase, s.PhaseSource, tt.phase, tt.phaseSrc)
			}
			if s.Policy.FallbackEnabled != tt.fallback || s.FallbackSource != tt.fallbackSrc {
				t.Errorf("fallback %v from %v, want %v from %v", s.Policy.FallbackEnabled, s.FallbackSource, tt.fallback, tt.fallbackSrc)
			}
			if s.PerlAPIBaseURL != tt.url {
				t.Errorf("url %q, want %q", s.PerlAPIBaseURL, tt.url)
			}
			if s.PerlAPIToken.ID() != tt.tokenID {
				t.Errorf("token id %q, want %q", s.PerlAPIToken.ID(), tt.tokenID)
			}
			if tt.tokenID != "" && s.Sources["perl_api_token"] != SourceEnv {
				t.Errorf("token source %v", s.Sources["perl_api_token"])
			}
		})
	}
}

func TestInvalidEnv(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"phase", map[string]string{EnvPhase: "rust-reed-only"},
			`environment: PVE_NETWORK_MIGRATION_PHASE: unknown phase "rust-reed-only" (valid: perl-only, rust-read-only, rust-basic-write, rust-advanced, rust-sdn, rust-full); did you mean "rust-read-only"?`},
		{"fallback", map[string]string{EnvFallback: "maybe"},
			`environment: PVE_NETWORK_MIGRATION_FALLBACK: expected true/false, 1/0, yes/no or on/off, got "maybe"`},
		{"url scheme", map[string]string{EnvPerlAPIURL: "pve1:8006"},
			`environment: PERL_API_URL: invalid URL "pve1:8006": scheme must be http or https`},
		{"url credentials", map[string]string{EnvPerlAPIURL: "https://root:hunter2@pve1:8006"},
			`environment: PERL_API_URL: invalid URL "https://root:xxxxx@pve1:8006": must not contain credentials (use PERL_API_TOKEN)`},
		{"url unparsable", map[string]string{EnvPerlAPIURL: "https://pve1:port"},
			`environment: PERL_API_URL: invalid URL: invalid port ":port" after host`},
		{"token format", map[string]string{EnvPerlAPIToken: "hunter2"},
			`environment: PERL_API_TOKEN: not a PVE API token: expected USER@REALM!TOKENID=SECRET (value not shown)`},
		{"token without secret", map[string]string{EnvPerlAPIToken: "root@pam!router"},
			`environment: PERL_API_TOKEN: not a PVE API token: expected USER@REALM!TOKENID=SECRET (value not shown)`},
		{"token with header prefix", map[string]string{EnvPerlAPIToken: "PVEAPIToken=root@pam!router=hunter2"},
			`environment: PERL_API_TOKEN: drop the "PVEAPIToken=" prefix: expected USER@REALM!TOKENID=SECRET (value not shown)`},
		{"all at once, in a stable order", map[string]string{EnvPhase: "x", EnvFallback: "x", EnvPerlAPIURL: "x", EnvPerlAPIToken: "x"},
			`environment: PVE_NETWORK_MIGRATION_PHASE: unknown phase "x" (valid: perl-only, rust-read-only, rust-basic-write, rust-advanced, rust-sdn, rust-full)
environment: PVE_NETWORK_MIGRATION_FALLBACK: expected true/false, 1/0, yes/no or on/off, got "x"
environment: PERL_API_URL: invalid URL "x": scheme must be http or https
environment: PERL_API_TOKEN: not a PVE API token: expected USER@REALM!TOKENID=SECRET (value not shown)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("f.conf", nil, envMap(tt.env))
			if err == nil {
				t.Fatal("no error")
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n%s\nwant:\n%s", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error leaks the secret: %s", err)
			}
		})
	}
}

// TestInvalidFiles checks every fixture in testdata/invalid against its
// golden .err file (regenerate with -update and review the diff).
func TestInvalidFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.conf")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".conf")
		t.Run(name, func(t *testing.T) {
			_, err := Load(f, nil)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Load(%s) = %v, want *ValidationError", f, err)
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(f, ".conf") + ".err"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, rerr := os.ReadFile(golden)
			if rerr != nil {
				t.Fatalf("%v (run with -update)", rerr)
			}
			if got != string(want) {
				t.Errorf("error:\n%s\nwant (%s):\n%s", got, golden, want)
			}
			for _, p := range ve.Problems {
				if p.File != f {
					t.Errorf("problem %q does not name the file %s", p, f)
				}
			}
			if strings.Contains(got, "hunter2") {
				t.Errorf("error leaks a credential: %s", got)
			}
		})
	}
}

func TestManyProblemsReportedAtOnce(t *testing.T) {
	_, err := Load("testdata/invalid/many-problems.conf", nil)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v", err)
	}
	wantKeys := []string{
		`endpoints."/api2/json/nodes/{node}/network".rust_methods`,
		`endpoints."/api2/json/nodes/{node}/network".rust_timeout`,
		`endpoints."/api2/json/nodes/{node}/netwrk"`,
		`endpoints."/nodes/{node}/network"`,
		"fallback_enabled", "fallback_timeout", "features.enable_sdn_migraton",
		"log_migration_decisions", "metrics_enable", "perl_api_base_url", "perl_api_timeout", "phase",
	}
	var got []string
	for _, p := range ve.Problems {
		got = append(got, p.Key)
	}
	if !reflect.DeepEqual(got, wantKeys) {
		t.Errorf("problem keys:\n%q\nwant:\n%q", got, wantKeys)
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != len(wantKeys) {
		t.Errorf("Error() has %d lines, want one per problem (%d)", n, len(wantKeys))
	}
}

func TestSyntaxErrorCarriesPosition(t *testing.T) {
	_, err := Parse("net.conf", []byte("phase = \"rust-full\"\n\nfallback_enabled = = true\n"), nil)
	var de *gotoml.DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("err = %v, want a *toml.DecodeError inside", err)
	}
	if !strings.HasPrefix(err.Error(), "net.conf:3:20: TOML syntax error: ") {
		t.Errorf("err = %q, want file:line:col prefix", err)
	}
}

func TestValues(t *testing.T) {
	s := mustParse(t, "v.conf", `
fallback_timeout = 2.5
perl_api_timeout = 1

[endpoints."/api2/extjs/nodes/{node}/network/{iface}"]
use_rust = true
rust_methods = ["get", "Put", "GET"]
rust_timeout = 0.25

[endpoints."/cluster/sdn/vnets"]
use_rust = false
rust_methods = []
`, nil)
	if s.Policy.FallbackTimeout != 2500*time.Millisecond || s.PerlAPITimeout != time.Second {
		t.Errorf("timeouts %v/%v", s.Policy.FallbackTimeout, s.PerlAPITimeout)
	}
	r := s.Policy.Endpoints["/nodes/{node}/network/{iface}"]
	if !reflect.DeepEqual(r.RustMethods, []string{"GET", "PUT"}) || r.RustTimeout != 250*time.Millisecond || r.FallbackOnError != nil {
		t.Errorf("iface rule = %+v", r)
	}
	v := s.Policy.Endpoints["/cluster/sdn/vnets"]
	if v.RustMethods == nil || len(v.RustMethods) != 0 {
		t.Errorf("rust_methods = [] must stay empty and non-nil (no method), got %#v", v.RustMethods)
	}
	wantWarn := `v.conf: endpoints."/cluster/sdn/vnets".rust_methods: has no effect unless use_rust = true`
	if len(s.Warnings) != 1 || s.Warnings[0].String() != wantWarn {
		t.Errorf("warnings = %v, want [%s]", s.Warnings, wantWarn)
	}
}

func TestWarningForMethodTheTemplateLacks(t *testing.T) {
	s := mustParse(t, "w.conf", `[endpoints."/api2/json/nodes/{node}/network/{iface}"]
use_rust = true
rust_methods = ["GET", "POST"]
`, nil)
	want := `w.conf: endpoints."/api2/json/nodes/{node}/network/{iface}".rust_methods: PVE defines no POST for /nodes/{node}/network/{iface} (it has GET, PUT, DELETE)`
	if len(s.Warnings) != 1 || s.Warnings[0].String() != want {
		t.Errorf("warnings = %v, want [%s]", s.Warnings, want)
	}
}

func TestSnapshotEqual(t *testing.T) {
	a := mustParse(t, "f.conf", "phase = \"rust-full\"\n", nil)
	b := mustParse(t, "f.conf", "# a comment\nphase   =   \"RustFull\"\n", nil)
	b.LoadedAt = time.Now()
	c := mustParse(t, "f.conf", "phase = \"rust-sdn\"\n", nil)
	if !a.Equal(b) {
		t.Error("comment and spelling changes must compare equal")
	}
	if a.Equal(c) {
		t.Error("different phases compare equal")
	}
	if a.Equal(nil) || !(*Snapshot)(nil).Equal(nil) {
		t.Error("nil handling")
	}
}
