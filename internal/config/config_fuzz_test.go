package config_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/routing"
)

// parseBudget bounds one Parse call. Files are tiny (a few hundred bytes in
// practice); the bound catches pathological parser behaviour, not speed.
const parseBudget = 2 * time.Second

// FuzzParse feeds random TOML and random environment overrides to Parse,
// the loader shared by the router, the watcher and `migration-ctl
// validate`. Properties:
//
//   - it never panics and returns either a snapshot or an error;
//   - it is deterministic (same input, same message or same snapshot);
//   - the PERL_API_TOKEN value never reaches an error message or any
//     printed or JSON form of the snapshot (checked differentially: the
//     same input with a differently spelled token of the same shape must
//     produce output that contains the token exactly as often, i.e. never,
//     unless the file itself carries that string);
//   - a valid PVE_NETWORK_MIGRATION_PHASE always wins over the file (the
//     rollback when pmxcfs is read-only);
//   - it finishes within parseBudget.
func FuzzParse(f *testing.F) {
	for _, dir := range []string{"testdata", "testdata/invalid"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.conf"))
		for _, name := range files {
			b, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b, "root@pam!router=0d7f3c1e-5b0b-4c1e-9a43-6a0c8f2e9b11", "", "")
		}
	}
	f.Add([]byte("phase = \"rust-full\"\n"), "PVEAPIToken=root@pam!x=secret-value-1", "perl-only", "https://pve1:8006")
	f.Add([]byte("phase = \"rust-full\"\n"), "not a token at all: s3cr3t", "RustFull", "ftp://user:pw@host")
	f.Add([]byte("perl_api_base_url = \"https://root:pw@pve1:8006\"\n"), "root@pam!t=abc", "", "http://[::1]:8006")
	f.Add([]byte("[endpoints.\"/api2/json/nodes/{node}/network\"]\nuse_rust = true\nrust_methods = [\"GET\", \"GET\"]\n"), "u@pve!t=Z9", "rust-reed-only", "")
	f.Add([]byte("a = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"), "", "", "")
	f.Add([]byte("fallback_timeout = 1e308\nperl_api_timeout = 9223372036.9\n"), "x@y!z=\x00\xff", "\t perl-only \n", " ")

	f.Fuzz(func(t *testing.T, data []byte, token, phaseEnv, urlEnv string) {
		if len(data) > 64<<10 {
			t.Skip("larger than any config file")
		}
		env := func(tok string) func(string) string {
			return func(k string) string {
				switch k {
				case config.EnvPerlAPIToken:
					return tok
				case config.EnvPhase:
					return phaseEnv
				case config.EnvPerlAPIURL:
					return urlEnv
				}
				return ""
			}
		}

		start := time.Now()
		snap, err := config.Parse("fuzz.conf", data, env(token))
		if d := time.Since(start); d > parseBudget {
			t.Fatalf("Parse took %v for %d bytes", d, len(data))
		}
		if (snap == nil) == (err == nil) {
			t.Fatalf("Parse returned snapshot %v and error %v: want exactly one", snap != nil, err)
		}

		// Deterministic.
		snap2, err2 := config.Parse("fuzz.conf", data, env(token))
		if errText(err) != errText(err2) {
			t.Fatalf("non-deterministic error:\n%s\n---\n%s", errText(err), errText(err2))
		}
		if snap != nil && !snap.Equal(snap2) {
			t.Fatalf("non-deterministic snapshot")
		}

		if err != nil {
			var ve *config.ValidationError
			if errors.As(err, &ve) && len(ve.Problems) == 0 {
				t.Fatalf("ValidationError without problems")
			}
		} else {
			checkSnapshot(t, snap, phaseEnv)
		}

		// The token must never come out. The shape-preserving respelling
		// keeps the token's shape, so both runs take (nearly) the same paths; a
		// token found only in the first run's output came from the env.
		other := respell(token)
		if other == token || len(strings.TrimSpace(token)) < 4 {
			return
		}
		osnap, oerr := config.Parse("fuzz.conf", data, env(other))
		if got, base := strings.Count(errText(err), token), strings.Count(errText(oerr), token); got > base {
			t.Fatalf("PERL_API_TOKEN value leaked into the error:\n%s", errText(err))
		}
		if snap != nil && osnap != nil {
			for _, form := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
				if got, base := strings.Count(fmt.Sprintf(form, snap), token), strings.Count(fmt.Sprintf(form, osnap), token); got > base {
					t.Fatalf("PERL_API_TOKEN value leaked into the snapshot printed with %s", form)
				}
			}
			j1, _ := json.Marshal(snap)
			j2, _ := json.Marshal(osnap)
			if strings.Count(string(j1), token) > strings.Count(string(j2), token) {
				t.Fatalf("PERL_API_TOKEN value leaked into the snapshot's JSON")
			}
			if snap.PerlAPIToken.Reveal() != strings.TrimSpace(token) {
				t.Fatalf("Reveal() = %d bytes, want the trimmed env value", len(snap.PerlAPIToken.Reveal()))
			}
		}
	})
}

// checkSnapshot asserts what every successfully parsed snapshot must hold.
func checkSnapshot(t *testing.T, s *config.Snapshot, phaseEnv string) {
	t.Helper()
	p := s.Policy
	if p.Phase.String() == "" || !validPhase(p.Phase) {
		t.Fatalf("snapshot phase %d is not a known phase", p.Phase)
	}
	if p.FallbackTimeout <= 0 || s.PerlAPITimeout <= 0 {
		t.Fatalf("non-positive timeouts: fallback %v perl %v", p.FallbackTimeout, s.PerlAPITimeout)
	}
	if s.PerlAPIBaseURL == "" || !(strings.HasPrefix(s.PerlAPIBaseURL, "http://") || strings.HasPrefix(s.PerlAPIBaseURL, "https://")) {
		t.Fatalf("perl_api_base_url %q is not http(s)", s.PerlAPIBaseURL)
	}
	if p.Endpoints == nil {
		t.Fatalf("nil endpoints map")
	}
	for tmpl, r := range p.Endpoints {
		if _, ok := routing.TemplateKey(tmpl); !ok {
			t.Fatalf("endpoint key %q is not a catalogue template", tmpl)
		}
		if r.RustTimeout < 0 {
			t.Fatalf("endpoint %q: negative rust_timeout", tmpl)
		}
	}
	if want, err := routing.ParsePhase(strings.TrimSpace(phaseEnv)); err == nil && strings.TrimSpace(phaseEnv) != "" {
		if p.Phase != want || s.PhaseSource != config.SourceEnv {
			t.Fatalf("%s=%q: phase %v from %s, want %v from env", config.EnvPhase, phaseEnv, p.Phase, s.PhaseSource, want)
		}
	}
}

func validPhase(p routing.Phase) bool {
	for _, q := range routing.Phases() {
		if p == q {
			return true
		}
	}
	return false
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// respell maps letters and digits to the next one in their class
// (a→b, z→a, 9→0) and keeps everything else, so the result has the same
// shape (and passes or fails token validation the same way) but shares
// no alphanumeric character position with s.
func respell(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c < 'z', c >= 'A' && c < 'Z', c >= '0' && c < '9':
			b[i] = c + 1
		case c == 'z':
			b[i] = 'a'
		case c == 'Z':
			b[i] = 'A'
		case c == '9':
			b[i] = '0'
		}
	}
	return string(b)
}
