package ctl

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden with the current output")

// result is one migration-ctl run.
type result struct {
	code           int
	stdout, stderr string
}

// run calls Run as main does, with an environment made only of env (never
// the test process's own), and stdin.
func run(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	getenv := func(k string) string { return env[k] }
	code := Run(context.Background(), args, strings.NewReader(stdin), &out, &errb, getenv)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// fixtureDir copies testdata/*.conf into a fresh directory, so tests may
// edit them, and returns it.
func fixtureDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files, err := filepath.Glob("testdata/*.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func expandArgs(dir string, args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = strings.ReplaceAll(a, "$DIR", dir)
	}
	return out
}

// normalise makes an output comparable across runs: the temporary
// directory becomes $DIR.
func normalise(dir, s string) string {
	return strings.ReplaceAll(s, dir, "$DIR")
}

// checkGolden compares got with testdata/NAME.golden; -update rewrites it.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/ctl -run %s -update to create it)", err, t.Name())
	}
	if string(want) != got {
		t.Errorf("output differs from %s (-want +got):\n%s", path, lineDiff(string(want), got))
	}
}

// lineDiff is a small line-by-line comparison for failure messages.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n- %q\n+ %q\n", i+1, wl, gl)
		}
	}
	return b.String()
}

func (r result) golden(dir string) string {
	return normalise(dir, fmt.Sprintf("exit: %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr))
}

// TestGolden runs every command's typical and failing invocations and
// compares exit status, stdout and stderr with testdata/*.golden.
func TestGolden(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		code int
	}{
		{"help", []string{"--help"}, nil, 0},
		{"no-command", nil, nil, 2},
		{"unknown-command", []string{"stauts"}, nil, 2},
		{"help-explain", []string{"explain", "-h"}, nil, 0},
		{"help-set-phase", []string{"help", "set-phase"}, nil, 0},

		{"validate-ok", []string{"validate", "--config", "$DIR/commented.conf"}, nil, 0},
		{"validate-seed", []string{"validate", "--config", "$DIR/seed.conf"}, nil, 0},
		{"validate-warnings", []string{"validate", "--config", "$DIR/warn.conf"}, nil, 0},
		{"validate-warnings-json", []string{"validate", "--config", "$DIR/warn.conf", "--json"}, nil, 0},
		{"validate-invalid", []string{"validate", "--config", "$DIR/invalid.conf"}, nil, 1},
		{"validate-invalid-json", []string{"validate", "--json", "--config", "$DIR/invalid.conf"}, nil, 1},
		{"validate-missing", []string{"validate", "--config", "$DIR/nope.conf"}, nil, 1},
		{"validate-env-config", []string{"validate"}, map[string]string{"PVE_NETWORK_MIGRATION_CONFIG": "$DIR/seed.conf"}, 0},
		{"validate-env-override", []string{"validate", "--config", "$DIR/seed.conf"},
			map[string]string{"PVE_NETWORK_MIGRATION_PHASE": "RustFull", "PVE_NETWORK_MIGRATION_FALLBACK": "off"}, 0},
		{"validate-env-bad", []string{"validate", "--config", "$DIR/seed.conf"},
			map[string]string{"PVE_NETWORK_MIGRATION_PHASE": "rust-ful", "PERL_API_TOKEN": "PVEAPIToken=root@pam!x=s3cret"}, 1},
		{"validate-extra-arg", []string{"validate", "extra", "--config", "$DIR/seed.conf"}, nil, 2},

		{"explain-read", []string{"explain", "GET", "/api2/json/nodes/pve1/network", "--config", "$DIR/seed.conf"}, nil, 0},
		{"explain-phase-later", []string{"explain", "PUT", "/api2/json/nodes/pve1/network", "--config", "$DIR/commented.conf"}, nil, 0},
		{"explain-json", []string{"explain", "GET", "/api2/json/nodes/pve1/network", "--config", "$DIR/seed.conf", "--json"}, nil, 0},
		{"explain-no-type", []string{"explain", "--config", "$DIR/commented.conf", "DELETE", "/api2/extjs/nodes/pve1/network/vmbr0"}, nil, 0},
		{"explain-type-eth-all-phases", []string{"explain", "PUT", "/api2/json/nodes/pve1/network/eth0", "--type", "eth", "--all-phases", "--config", "$DIR/commented.conf"}, nil, 0},
		{"explain-override-pins-perl", []string{"explain", "get", "https://pve1:8006/api2/json/nodes/pve1/network/eth0?x=1", "--config=$DIR/commented.conf"}, nil, 0},
		{"explain-feature-disabled", []string{"explain", "GET", "/api2/json/cluster/sdn/vnets", "--config", "$DIR/sdn.conf", "--all-phases", "--json"}, nil, 0},
		{"explain-not-network-hint", []string{"explain", "GET", "/nodes/pve1/network", "--config", "$DIR/seed.conf"}, nil, 0},
		{"explain-bad-type", []string{"explain", "POST", "/api2/json/nodes/pve1/network", "--type", "brige", "--config", "$DIR/seed.conf"}, nil, 0},
		{"explain-perl-only-env", []string{"explain", "GET", "/api2/json/nodes/pve1/network", "--config", "$DIR/seed.conf"},
			map[string]string{"PVE_NETWORK_MIGRATION_PHASE": "perl-only"}, 0},
		{"explain-missing-arg", []string{"explain", "GET", "--config", "$DIR/seed.conf"}, nil, 2},
		{"explain-unknown-flag", []string{"explain", "GET", "/x", "--jsn"}, nil, 2},
		{"explain-relative-path", []string{"explain", "GET", "api2/json/nodes", "--config", "$DIR/seed.conf"}, nil, 2},
		{"explain-invalid-config", []string{"explain", "GET", "/api2/json/nodes/pve1/network", "--config", "$DIR/invalid.conf"}, nil, 1},

		{"set-phase-dry-run", []string{"set-phase", "rust-basic-write", "--dry-run", "--config", "$DIR/commented.conf"}, nil, 0},
		{"set-phase-rollback-dry-run", []string{"--config", "$DIR/commented.conf", "set-phase", "perl-only", "--dry-run"}, nil, 0},
		{"set-phase-too-far", []string{"set-phase", "rust-full", "--config", "$DIR/commented.conf"}, nil, 1},
		{"set-phase-same", []string{"set-phase", "RustReadOnly", "--config", "$DIR/commented.conf"}, nil, 0},
		{"set-phase-held-by-feature", []string{"set-phase", "rust-sdn", "--dry-run", "--config", "$DIR/sdn.conf"}, nil, 0},
		{"set-phase-env-warning", []string{"set-phase", "rust-basic-write", "--dry-run", "--config", "$DIR/commented.conf"},
			map[string]string{"PVE_NETWORK_MIGRATION_PHASE": "perl-only"}, 0},
		{"set-phase-create-dry-run", []string{"set-phase", "rust-read-only", "--dry-run", "--config", "$DIR/new.conf"}, nil, 0},
		{"set-phase-invalid-file", []string{"set-phase", "perl-only", "--config", "$DIR/invalid.conf"}, nil, 1},
		{"set-phase-invalid-file-phase", []string{"set-phase", "rust-basic-write", "--config", "$DIR/invalid.conf"}, nil, 1},
		{"set-phase-no-dir", []string{"set-phase", "rust-read-only", "--config", "$DIR/no-such-dir/network-migration.conf"}, nil, 1},
		{"set-phase-unknown", []string{"set-phase", "rust-raed-only", "--config", "$DIR/commented.conf"}, nil, 2},
		{"set-phase-no-arg", []string{"set-phase", "--config", "$DIR/commented.conf"}, nil, 2},
		{"fallback-dry-run", []string{"fallback", "false", "--dry-run", "--config", "$DIR/commented.conf"}, nil, 0},
		{"fallback-env-warning", []string{"fallback", "false", "--dry-run", "--config", "$DIR/seed.conf"},
			map[string]string{"PVE_NETWORK_MIGRATION_FALLBACK": "true"}, 0},
		{"fallback-same", []string{"fallback", "true", "--config", "$DIR/seed.conf"}, nil, 0},
		{"fallback-bad-value", []string{"fallback", "maybe", "--config", "$DIR/seed.conf"}, nil, 2},

		{"generate-config", []string{"generate-config"}, nil, 0},
		{"generate-config-exists", []string{"generate-config", "--output", "$DIR/seed.conf"}, nil, 1},

		{"status-file", []string{"status", "--config", "$DIR/commented.conf", "--router", "unix:$DIR/no-router.sock"}, nil, 0},
		{"status-file-json", []string{"status", "--json", "--config", "$DIR/commented.conf", "--router", "unix:$DIR/no-router.sock"}, nil, 0},
		{"status-file-env", []string{"status", "--config", "$DIR/seed.conf", "--router", "unix:$DIR/no-router.sock"},
			map[string]string{"PVE_NETWORK_MIGRATION_PHASE": "perl-only"}, 0},
		{"status-nothing", []string{"status", "--config", "$DIR/invalid.conf", "--router", "unix:$DIR/no-router.sock"}, nil, 1},

		{"test-rust-no-url", []string{"test-rust", "--config", "$DIR/seed.conf"}, nil, 2},
		{"test-perl-bad-fingerprint", []string{"test-perl", "--fingerprint", "AB:CD", "--config", "$DIR/seed.conf"}, nil, 2},
		{"test-perl-bad-token", []string{"test-perl", "--config", "$DIR/seed.conf"}, map[string]string{"PERL_API_TOKEN": "PVEAPIToken=root@pam!x=topsecret"}, 1},

		{"completion-unknown", []string{"completion", "fish"}, nil, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := fixtureDir(t)
			env := map[string]string{}
			for k, v := range tt.env {
				env[k] = strings.ReplaceAll(v, "$DIR", dir)
			}
			r := run(t, env, "", expandArgs(dir, tt.args)...)
			if r.code != tt.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, tt.code, r.stdout, r.stderr)
			}
			checkGolden(t, tt.name, r.golden(dir))
			for _, secret := range []string{"s3cret", "topsecret"} {
				if strings.Contains(r.stdout+r.stderr, secret) {
					t.Errorf("output shows the secret %q", secret)
				}
			}
		})
	}
}

// TestExitCodes checks the contract's exit statuses for every command:
// 0 success, 1 failure, 2 usage error, and that --help exits 0 at every
// level and prints to stdout.
func TestExitCodes(t *testing.T) {
	dir := fixtureDir(t)
	seed := filepath.Join(dir, "seed.conf")
	for _, c := range commands {
		t.Run(c.name+"/help", func(t *testing.T) {
			for _, h := range []string{"--help", "-h", "-help"} {
				r := run(t, nil, "", c.name, h)
				if r.code != ExitOK || !strings.HasPrefix(r.stdout, "Usage: migration-ctl "+c.name) || r.stderr != "" {
					t.Errorf("%s %s: exit %d, stdout %.40q, stderr %q", c.name, h, r.code, r.stdout, r.stderr)
				}
			}
		})
		t.Run(c.name+"/unknown-flag", func(t *testing.T) {
			r := run(t, nil, "", c.name, "--no-such-flag")
			if r.code != ExitUsage || !strings.Contains(r.stderr, "unknown flag --no-such-flag") || !strings.Contains(r.stderr, "--help' for usage") {
				t.Errorf("exit %d, stderr %q", r.code, r.stderr)
			}
		})
	}
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"validate ok", []string{"validate", "--config", seed}, 0},
		{"validate bad", []string{"validate", "--config", filepath.Join(dir, "invalid.conf")}, 1},
		{"validate args", []string{"validate", "x"}, 2},
		{"explain ok", []string{"explain", "GET", "/api2/json/nodes/n/network", "--config", seed}, 0},
		{"explain missing file", []string{"explain", "GET", "/", "--config", filepath.Join(dir, "missing.conf")}, 1},
		{"explain one arg", []string{"explain", "GET"}, 2},
		{"explain three args", []string{"explain", "GET", "/a", "/b"}, 2},
		{"explain flag without value", []string{"explain", "GET", "/a", "--type"}, 2},
		{"set-phase ok", []string{"set-phase", "rust-basic-write", "--config", seed}, 0},
		{"set-phase too far", []string{"set-phase", "rust-full", "--config", seed}, 1},
		{"set-phase unknown", []string{"set-phase", "warp-speed", "--config", seed}, 2},
		{"set-phase two args", []string{"set-phase", "perl-only", "rust-full", "--config", seed}, 2},
		{"fallback ok", []string{"fallback", "off", "--config", seed}, 0},
		{"fallback no arg", []string{"fallback", "--config", seed}, 2},
		{"fallback bad", []string{"fallback", "sometimes"}, 2},
		{"test-perl refused", []string{"test-perl", "--url", "http://127.0.0.1:1", "--timeout", "2s"}, 1},
		{"test-perl bad url", []string{"test-perl", "--url", "ftp://x"}, 2},
		{"test-perl bad timeout", []string{"test-perl", "--timeout", "soon"}, 2},
		{"test-perl insecure and pin", []string{"test-perl", "--url", "https://x", "--insecure", "--fingerprint", strings.Repeat("ab", 32)}, 2},
		{"test-rust no url", []string{"test-rust"}, 2},
		{"test-rust args", []string{"test-rust", "x"}, 2},
		{"generate-config ok", []string{"generate-config"}, 0},
		{"generate-config exists", []string{"generate-config", "--output", seed}, 1},
		{"generate-config args", []string{"generate-config", "x"}, 2},
		{"status file", []string{"status", "--config", seed, "--router", "unix:" + filepath.Join(dir, "none.sock")}, 0},
		{"status args", []string{"status", "x"}, 2},
		{"status bad timeout", []string{"status", "--timeout", "x"}, 2},
		{"completion bash", []string{"completion", "bash"}, 0},
		{"completion zsh", []string{"completion", "zsh"}, 0},
		{"completion none", []string{"completion"}, 2},
		{"help command", []string{"help"}, 0},
		{"help unknown", []string{"help", "nope"}, 2},
		{"only flags", []string{"--config", seed}, 2},
		{"bad flag syntax", []string{"validate", "---config", seed}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, nil, "", tt.args...)
			if r.code != tt.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, tt.code, r.stdout, r.stderr)
			}
		})
	}
}

// TestFlagsAnywhere checks that flags before, between and after the
// arguments (and before the command) give the same answer, and that "--"
// ends the flags.
func TestFlagsAnywhere(t *testing.T) {
	dir := fixtureDir(t)
	cfg := filepath.Join(dir, "seed.conf")
	want := run(t, nil, "", "explain", "--config", cfg, "--json", "--type", "eth", "PUT", "/api2/json/nodes/pve1/network/eth0")
	if want.code != 0 {
		t.Fatalf("baseline: %+v", want)
	}
	for _, args := range [][]string{
		{"explain", "PUT", "/api2/json/nodes/pve1/network/eth0", "--config", cfg, "--json", "--type", "eth"},
		{"explain", "PUT", "--json", "/api2/json/nodes/pve1/network/eth0", "--type=eth", "--config=" + cfg},
		{"--config", cfg, "explain", "-json", "PUT", "-type", "eth", "/api2/json/nodes/pve1/network/eth0"},
		{"--config=" + cfg, "explain", "--json=true", "--type", "eth", "--", "PUT", "/api2/json/nodes/pve1/network/eth0"},
		{"--type", "eth", "--config", cfg, "--json", "explain", "PUT", "/api2/json/nodes/pve1/network/eth0"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			got := run(t, nil, "", args...)
			if got != want {
				t.Errorf("got %+v\nwant %+v", got, want)
			}
		})
	}
	// After "--" a flag-like word is an argument.
	r := run(t, nil, "", "explain", "--config", cfg, "--", "GET", "--json")
	if r.code != ExitUsage || !strings.Contains(r.stderr, `PATH must start with /`) {
		t.Errorf("after --: %+v", r)
	}
}

// TestColour checks that colour never reaches a pipe, and never appears
// with NO_COLOR even on a terminal-like writer.
func TestColour(t *testing.T) {
	if newStyle(io.Discard, func(string) string { return "" }).on {
		t.Error("colour on for a non-terminal writer")
	}
	if f, err := os.Open(os.DevNull); err == nil {
		defer f.Close()
		if newStyle(f, func(k string) string { return map[string]string{"NO_COLOR": "1"}[k] }).on {
			t.Error("colour on with NO_COLOR")
		}
	}
	s := style{on: true}
	if got := visibleWidth(s.bad("abc")); got != 3 {
		t.Errorf("visibleWidth of a coloured word = %d, want 3", got)
	}
	var b strings.Builder
	tb := &table{}
	tb.add(s.good("x"), "1")
	tb.add("long", "2")
	tb.write(&b, "")
	if lines := strings.Split(b.String(), "\n"); visibleWidth(lines[0]) != visibleWidth(lines[1]) {
		t.Errorf("coloured table misaligned:\n%s", b.String())
	}
}
