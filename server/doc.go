// Package server is the migration router's network face: the Envoy
// ext_proc service that turns a routing.Decision into header mutations
// (Processor), the type lookup a DELETE needs (PerlLookup), the backends'
// health probes (HealthChecker), the admin HTTP endpoints
// (NewAdminHandler), the read-only control API (ControlService), and the
// listeners that carry them (Serve, ServeAdmin).
//
// The package holds no policy: every routing answer comes from
// routing.Decide on the config snapshot in force, so the router, the CLI
// and the control API can never disagree. What it adds is the translation
// to and from Envoy's ext_proc protocol, and the rule that whenever
// something goes wrong the request goes to Perl, which serves it exactly
// as PVE does without this project.
package server
