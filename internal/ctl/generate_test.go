package ctl

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/routing"
)

// TestGeneratedConfigIsTheDefaults: the template loads with the router's
// parser to exactly the built-in defaults, so installing it changes no
// routing, and every key of the contract is written out.
func TestGeneratedConfigIsTheDefaults(t *testing.T) {
	got, err := config.Parse("generated", []byte(configTemplate), nil)
	if err != nil {
		t.Fatalf("template does not load: %v", err)
	}
	want, err := config.Parse("generated", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	got.Sources, want.Sources = nil, nil
	got.PhaseSource, want.PhaseSource = "", ""
	got.FallbackSource, want.FallbackSource = "", ""
	got.Digest, want.Digest = "", "" // a digest of what the file says, which here is everything
	if !got.Equal(want) {
		t.Errorf("template loads to\n%+v\nwant the defaults\n%+v", got, want)
	}
	if len(got.Warnings) != 0 {
		t.Errorf("template has warnings: %v", got.Warnings)
	}
	for _, key := range []string{"phase", "fallback_enabled", "fallback_timeout", "perl_api_base_url", "perl_api_timeout",
		"log_migration_decisions", "metrics_enabled", "[features]", "enable_sdn_migration", "enable_advanced_networking",
		`# [endpoints."/api2/json/nodes/{node}/network"]`, "# use_rust", "# rust_methods", "# fallback_on_error", "# rust_timeout"} {
		if !strings.Contains(configTemplate, "\n"+key) {
			t.Errorf("template lacks %q", key)
		}
	}
	for _, p := range routing.Phases() {
		if !strings.Contains(configTemplate, p.String()) {
			t.Errorf("template does not document phase %s", p)
		}
	}
	// The commented-out endpoint example, uncommented, must be valid too.
	i := strings.Index(configTemplate, `# [endpoints.`)
	example := strings.ReplaceAll(configTemplate[i:], "# ", "")
	if _, err := config.Parse("example", []byte(example), nil); err != nil {
		t.Errorf("the endpoint example does not load when uncommented: %v", err)
	}
}

// TestGenerateConfigOutput: --output writes a file that validate accepts,
// refuses to overwrite without --force, and overwrites with it.
func TestGenerateConfigOutput(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "network-migration.conf")
	r := run(t, nil, "", "generate-config", "--output", path)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if got := readFile(t, path); got != configTemplate {
		t.Error("written file differs from the template")
	}
	if v := run(t, nil, "", "validate", "--config", path); v.code != 0 || !strings.HasPrefix(v.stdout, "OK: "+path+": phase perl-only (from file), fallback on, 0 endpoint rules\n") {
		t.Errorf("validate on generated file: exit %d\n%s%s", v.code, v.stdout, v.stderr)
	}
	if err := os.WriteFile(path, []byte("# mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = run(t, nil, "", "generate-config", "--output", path)
	if r.code != 1 || !strings.Contains(r.stderr, "already exists") || readFile(t, path) != "# mine\n" {
		t.Errorf("overwrite without --force: exit %d, stderr %q", r.code, r.stderr)
	}
	r = run(t, nil, "", "generate-config", "--force", "--output", path)
	if r.code != 0 || readFile(t, path) != configTemplate {
		t.Errorf("--force: exit %d, %s", r.code, r.stderr)
	}
	assertOnlyFiles(t, dir, "network-migration.conf")
	// stdout is the template itself, nothing else.
	if r := run(t, nil, "", "generate-config"); r.stdout != configTemplate || r.stderr != "" {
		t.Error("generate-config to stdout is not exactly the template")
	}
}

// TestCompletion runs the bash script in a real bash (when there is one)
// and checks what it offers at typical cursor positions; the zsh script
// is syntax-checked by zsh when installed and by content otherwise.
func TestCompletion(t *testing.T) {
	bashScript := run(t, nil, "", "completion", "bash").stdout
	zshScript := run(t, nil, "", "completion", "zsh").stdout
	for _, c := range commands {
		if !strings.Contains(bashScript, c.name) || !strings.Contains(zshScript, "'"+c.name+":") {
			t.Errorf("completion lacks command %s", c.name)
		}
	}
	for _, w := range []string{"rust-basic-write", "--dry-run", "--fingerprint", "--all-phases", "DELETE", "OVSBridge"} {
		if !strings.Contains(bashScript, w) || !strings.Contains(zshScript, w) {
			t.Errorf("completion lacks %s", w)
		}
	}
	if zsh, err := exec.LookPath("zsh"); err == nil {
		path := filepath.Join(t.TempDir(), "_migration-ctl")
		if err := os.WriteFile(path, []byte(zshScript), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(zsh, "-n", path).CombinedOutput(); err != nil {
			t.Errorf("zsh -n: %v\n%s", err, out)
		}
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	script := filepath.Join(t.TempDir(), "c.bash")
	if err := os.WriteFile(script, []byte(bashScript), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		line string // words; the last one is being completed
		want []string
		not  []string
	}{
		{"migration-ctl ", []string{"status", "set-phase", "generate-config"}, nil},
		{"migration-ctl set", []string{"set-phase"}, []string{"status"}},
		{"migration-ctl set-phase ", []string{"perl-only", "rust-full"}, nil},
		{"migration-ctl set-phase --dry-run rust-r", []string{"rust-read-only"}, []string{"perl-only"}},
		{"migration-ctl --config f.conf set-phase rust-a", []string{"rust-advanced"}, nil},
		{"migration-ctl fallback ", []string{"true", "false"}, nil},
		{"migration-ctl explain ", []string{"GET", "DELETE"}, nil},
		{"migration-ctl explain --type ", []string{"eth", "bridge", "OVSBridge"}, nil},
		{"migration-ctl explain GET /api2/json/nodes/pve1/network --j", []string{"--json"}, nil},
		{"migration-ctl status --", []string{"--json", "--router", "--config", "--help"}, []string{"--dry-run"}},
		{"migration-ctl completion ", []string{"bash", "zsh"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			words := strings.Split(tt.line, " ")
			var quoted []string
			for _, w := range words {
				quoted = append(quoted, "'"+w+"'")
			}
			prog := "source " + script + "\nCOMP_WORDS=(" + strings.Join(quoted, " ") + ")\nCOMP_CWORD=" +
				strconv.Itoa(len(words)-1) + "\n_migration_ctl\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
			out, err := exec.Command(bash, "--norc", "-c", prog).CombinedOutput()
			if err != nil {
				t.Fatalf("bash: %v\n%s", err, out)
			}
			got := strings.Fields(string(out))
			for _, w := range tt.want {
				if !slices.Contains(got, w) {
					t.Errorf("completions %v lack %s", got, w)
				}
			}
			for _, w := range tt.not {
				if slices.Contains(got, w) {
					t.Errorf("completions %v include %s", got, w)
				}
			}
		})
	}
}
