package ctl

import (
	"flag"
	"fmt"

	"github.com/pve-migration/router/internal/config"
)

// configTemplate is what generate-config prints and what set-phase and
// fallback start from when the file does not exist yet. Every key stands
// with its contract default, so that the file documents itself; a test
// checks that it loads to exactly the built-in defaults.
const configTemplate = `# PVE network migration: which API requests the Rust daemon serves instead
# of Perl's pveproxy. The router (migration-router) watches this file and
# applies a valid edit within seconds, on every node (/etc/pve is shared). An
# invalid edit is rejected and the last good configuration keeps serving:
# check every hand edit with "migration-ctl validate".
#
# Change the phase one step at a time with "migration-ctl set-phase PHASE";
# roll back at any moment with "migration-ctl set-phase perl-only".

# Migration phase, in order (each adds to the one before):
#   perl-only          everything on Perl: the rollback
#   rust-read-only     node network reads (GET /nodes/{node}/network[/{iface}])
#   rust-basic-write   + eth/alias create, update, delete; apply and revert
#   rust-advanced      + bridge, bond, VLAN, OVS writes (features.enable_advanced_networking)
#   rust-sdn           + SDN reads and writes (features.enable_sdn_migration)
#   rust-full          everything above
# Overridden by PVE_NETWORK_MIGRATION_PHASE in the router's environment.
phase = "perl-only"

# Retry a failed or timed-out Rust attempt on Perl where nothing can have
# changed (GETs; writes only when Rust never received them or answered 501).
# Overridden by PVE_NETWORK_MIGRATION_FALLBACK.
fallback_enabled = true

# Seconds a Rust attempt may take (unless an endpoint sets rust_timeout).
fallback_timeout = 30

# pveproxy, the Perl API: the router looks up interface types through it and
# "migration-ctl test-perl" checks it. Overridden by PERL_API_URL. The API
# token never goes in this file (every node can read it): set PERL_API_TOKEN
# (USER@REALM!TOKENID=SECRET) in the router's environment instead.
perl_api_base_url = "https://127.0.0.1:8006"

# Seconds a request to the Perl API may take.
perl_api_timeout = 60

# Log every routing decision (method, path, category, backend, reason).
log_migration_decisions = true

# Count requests, fallbacks and latencies for /metrics and "migration-ctl status".
metrics_enabled = true

[features]
# Let SDN requests (/cluster/sdn/..., /nodes/{node}/sdn/...) go to Rust in
# phases rust-sdn and rust-full. Off by default: an SDN apply touches every node.
enable_sdn_migration = false
# Let bridge, bond, VLAN and OVS writes go to Rust from phase rust-advanced on.
enable_advanced_networking = true

[gate]
# Send a category rust serves back to perl on this node when, over the last
# "window" seconds with at least "min_requests" rust attempts, rust breaks a
# limit; it stays on perl until "migration-ctl gate reset". Evidence for
# "migration-ctl plan" and "advance" is gathered even while disabled.
enabled = false
window = 300
min_requests = 20
max_rust_error_rate = 0.05
max_latency_ratio = 3.0
max_mismatch_rate = 0.01

[canary]
# Users whose requests in the categories the next phase moves go to rust
# now: "USER@REALM" (the user and all its API tokens) or "USER@REALM!TOKENID".
# percent picks that share of all users by a stable hash (raising it keeps
# everyone who was in).
users = []
percent = 0

# Shadow comparison: after perl (or rust) has answered a sampled GET, ask the
# other backend the same GET with the caller's credentials and report where
# the answers differ ("migration-ctl compare", the admin port's /compare).
# The client never waits for it. Run it for a day before you advance a phase.
[compare]
enabled = false
# Percent of the eligible GETs that are compared.
sample_percent = 10
# Read categories only: node-network-read, sdn-read.
categories = ["node-network-read", "sdn-read"]
# Larger answers are skipped.
max_body_bytes = 1048576
# Seconds each shadow request may take.
timeout = 5
# Comparisons running at once; beyond a bounded queue they are dropped.
max_inflight = 4
# Check both answers against PVE's API schema (api_schema, else the built-in one).
schema = true
api_schema = "/usr/share/pve-docs/api-viewer/apidoc.js"

# Per-endpoint rules, keyed by API template ("/api2/json/..." covers
# "/api2/extjs/..." too; "migration-ctl explain" shows a request's template).
#   use_rust           true promotes the template to Rust in any phase but
#                      perl-only, false pins it to Perl; unset: the phase decides
#   rust_methods       limit a promotion to these methods (default: all)
#   fallback_on_error  false turns fallback off for this template
#   rust_timeout       seconds, instead of fallback_timeout
#   compare_ignore     field paths the shadow comparison ignores ("data[].active")
#
# [endpoints."/api2/json/nodes/{node}/network"]
# use_rust = true
# rust_methods = ["GET"]
# fallback_on_error = true
# rust_timeout = 30
`

func generateConfigCommand() *command {
	return &command{
		name:    "generate-config",
		summary: "print a commented config file with every key and its default",
		details: `Prints a commented config file with every key at its default (phase
perl-only: installing it changes no routing), all feature flags and a
commented-out endpoint rule. With --output it writes the file atomically and
refuses to replace an existing one unless --force is given.`,
		examples: []string{
			prog + " generate-config > network-migration.conf",
			prog + " generate-config --output " + config.DefaultPath,
		},
		maxArgs: 0,
		define: func(fs *flag.FlagSet) runFunc {
			output := fs.String("output", "", "write to `FILE` instead of stdout")
			force := fs.Bool("force", false, "replace an existing --output file")
			return func(a *app, _ configFlag, _ []string) int {
				return a.generateConfig(*output, *force)
			}
		},
	}
}

func (a *app) generateConfig(output string, force bool) int {
	if output == "" {
		_, _ = fmt.Fprint(a.stdout, configTemplate)
		return ExitOK
	}
	if fileExists(output) && !force {
		return a.failf([]string{
			fmt.Sprintf("check it with: %s validate --config %s", prog, output),
			"pass --force to replace it (its comments and settings are lost), or choose another --output",
		}, "%s already exists; not overwritten", output)
	}
	if err := replaceFile(output, []byte(configTemplate), nil); err != nil {
		return a.failf(writeHints(err), "%v", err)
	}
	fmt.Fprintf(a.stdout, "wrote %s (phase perl-only: no request moves until you run set-phase)\n", output)
	return ExitOK
}
