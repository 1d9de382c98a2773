package ctl

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"

	"github.com/pve-migration/router/internal/config"
)

func validateCommand() *command {
	return &command{
		name:    "validate",
		summary: "check the config file with the router's own loader",
		details: `Loads the config file exactly as the router does (same loader, same
environment overrides) and prints a one-line summary, or every problem with
its file, key and a suggested spelling. A running router rejects an invalid
file and keeps serving its last good configuration, so validate before and
after every hand edit.`,
		examples: []string{
			prog + " validate",
			prog + " validate --config ./network-migration.conf --json",
		},
		maxArgs: 0,
		define: func(fs *flag.FlagSet) runFunc {
			jsonOut := fs.Bool("json", false, "print one JSON object (ok, problems, warnings, ...)")
			return func(a *app, cfg configFlag, _ []string) int {
				return a.validate(cfg, *jsonOut)
			}
		},
	}
}

// validateReport is validate --json's object.
type validateReport struct {
	OK             bool             `json:"ok"`
	Config         string           `json:"config"`
	Exists         bool             `json:"exists"`
	Phase          string           `json:"phase,omitempty"`
	PhaseSource    string           `json:"phase_source,omitempty"`
	Fallback       *bool            `json:"fallback,omitempty"`
	FallbackSource string           `json:"fallback_source,omitempty"`
	EndpointRules  int              `json:"endpoint_rules"`
	Warnings       []config.Problem `json:"warnings"`
	Problems       []config.Problem `json:"problems"`
}

func (a *app) validate(cfg configFlag, jsonOut bool) int {
	path, explicit := cfg.resolve(a.getenv)
	snap, err := config.LoadResolved(path, explicit, a.getenv)
	if jsonOut {
		r := validateReport{Config: path, Exists: fileExists(path), Warnings: []config.Problem{}, Problems: []config.Problem{}}
		if err != nil {
			var ve *config.ValidationError
			if errors.As(err, &ve) {
				r.Problems = ve.Problems
			} else {
				r.Problems = []config.Problem{{File: path, Msg: err.Error()}}
			}
		} else {
			r.OK = true
			r.Phase, r.PhaseSource = snap.Policy.Phase.String(), string(snap.PhaseSource)
			fb := snap.Policy.FallbackEnabled
			r.Fallback, r.FallbackSource = &fb, string(snap.FallbackSource)
			r.EndpointRules = len(snap.Policy.Endpoints)
			r.Warnings = append(r.Warnings, snap.Warnings...)
		}
		a.printJSON(r)
		if !r.OK {
			return ExitFailure
		}
		return ExitOK
	}
	if err != nil {
		a.reportLoadError(path, err)
		return ExitFailure
	}
	fmt.Fprintf(a.stdout, "%s %s: phase %s (from %s), fallback %s, %s\n", a.style.good("OK:"), path,
		snap.Policy.Phase, snap.PhaseSource, onOff(snap.Policy.FallbackEnabled), plural(len(snap.Policy.Endpoints), "endpoint rule"))
	if !snap.FileExists {
		fmt.Fprintf(a.stdout, "note: %s does not exist: the router serves the built-in defaults\n", path)
	}
	a.noteOverrides(snap)
	for _, w := range snap.Warnings {
		a.warnf("%s", w)
	}
	return ExitOK
}

// noteOverrides says when an environment variable hides the file's value:
// the commonest reason an edit "does nothing".
func (a *app) noteOverrides(snap *config.Snapshot) {
	if snap.PhaseSource == config.SourceEnv {
		fmt.Fprintf(a.stdout, "note: %s=%s overrides the file's phase (in this shell; the router has its own environment)\n",
			config.EnvPhase, a.getenv(config.EnvPhase))
	}
	if snap.FallbackSource == config.SourceEnv {
		fmt.Fprintf(a.stdout, "note: %s=%s overrides the file's fallback_enabled\n",
			config.EnvFallback, a.getenv(config.EnvFallback))
	}
}

func (a *app) printJSON(v any) {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
