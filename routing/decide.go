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
// not-network → Perl; phase perl-only → Perl (the rollback beats every
// override); feature flag off for the category → Perl; an endpoint entry
// that sets use_rust → its answer; otherwise the phase matrix.
//
// p must not be nil. Decide does not allocate on clean paths.
func Decide(p *Policy, r Request) Decision {
	c := Classify(r.Method, r.Path, r.IfaceType)
	return decideClassified(p, r.Method, c)
}

// DecideClassified is Decide for a request the caller already classified
// (with Classify), so a path is not normalised twice on the hot path.
func DecideClassified(p *Policy, method string, c Classification) Decision {
	return decideClassified(p, method, c)
}

func decideClassified(p *Policy, method string, c Classification) Decision {
	d := Decision{Backend: Perl, Category: c.Category, Template: c.Template}
	switch {
	case c.Category == NotNetwork:
		d.Reason = ReasonNotNetwork
		return d
	case p.Phase == PerlOnly:
		d.Reason = ReasonPerlOnly
		return d
	case c.Category == NodeNetworkAdvancedWrite && !p.Features.EnableAdvancedNetworking,
		(c.Category == SDNRead || c.Category == SDNWrite) && !p.Features.EnableSDNMigration:
		d.Reason = ReasonFeatureDisabled
		return d
	}
	rule, hasRule := p.Endpoints[c.Template]
	if hasRule && rule.UseRust != nil {
		d.Reason = ReasonEndpointOverride
		if *rule.UseRust && methodAllowed(rule.RustMethods, method) {
			d.Backend = Rust
		}
	} else {
		d.Reason = ReasonPhase
		if rustInPhase(p.Phase, c.Category) {
			d.Backend = Rust
		}
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
