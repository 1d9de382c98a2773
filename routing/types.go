// Package routing decides which backend, Perl (pveproxy) or Rust, serves a
// PVE API request. It is pure: no I/O, no clock, no globals that change, so
// the whole decision table is tested and benchmarked without a network. The
// ext_proc service, the CLI and the embedded data plane all call Decide; there
// is no second decision path.
package routing

import (
	"fmt"
	"strings"
	"time"
)

// Phase is a migration phase. Phases are ordered: each one moves more
// categories to Rust than the one before, and PerlOnly is the rollback.
type Phase uint8

// The migration phases, in order. PerlOnly is the zero value so that a
// Policy that was never filled in routes everything to Perl.
const (
	PerlOnly Phase = iota
	RustReadOnly
	RustBasicWrite
	RustAdvanced
	RustSDN
	RustFull
)

var phaseNames = [...]string{"perl-only", "rust-read-only", "rust-basic-write", "rust-advanced", "rust-sdn", "rust-full"}

// Phases lists every phase in order, for help texts, tests and CLIs.
func Phases() []Phase {
	return []Phase{PerlOnly, RustReadOnly, RustBasicWrite, RustAdvanced, RustSDN, RustFull}
}

// String returns the kebab-case name that every output uses.
func (p Phase) String() string {
	if int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return fmt.Sprintf("phase(%d)", uint8(p))
}

// ParsePhase accepts the kebab names ("rust-read-only") and the seed's
// CamelCase names ("RustReadOnly"), case-insensitively. An unknown name is an
// error that lists the valid ones and suggests the closest.
func ParsePhase(s string) (Phase, error) {
	key := strings.ToLower(strings.NewReplacer("-", "", "_", "", " ", "").Replace(strings.TrimSpace(s)))
	for i, n := range phaseNames {
		if key == strings.ReplaceAll(n, "-", "") {
			return Phase(i), nil
		}
	}
	msg := fmt.Sprintf("unknown phase %q (valid: %s)", s, strings.Join(phaseNames[:], ", "))
	if best := Suggest(s, phaseNames[:]); best != "" {
		msg += fmt.Sprintf("; did you mean %q?", best)
	}
	return PerlOnly, fmt.Errorf("%s", msg)
}

// MarshalText makes a Phase print as its kebab name in JSON and TOML.
func (p Phase) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText parses any spelling ParsePhase accepts.
func (p *Phase) UnmarshalText(b []byte) error {
	v, err := ParsePhase(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// Backend is where a request is sent.
type Backend uint8

// Perl is the zero value: a Decision nobody filled in is a safe one.
const (
	Perl Backend = iota
	Rust
)

// String returns "perl" or "rust", the values of the x-pve-backend header.
func (b Backend) String() string {
	if b == Rust {
		return "rust"
	}
	return "perl"
}

// Category is the contract's request class. Phases and feature flags move
// whole categories between backends.
type Category uint8

// The request categories of the contract. NotNetwork is the zero value.
const (
	NotNetwork Category = iota
	NodeNetworkRead
	NodeNetworkBasicWrite
	NodeNetworkAdvancedWrite
	SDNRead
	SDNWrite
)

var categoryNames = [...]string{"not-network", "node-network-read", "node-network-basic-write", "node-network-advanced-write", "sdn-read", "sdn-write"}

// Categories lists every category in contract order.
func Categories() []Category {
	return []Category{NotNetwork, NodeNetworkRead, NodeNetworkBasicWrite, NodeNetworkAdvancedWrite, SDNRead, SDNWrite}
}

// String returns the contract's name for the category, used in metrics,
// spans and CLI output.
func (c Category) String() string {
	if int(c) < len(categoryNames) {
		return categoryNames[c]
	}
	return fmt.Sprintf("category(%d)", uint8(c))
}

// Reason says which rule of the precedence list made a decision. It is a
// closed set so that metrics and logs carry a stable value, never free text.
type Reason uint8

// Decision reasons, in precedence order.
const (
	ReasonNotNetwork Reason = iota
	ReasonPerlOnly
	ReasonFeatureDisabled
	ReasonEndpointOverride
	ReasonPhase
	// The reasons of the second round (kill switch, per-node phases, gate,
	// canary) are appended so that the values above keep their numbers;
	// their place in the precedence is documented on Decide.
	ReasonKillSwitch
	ReasonRemoteNode
	ReasonGateTripped
	ReasonCanary
)

var reasonNames = [...]string{"not-network", "perl-only", "feature-disabled", "endpoint-override", "phase",
	"kill-switch", "remote-node", "gate-tripped", "canary"}

// Reasons lists every decision reason, for metrics that export each value
// at zero and for tests that walk them all.
func Reasons() []Reason {
	return []Reason{ReasonNotNetwork, ReasonKillSwitch, ReasonPerlOnly, ReasonRemoteNode, ReasonFeatureDisabled,
		ReasonGateTripped, ReasonEndpointOverride, ReasonCanary, ReasonPhase}
}

// String returns the contract's reason name.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Features are the operator's feature flags. They can only hold a category
// back on Perl, never push one to Rust.
type Features struct {
	// EnableSDNMigration lets sdn-read and sdn-write go to Rust (phases
	// rust-sdn and rust-full). Off by default: SDN apply touches every node.
	EnableSDNMigration bool
	// EnableAdvancedNetworking lets node-network-advanced-write go to Rust
	// (phases rust-advanced and later).
	EnableAdvancedNetworking bool
}

// EndpointRule is one `[endpoints."TEMPLATE"]` table of the config.
type EndpointRule struct {
	// UseRust, when set, overrides the phase matrix for this template
	// (promote with true, pin to Perl with false). Nil changes no decision.
	UseRust *bool
	// RustMethods restricts a UseRust=true promotion to these upper-case
	// methods; nil means every method.
	RustMethods []string
	// FallbackOnError, when set, turns fallback off (or on) for this
	// template; the global FallbackEnabled must also be true.
	FallbackOnError *bool
	// RustTimeout, when positive, replaces the global FallbackTimeout as
	// the Rust attempt timeout for this template.
	RustTimeout time.Duration
}

// Policy is everything Decide needs from the configuration. It is treated
// as immutable once built: the config loader builds a new one per reload.
type Policy struct {
	Phase           Phase
	FallbackEnabled bool
	// FallbackTimeout is the Rust attempt timeout unless an endpoint sets
	// its own; past it, a request that may be retried goes to Perl.
	FallbackTimeout time.Duration
	Features        Features
	// Endpoints is keyed by template without the format prefix, e.g.
	// "/nodes/{node}/network" (see TemplateKey).
	Endpoints map[string]EndpointRule
	// Nodes holds the `[nodes.NAME] phase` overrides of the config file,
	// keyed by PVE node name. On the node named by Local.Node its entry
	// beats Phase for that node's own paths; cluster-wide SDN paths keep
	// following Phase, because an SDN apply touches every node.
	Nodes map[string]Phase
	// Canary moves chosen users' requests one phase early.
	Canary Canary
	// Local is what this router knows about itself at run time (its node
	// name, the kill switch, gate trips). The config never sets it; the
	// service fills it in before handing the policy to Decide, so every
	// input of the decision stays data and Decide stays pure.
	Local Local
}

// Local is the node-local, run-time part of a Policy.
type Local struct {
	// Node is this router's PVE node name. Empty disables the per-node
	// rules (every /nodes/NAME path counts as local), which is what a
	// policy built without a router, in a test or by `explain`, gets.
	Node string
	// KillSwitch is true while the node-local kill-switch file exists: it
	// sends everything to Perl, before any phase is even looked at,
	// because it is the rollback that still works when pmxcfs is read-only.
	KillSwitch bool
	// Tripped holds the categories the gate has sent back to Perl on this
	// node.
	Tripped CategorySet
}

// CategorySet is a set of categories as a bit mask, so that a snapshot
// carries the gate's trips without a map and Decide tests one bit.
type CategorySet uint16

// Has reports whether c is in the set.
func (s CategorySet) Has(c Category) bool { return s&(1<<c) != 0 }

// With returns the set plus c.
func (s CategorySet) With(c Category) CategorySet { return s | 1<<c }

// Without returns the set minus c.
func (s CategorySet) Without(c Category) CategorySet { return s &^ (1 << c) }

// List returns the members in contract order.
func (s CategorySet) List() []Category {
	var out []Category
	for _, c := range Categories() {
		if s.Has(c) {
			out = append(out, c)
		}
	}
	return out
}

// Canary is the `[canary]` table: users whose requests in the categories
// the next phase moves go to Rust now, so that writes earn evidence
// before their phase (a team moves its Terraform token first).
type Canary struct {
	// Users are `USER@REALM` (the user and every one of its API tokens)
	// or `USER@REALM!TOKENID` (that token only) entries.
	Users []string
	// Percent (0-100) of all users, picked by a stable hash of the user
	// id, so that raising it keeps every user that was already in.
	Percent int
}

// Enabled reports whether any user can be a canary.
func (c *Canary) Enabled() bool { return c.Percent > 0 || len(c.Users) > 0 }

// Includes reports whether user (`USER@REALM` or `USER@REALM!TOKENID`, as
// read from the request's token or ticket) is a canary.
func (c *Canary) Includes(user string) bool {
	if user == "" {
		return false
	}
	base := user
	if i := strings.IndexByte(user, '!'); i >= 0 {
		base = user[:i]
	}
	for _, u := range c.Users {
		if u == user || u == base {
			return true
		}
	}
	return c.Percent > 0 && CanaryBucket(user) < c.Percent
}

// CanaryBucket places a user id in one of 100 buckets with FNV-1a, a hash
// that is stable across releases and machines: the same user is in or out
// on every node of a cluster, and a user in at N percent is in at every
// higher N.
func CanaryBucket(user string) int {
	h := uint32(2166136261)
	for i := 0; i < len(user); i++ {
		h ^= uint32(user[i])
		h *= 16777619
	}
	return int(h % 100)
}

// DefaultPolicy is the contract's built-in configuration: everything on
// Perl, fallback on, 30 s Rust timeout, SDN held back.
func DefaultPolicy() Policy {
	return Policy{
		Phase:           PerlOnly,
		FallbackEnabled: true,
		FallbackTimeout: 30 * time.Second,
		Features:        Features{EnableSDNMigration: false, EnableAdvancedNetworking: true},
	}
}

// Request is what Decide looks at. Method and Path are taken as the client
// sent them; Decide normalises the path itself so that every caller gets the
// same answer for the same request.
type Request struct {
	Method string
	// Path is the request target (:path), query string included or not.
	Path string
	// IfaceType is the interface `type` of a node-network POST/PUT (from
	// the body or query) or the looked-up type for a DELETE. Empty means
	// unknown, which classifies as advanced.
	IfaceType string
	// User is the PVE user id the request claims (`USER@REALM` or
	// `USER@REALM!TOKENID`, from the API token header or the ticket
	// cookie), used only to pick canaries. It is not verified here: the
	// backend authenticates, and a forged id can only move the request
	// within what the next phase would do anyway.
	User string
}

// Decision is Decide's answer.
type Decision struct {
	Backend  Backend
	Category Category
	Reason   Reason
	// Template is the matched catalogue template without format prefix,
	// e.g. "/nodes/{node}/network/{iface}"; empty for not-network.
	Template string
	// Fallback reports whether a failed Rust attempt may be retried on
	// Perl (within the contract's retry rules). Always false for Perl.
	Fallback bool
	// RustTimeout is the per-attempt timeout for Rust; zero for Perl.
	RustTimeout time.Duration
	// Phase is the phase that applied to the request (the node's
	// effective phase, or the top-level one for cluster-wide SDN paths);
	// perl-only when an earlier rule decided before any phase mattered.
	Phase Phase
}
