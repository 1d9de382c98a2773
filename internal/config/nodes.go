package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"

	"github.com/pve-migration/router/routing"
)

// nodeKeys are the keys a [nodes.NAME] table accepts.
var nodeKeys = []string{"phase"}

// nodeNameRE is PVE's rule for a node name (the `pve-node` format of
// PVE/JSONSchema.pm): a DNS label of letters, digits and inner hyphens. A
// table for a name PVE would refuse can never match a node, so it is a
// typo to report, not a rule to ignore.
var nodeNameRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$`)

// ValidNodeName reports whether name is a node name PVE accepts. The
// router's --node and migration-ctl's --node use it too, so a name that
// one of them accepts is one a [nodes.NAME] table can hold.
func ValidNodeName(name string) bool {
	return len(name) <= 63 && nodeNameRE.MatchString(name) && name != "localhost"
}

// NodeNameError says why name is not a node name, for flags and tables.
func NodeNameError(name string) string {
	if name == "localhost" {
		return `"localhost" is not a node name: it means "this node" in a request path; name the node as PVE does (pvecm nodes)`
	}
	return fmt.Sprintf("invalid node name %q: PVE node names are letters, digits and inner hyphens (at most 63), e.g. pve1", name)
}

// nodeTables validates the [nodes.NAME] tables: each holds at most a
// phase, which beats the top-level phase on that node. The result is kept
// apart from the koanf layers because node names are data, not keys.
func (p *parser) nodeTables(v any) {
	m, ok := v.(map[string]any)
	if !ok {
		p.problem("nodes", valueText(v), "expected tables [nodes.NAME], got "+describe(v))
		return
	}
	out := map[string]routing.Phase{}
	for _, name := range sortedKeys(m) {
		path := "nodes." + name
		if !ValidNodeName(name) {
			path = "nodes." + strconv.Quote(name)
			p.problem(path, "", NodeNameError(name))
			continue
		}
		body, ok := m[name].(map[string]any)
		if !ok {
			p.problem(path, valueText(m[name]), "expected a table [nodes."+name+"] with phase = \"...\", got "+describe(m[name]))
			continue
		}
		for _, key := range sortedKeys(body) {
			full := path + "." + key
			val := body[key]
			switch key {
			case "phase":
				s, ok := val.(string)
				if !ok {
					p.problem(full, valueText(val), "expected a string, got "+describe(val))
					continue
				}
				ph, err := routing.ParsePhase(s)
				if err != nil {
					p.problem(full, valueText(val), err.Error())
					continue
				}
				out[name] = ph
			default:
				p.problem(full, valueText(val), unknownKey(key, "node", nodeKeys))
			}
		}
	}
	p.nodes = out
}

// finishNodes completes a Snapshot with the node tables and the digest.
// PVE_NETWORK_MIGRATION_PHASE beats every phase of the file, node tables
// included: with it set, no node table applies. FileNodes keeps what the
// file says either way, for `status --cluster`.
func (p *parser) finishNodes(s *Snapshot) {
	s.FileNodes = p.nodes
	if len(p.nodes) > 0 && p.envLayer["phase"] == nil {
		s.Policy.Nodes = p.nodes
	}
	s.Sources["nodes"] = SourceDefault
	switch {
	case p.envLayer["phase"] != nil && len(p.nodes) > 0:
		s.Sources["nodes"] = SourceEnv
	case len(p.nodes) > 0:
		s.Sources["nodes"] = SourceFile
	}
	s.Digest = p.digest()
}

// digest is a SHA-256 of what the file configures (its validated values,
// not its bytes), so a comment edit keeps the digest, as it keeps the
// snapshot, and every node and migration-ctl compute the same digest for
// the same file whatever their environment.
func (p *parser) digest() string {
	b, err := json.Marshal(struct {
		File      map[string]any                  `json:"file"`
		Endpoints map[string]routing.EndpointRule `json:"endpoints"`
		Nodes     map[string]routing.Phase        `json:"nodes"`
	}{p.fileLayer, p.endpoints, p.nodes})
	if err != nil { // the values are all plain data; cannot happen
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}
