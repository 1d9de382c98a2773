package routing

// Classification is the catalogue's view of a request, before policy.
type Classification struct {
	Category Category
	// Template is the matched catalogue template without format prefix;
	// empty for not-network.
	Template string
	// NeedsType is true for node-network create/update/delete, whose
	// category depends on the interface type: the caller should find the
	// type (body, query, or a lookup for DELETE) before deciding.
	NeedsType bool
	// Node is the `{node}` of a /nodes/{node}/... template (a substring
	// of the request path, so classifying allocates nothing); empty for
	// cluster-wide paths and not-network.
	Node string
	// ClusterWide is true for /cluster/sdn paths, which follow the
	// top-level phase on every node.
	ClusterWide bool
}

// Classify maps a method and raw path to the contract's category. It is
// exported so that callers can learn whether the interface type matters
// before paying for a body read or a lookup.
func Classify(method, rawPath, ifaceType string) Classification {
	clean, ok := NormalizePath(rawPath)
	if !ok {
		return Classification{}
	}
	p, ok := apiPath(clean)
	if !ok {
		return Classification{}
	}
	e := lookup(p)
	if e == nil {
		return Classification{}
	}
	bit := methodBit(method)
	if bit == 0 || e.methods&bit == 0 {
		// Methods are case-sensitive and pveproxy knows only these four:
		// anything else is answered by Perl exactly as today.
		return Classification{}
	}
	c := Classification{Template: e.template}
	if e.fam == famClusterSDN {
		c.ClusterWide = true
	} else {
		c.Node = nodeSegment(p)
	}
	switch e.fam {
	case famNodeNetwork:
		switch method {
		case "GET":
			c.Category = NodeNetworkRead
		case "POST":
			c.Category, c.NeedsType = typeCategory(ifaceType), true
		default: // PUT apply, DELETE revert: all-or-nothing, type-free
			c.Category = NodeNetworkBasicWrite
		}
	case famNodeNetworkIface:
		if method == "GET" {
			c.Category = NodeNetworkRead
		} else {
			c.Category, c.NeedsType = typeCategory(ifaceType), true
		}
	case famClusterSDN, famNodeSDN:
		if method == "GET" {
			c.Category = SDNRead
		} else {
			c.Category = SDNWrite
		}
	}
	return c
}

// nodeSegment returns NAME of a /nodes/NAME/... path.
func nodeSegment(p string) string {
	const prefix = "/nodes/"
	if len(p) <= len(prefix) || p[:len(prefix)] != prefix {
		return ""
	}
	rest := p[len(prefix):]
	for i := 0; i < len(rest); i++ {
		if rest[i] == '/' {
			return rest[:i]
		}
	}
	return rest
}

// NextPhase is the phase after p, and false for rust-full, the last one.
func NextPhase(p Phase) (Phase, bool) {
	if p >= RustFull {
		return p, false
	}
	return p + 1, true
}

// RustInPhase reports whether the phase matrix sends category c to Rust in
// phase p (feature flags aside). `plan` and `advance` use it to say what
// the next phase would move.
func RustInPhase(p Phase, c Category) bool { return rustInPhase(p, c) }

// EffectivePhase is the phase in force on this router's node for its own
// paths: the node's `[nodes.NAME]` entry when there is one, else the
// top-level phase.
func (p *Policy) EffectivePhase() Phase {
	if p.Local.Node != "" && len(p.Nodes) > 0 {
		if np, ok := p.Nodes[p.Local.Node]; ok {
			return np
		}
	}
	return p.Phase
}

// typeCategory: only plain NICs and their aliases are basic; every other
// type, and a type nobody could determine, is advanced, because getting a
// bridge or bond wrong is what cuts a hypervisor off the network.
func typeCategory(t string) Category {
	if t == "eth" || t == "alias" {
		return NodeNetworkBasicWrite
	}
	return NodeNetworkAdvancedWrite
}

// rustInPhase is the contract's phase matrix.
func rustInPhase(p Phase, c Category) bool {
	switch c {
	case NodeNetworkRead:
		return p >= RustReadOnly
	case NodeNetworkBasicWrite:
		return p >= RustBasicWrite
	case NodeNetworkAdvancedWrite:
		return p >= RustAdvanced
	case SDNRead, SDNWrite:
		return p >= RustSDN
	}
	return false
}

// Decide applies the contract's precedence, first match wins:
//
//  1. not-network → Perl
//  2. the node-local kill switch → Perl (works without pmxcfs)
//  3. effective phase perl-only → Perl (the rollback beats every override)
//  4. a path about another node → Perl (pveproxy forwards it there, and
//     that node's router decides)
//  5. feature flag off for the category → Perl
//  6. the gate tripped the category on this node → Perl
//  7. an endpoint entry that sets use_rust → its answer
//  8. a canary user, in a category the next phase moves → Rust
//  9. otherwise the phase matrix.
//
// The phase of a request is the node's effective phase for its own paths
// and the top-level phase for cluster-wide SDN paths.
//
// p must not be nil. Decide does not allocate on clean paths.
func Decide(p *Policy, r Request) Decision {
	c := Classify(r.Method, r.Path, r.IfaceType)
	return decideClassified(p, r.Method, r.User, c)
}

// DecideClassified is Decide for a request the caller already classified
// (with Classify), so a path is not normalised twice on the hot path. user
// is Request.User.
func DecideClassified(p *Policy, method, user string, c Classification) Decision {
	return decideClassified(p, method, user, c)
}

func decideClassified(p *Policy, method, user string, c Classification) Decision {
	d := Decision{Backend: Perl, Category: c.Category, Template: c.Template}
	if c.Category == NotNetwork {
		d.Reason = ReasonNotNetwork
		return d
	}
	if p.Local.KillSwitch {
		d.Reason = ReasonKillSwitch
		return d
	}
	eff := p.EffectivePhase()
	if eff == PerlOnly {
		d.Reason = ReasonPerlOnly
		return d
	}
	phase := eff
	if c.ClusterWide {
		phase = p.Phase
		if phase == PerlOnly {
			d.Reason = ReasonPerlOnly
			return d
		}
	}
	d.Phase = phase
	switch {
	case p.Local.Node != "" && c.Node != "" && c.Node != "localhost" && c.Node != p.Local.Node:
		d.Reason = ReasonRemoteNode
		return d
	case c.Category == NodeNetworkAdvancedWrite && !p.Features.EnableAdvancedNetworking,
		(c.Category == SDNRead || c.Category == SDNWrite) && !p.Features.EnableSDNMigration:
		d.Reason = ReasonFeatureDisabled
		return d
	case p.Local.Tripped.Has(c.Category):
		d.Reason = ReasonGateTripped
		return d
	}
	rule, hasRule := p.Endpoints[c.Template]
	switch {
	case hasRule && rule.UseRust != nil:
		d.Reason = ReasonEndpointOverride
		if *rule.UseRust && methodAllowed(rule.RustMethods, method) {
			d.Backend = Rust
		}
	case rustInPhase(phase, c.Category):
		d.Reason = ReasonPhase
		d.Backend = Rust
	case user != "" && p.Canary.Enabled() && rustInPhase(phase+1, c.Category) && p.Canary.Includes(user):
		// phase+1 past rust-full moves nothing new: rustInPhase of the
		// same categories is already true there, so this case never runs.
		d.Reason = ReasonCanary
		d.Backend = Rust
	default:
		d.Reason = ReasonPhase
	}
	if d.Backend == Rust {
		d.Fallback = p.FallbackEnabled && (!hasRule || rule.FallbackOnError == nil || *rule.FallbackOnError)
		d.RustTimeout = p.FallbackTimeout
		if hasRule && rule.RustTimeout > 0 {
			d.RustTimeout = rule.RustTimeout
		}
	}
	return d
}

func methodAllowed(list []string, m string) bool {
	if list == nil {
		return true
	}
	for _, x := range list {
		if x == m {
			return true
		}
	}
	return false
}
