package ctl

import (
	"flag"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/routing"
)

// ifaceTypes are the interface types PVE's network API knows
// ($network_type_enum plus "unknown"). Only eth and alias are basic writes.
var ifaceTypes = []string{"eth", "alias", "bridge", "bond", "vlan", "OVSBridge", "OVSBond", "OVSPort", "OVSIntPort", "vnet", "fabric", "unknown"}

func explainCommand() *command {
	return &command{
		name:    "explain",
		args:    "METHOD PATH",
		summary: "show which backend a request goes to, and why",
		details: `Classifies a request and decides it with the router's own routing.Decide on
the configuration in force (the file plus environment overrides), without
sending anything. PATH is as a client sends it (/api2/json/... or
/api2/extjs/...); a full URL is accepted. METHOD is upper-cased: clients
send methods in capitals, and the router compares them as sent.

A node-network create, update or delete is a basic write only for interface
types eth and alias; every other type, and an unknown one, is advanced. Pass
--type for such requests (the router reads it from the body, or looks it up
for a DELETE).`,
		examples: []string{
			prog + " explain GET /api2/json/nodes/pve1/network",
			prog + " explain PUT /api2/extjs/nodes/pve1/network/eth0 --type eth",
			prog + " explain POST /api2/json/nodes/pve1/network --type bridge --all-phases",
			prog + " explain GET /api2/json/cluster/sdn/vnets --json",
		},
		minArgs: 2,
		maxArgs: 2,
		define: func(fs *flag.FlagSet) runFunc {
			o := explainOptions{}
			fs.StringVar(&o.ifaceType, "type", "", "interface `TYPE` of a node-network write: "+strings.Join(ifaceTypes, ", "))
			fs.BoolVar(&o.json, "json", false, "print one JSON object")
			fs.BoolVar(&o.allPhases, "all-phases", false, "also show what every phase would do with this request")
			fs.StringVar(&o.node, "node", "", "decide as the router on node `NAME` would ([nodes.NAME] phase; paths of other nodes go to perl)")
			return func(a *app, cfg configFlag, args []string) int {
				return a.explain(cfg, args[0], args[1], o)
			}
		},
	}
}

type explainOptions struct {
	ifaceType string
	json      bool
	allPhases bool
	node      string
}

// explainJSON is explain --json's object. The first six fields are the
// contract's; the rest help scripts that plan a phase change.
type explainJSON struct {
	Backend            string             `json:"backend"`
	Category           string             `json:"category"`
	Reason             string             `json:"reason"`
	Template           string             `json:"template"`
	Phase              string             `json:"phase"`
	Fallback           bool               `json:"fallback"`
	Method             string             `json:"method"`
	Path               string             `json:"path"`
	Type               string             `json:"type"`
	NeedsType          bool               `json:"needs_type"`
	RustTimeoutSeconds float64            `json:"rust_timeout_seconds"`
	PhaseSource        string             `json:"phase_source"`
	Config             string             `json:"config"`
	ConfigExists       bool               `json:"config_exists"`
	Hints              []string           `json:"hints"`
	Node               string             `json:"node,omitempty"`
	Phases             []explainPhaseJSON `json:"phases,omitempty"`
}

type explainPhaseJSON struct {
	Phase    string `json:"phase"`
	Backend  string `json:"backend"`
	Reason   string `json:"reason"`
	Fallback bool   `json:"fallback"`
}

func (a *app) explain(cfg configFlag, method, rawPath string, o explainOptions) int {
	method = strings.ToUpper(strings.TrimSpace(method))
	path, err := requestPath(rawPath)
	if err != nil {
		return a.usageError("explain", err.Error())
	}
	if o.node != "" && !config.ValidNodeName(o.node) {
		return a.usageError("explain", "--node: "+config.NodeNameError(o.node))
	}
	snap, cfgPath, ok := a.load(cfg)
	if !ok {
		return ExitFailure
	}
	snap.Policy.Local.Node = o.node // empty: node rules off, as before
	req := routing.Request{Method: method, Path: path, IfaceType: o.ifaceType}
	cls := routing.Classify(method, path, o.ifaceType)
	d := routing.Decide(&snap.Policy, req)
	hints := explainHints(method, path, o.ifaceType, cls, snap)

	if o.json {
		out := explainJSON{
			Backend: d.Backend.String(), Category: d.Category.String(), Reason: d.Reason.String(),
			Template: d.Template, Phase: snap.Policy.EffectivePhase().String(), Fallback: d.Fallback, Node: o.node,
			Method: method, Path: path, Type: o.ifaceType, NeedsType: cls.NeedsType,
			RustTimeoutSeconds: d.RustTimeout.Seconds(), PhaseSource: string(snap.PhaseSource),
			Config: cfgPath, ConfigExists: snap.FileExists, Hints: hints,
		}
		if o.allPhases {
			for _, ph := range routing.Phases() {
				pd := decideInPhase(snap, ph, req)
				out.Phases = append(out.Phases, explainPhaseJSON{Phase: ph.String(), Backend: pd.Backend.String(), Reason: pd.Reason.String(), Fallback: pd.Fallback})
			}
		}
		a.printJSON(out)
		return ExitOK
	}

	s := a.style
	t := &table{}
	t.add("request:", method+" "+path)
	if o.ifaceType != "" {
		t.add("type:", o.ifaceType)
	}
	t.add("backend:", s.bold(s.backend(d.Backend.String())))
	t.add("category:", d.Category.String())
	tmpl := d.Template
	if tmpl == "" {
		tmpl = "(none)"
	}
	t.add("template:", tmpl)
	t.add("reason:", d.Reason.String()+": "+reasonText(snap, d, method))
	if d.Backend == routing.Rust {
		fb := "off: a failed rust attempt is returned to the client"
		if d.Fallback {
			fb = "on: a failed rust attempt is retried on perl where that is safe"
		}
		t.add("fallback:", fb)
		t.add("rust timeout:", seconds(d.RustTimeout))
	} else {
		t.add("fallback:", "not used (perl serves the request)")
	}
	t.add("phase:", fmt.Sprintf("%s (from %s)", snap.Policy.Phase, sourceText(snap.PhaseSource, config.EnvPhase)))
	if o.node != "" {
		np, has := snap.Policy.Nodes[o.node]
		if has {
			t.add("node:", fmt.Sprintf("%s: phase %s ([nodes.%s])", o.node, np, o.node))
		} else {
			t.add("node:", fmt.Sprintf("%s: no [nodes.%s] table, follows the top level", o.node, o.node))
		}
	}
	t.add("config:", cfgPath+missingNote(snap))
	t.write(a.stdout, "")

	if o.allPhases {
		fmt.Fprintf(a.stdout, "\nin every phase (features and endpoint rules as configured):\n")
		t = &table{}
		for _, ph := range routing.Phases() {
			pd := decideInPhase(snap, ph, req)
			mark := ""
			if ph == snap.Policy.Phase {
				mark = "<- current"
			}
			t.add(ph.String(), s.backend(pd.Backend.String()), pd.Reason.String(), mark)
		}
		t.write(a.stdout, "  ")
	}
	for _, h := range hints {
		fmt.Fprintf(a.stdout, "hint: %s\n", h)
	}
	return ExitOK
}

// requestPath accepts a path or a full URL (as copied from a browser or a
// log) and returns the request target the router sees.
func requestPath(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if strings.Contains(raw, "://") {
		u, err := url.Parse(raw)
		if err != nil {
			return "", fmt.Errorf("invalid URL %q: %v", raw, err)
		}
		raw = u.EscapedPath()
		if u.RawQuery != "" {
			raw += "?" + u.RawQuery
		}
	}
	if !strings.HasPrefix(raw, "/") {
		return "", fmt.Errorf("PATH must start with / (for example /api2/json/nodes/pve1/network), got %q", raw)
	}
	return raw, nil
}

// decideInPhase is the decision the same request would get if only the
// phase were different: what an operator planning the next step needs.
func decideInPhase(snap *config.Snapshot, ph routing.Phase, req routing.Request) routing.Decision {
	p := snap.Policy
	p.Phase = ph
	return routing.Decide(&p, req)
}

// reasonText explains a decision in the operator's terms: which setting
// made it and, for the phase matrix, when that would change.
func reasonText(snap *config.Snapshot, d routing.Decision, method string) string {
	p := snap.Policy
	switch d.Reason {
	case routing.ReasonNotNetwork:
		return "not a node-network or SDN endpoint under /api2/json or /api2/extjs (or a method PVE does not define there); always perl"
	case routing.ReasonPerlOnly:
		return fmt.Sprintf("phase perl-only (from %s) sends everything to perl, whatever else is configured", sourceText(snap.PhaseSource, config.EnvPhase))
	case routing.ReasonFeatureDisabled:
		flagName := "features.enable_advanced_networking"
		if d.Category == routing.SDNRead || d.Category == routing.SDNWrite {
			flagName = "features.enable_sdn_migration"
		}
		return fmt.Sprintf("%s = false keeps %s on perl in every phase", flagName, d.Category)
	case routing.ReasonKillSwitch:
		return "the node-local kill switch is on: everything goes to perl (" + prog + " kill-switch off)"
	case routing.ReasonRemoteNode:
		return "the path names another node: pveproxy forwards the request there, and that node's router decides (explain --node OTHER)"
	case routing.ReasonEndpointOverride:
		r := p.Endpoints[d.Template]
		rule := "use_rust = false"
		if r.UseRust != nil && *r.UseRust {
			rule = "use_rust = true"
			if r.RustMethods != nil {
				rule += fmt.Sprintf(", rust_methods = [%s]", strings.Join(r.RustMethods, ", "))
				if !slices.Contains(r.RustMethods, method) {
					rule += fmt.Sprintf(" (%s is not listed)", method)
				}
			}
		}
		return fmt.Sprintf("[endpoints.\"/api2/json%s\"] %s", d.Template, rule)
	}
	if d.Backend == routing.Rust {
		return fmt.Sprintf("phase %s sends %s to rust", d.Phase, d.Category)
	}
	msg := fmt.Sprintf("phase %s keeps %s on perl", d.Phase, d.Category)
	if first, ok := firstRustPhase(d.Category); ok {
		msg += fmt.Sprintf(" (it moves to rust in %s)", first)
	}
	return msg
}

// firstRustPhase is the first phase whose matrix sends the category to
// Rust, ignoring feature flags and endpoint rules.
func firstRustPhase(c routing.Category) (routing.Phase, bool) {
	p := routing.DefaultPolicy()
	p.Features = routing.Features{EnableSDNMigration: true, EnableAdvancedNetworking: true}
	for _, ph := range routing.Phases() {
		p.Phase = ph
		if routing.DecideClassified(&p, "GET", "", routing.Classification{Category: c}).Backend == routing.Rust {
			return ph, true
		}
	}
	return 0, false
}

// explainHints spots the mistakes that make explain answer a different
// question than the operator meant.
func explainHints(method, path, ifaceType string, cls routing.Classification, snap *config.Snapshot) []string {
	hints := []string{}
	if !routing.ValidMethod(method) {
		hints = append(hints, fmt.Sprintf("PVE knows only GET, POST, PUT and DELETE; perl answers %s with 501", method))
	}
	if cls.NeedsType && ifaceType == "" {
		h := "type unknown: treated as advanced; pass --type eth|alias|bridge|bond|vlan|OVSBridge|... (eth and alias are basic writes, every other type is advanced)"
		if method == "DELETE" {
			h += "; for a DELETE the router looks the type up through the perl API"
		}
		hints = append(hints, h)
	}
	if ifaceType != "" && !slices.Contains(ifaceTypes, ifaceType) {
		h := fmt.Sprintf("PVE has no interface type %q (treated as advanced)", ifaceType)
		if s := routing.Suggest(ifaceType, ifaceTypes); s != "" {
			h += fmt.Sprintf("; did you mean %q?", s)
		}
		hints = append(hints, h)
	}
	if ifaceType != "" && !cls.NeedsType && cls.Category != routing.NotNetwork {
		hints = append(hints, "--type only matters for node-network create, update and delete; it is ignored here")
	}
	if cls.Category == routing.NotNetwork && !strings.HasPrefix(path, "/api2/") {
		if alt := "/api2/json" + path; routing.Classify(method, alt, ifaceType).Category != routing.NotNetwork {
			hints = append(hints, fmt.Sprintf("the path has no /api2/json or /api2/extjs prefix; did you mean %s?", alt))
		}
	}
	if snap.PhaseSource == config.SourceEnv {
		hints = append(hints, fmt.Sprintf("the phase comes from %s in this shell, not from the file", config.EnvPhase))
	}
	return hints
}

func missingNote(snap *config.Snapshot) string {
	if !snap.FileExists {
		return " (absent: built-in defaults)"
	}
	return ""
}

// seconds prints a duration in whole seconds when it is whole, as the
// config file writes them.
func seconds(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return d.String()
}
