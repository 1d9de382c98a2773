package ctl

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/pve-migration/router/internal/config"
)

// load reads the configuration exactly as the router does (same resolution,
// same loader, same environment overrides), so what migration-ctl shows is
// what the router would serve. On failure it has already printed every
// problem and what to do, and the caller exits 1.
func (a *app) load(cfg configFlag) (*config.Snapshot, string, bool) {
	path, explicit := cfg.resolve(a.getenv)
	snap, err := config.LoadResolved(path, explicit, a.getenv)
	if err != nil {
		a.reportLoadError(path, err)
		return nil, path, false
	}
	return snap, path, true
}

// reportLoadError prints why a config could not be loaded: every problem
// of an invalid file (file, key, message, suggestion), or the read error,
// each with the next step.
func (a *app) reportLoadError(path string, err error) {
	var ve *config.ValidationError
	switch {
	case errors.As(err, &ve):
		inEnv := 0
		for _, p := range ve.Problems {
			if p.File == "environment" {
				inEnv++
			}
		}
		what := path + " is"
		switch {
		case inEnv == len(ve.Problems):
			what = "the environment is"
		case inEnv > 0:
			what = path + " and the environment are"
		}
		fmt.Fprintf(a.stderr, "error: %s invalid (%s):\n", what, plural(len(ve.Problems), "problem"))
		for _, p := range ve.Problems {
			fmt.Fprintf(a.stderr, "  %s\n", p)
		}
		if inEnv < len(ve.Problems) {
			fmt.Fprintf(a.stderr, "hint: a running router rejects this file and keeps serving its last good configuration\n")
			fmt.Fprintf(a.stderr, "      (pve_migration_config_reloads_total{result=\"error\"} goes up); fix the lines above\n")
		}
		if inEnv > 0 {
			fmt.Fprintf(a.stderr, "hint: problems under \"environment\" come from variables set in this shell, not from the file;\n")
			fmt.Fprintf(a.stderr, "      a router started with the same variables refuses to load its configuration\n")
		}
	case errors.Is(err, fs.ErrNotExist):
		a.failf([]string{
			fmt.Sprintf("create it with: %s generate-config --output %s", prog, path),
			fmt.Sprintf("or drop --config and unset %s to use the built-in defaults (everything on perl)", config.EnvConfig),
		}, "config file %s does not exist", path)
	case errors.Is(err, fs.ErrPermission):
		a.failf([]string{"run as root on a PVE node (/etc/pve is readable by root and www-data only)"},
			"cannot read %s: permission denied", path)
	default:
		a.failf(nil, "%v", err)
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// onOff is how booleans read in human output.
func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// sourceText says where a setting came from, naming the variable for an
// environment override because that is what the operator must unset.
func sourceText(src config.Source, envName string) string {
	if src == config.SourceEnv {
		return "env " + envName
	}
	return string(src)
}

// fileExists reports whether path names an existing file (following
// symlinks); errors other than "not there" count as existing so that the
// caller's read reports them.
func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}
