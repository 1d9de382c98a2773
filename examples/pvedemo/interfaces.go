package pvedemo

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// netIface is one interface as PVE's parser (pve-common Network/Interfaces.pm)
// presents it. Attrs is keyed by API names (bridge_ports, vlan-id, ...) and
// holds strings, because that is what the Perl parser produces and what
// clients then see on the wire ("mtu":"1500").
type netIface struct {
	Name      string
	Type      string
	Autostart bool
	Method    string // inet method (static, manual, dhcp, loopback); "" means no inet stanza
	Method6   string // "" means no inet6 stanza
	Attrs     map[string]string
	Comments  string // inet stanza comment lines, each ending in "\n"
	Comments6 string
	Options   []string // inet lines this parser does not know, kept verbatim
	Options6  []string
	Priority  int // position in the file, as PVE reports it
}

// netConfig is the content of one interfaces file.
type netConfig struct {
	Ifaces  map[string]*netIface
	Trailer []string // global lines such as "source /etc/network/interfaces.d/*"
}

// fileKeys maps ifupdown option names to API parameter names. Options not
// listed here are kept verbatim in Options, as PVE does.
var fileKeys = map[string]string{
	"gateway":               "gateway",
	"mtu":                   "mtu",
	"bridge-ports":          "bridge_ports",
	"bridge_ports":          "bridge_ports",
	"bridge-stp":            "bridge_stp",
	"bridge_stp":            "bridge_stp",
	"bridge-fd":             "bridge_fd",
	"bridge_fd":             "bridge_fd",
	"bridge-vlan-aware":     "bridge_vlan_aware",
	"bridge-vids":           "bridge_vids",
	"bond-slaves":           "slaves",
	"bond_slaves":           "slaves",
	"bond-mode":             "bond_mode",
	"bond_mode":             "bond_mode",
	"bond-primary":          "bond-primary",
	"bond-xmit-hash-policy": "bond_xmit_hash_policy",
	"bond_xmit_hash_policy": "bond_xmit_hash_policy",
	"bond-miimon":           "bond_miimon",
	"vlan-raw-device":       "vlan-raw-device",
	"vlan-id":               "vlan-id",
	"ovs_type":              "ovs_type",
	"ovs_ports":             "ovs_ports",
	"ovs_bonds":             "ovs_bonds",
	"ovs_bridge":            "ovs_bridge",
	"ovs_options":           "ovs_options",
	"ovs_tag":               "ovs_tag",
}

// writeOrder is the order in which the writer emits API attributes, with the
// ifupdown2 option name for each. Address and gateway come first, as in PVE.
var writeOrder = []struct{ api, file string }{
	{"gateway", "gateway"},
	{"mtu", "mtu"},
	{"bridge_ports", "bridge-ports"},
	{"bridge_stp", "bridge-stp"},
	{"bridge_fd", "bridge-fd"},
	{"bridge_vlan_aware", "bridge-vlan-aware"},
	{"bridge_vids", "bridge-vids"},
	{"slaves", "bond-slaves"},
	{"bond_miimon", "bond-miimon"},
	{"bond_mode", "bond-mode"},
	{"bond-primary", "bond-primary"},
	{"bond_xmit_hash_policy", "bond-xmit-hash-policy"},
	{"vlan-raw-device", "vlan-raw-device"},
	{"vlan-id", "vlan-id"},
	{"ovs_type", "ovs_type"},
	{"ovs_bridge", "ovs_bridge"},
	{"ovs_ports", "ovs_ports"},
	{"ovs_bonds", "ovs_bonds"},
	{"ovs_tag", "ovs_tag"},
	{"ovs_options", "ovs_options"},
}

// physicalNIC is PVE::Network's $PHYSICAL_NIC_RE: names the parser types as eth.
var physicalNIC = regexp.MustCompile(`^(?:eth\d+|en[^:.]+|ib[^:.]+)$`)

// vlanName matches the "<device>.<vid>" naming that implies a VLAN.
var vlanName = regexp.MustCompile(`^(\S+)\.(\d+)$`)

// ifacePrio orders stanzas in the written file the way PVE's writer does:
// loopback, physical, bonds, bridges, VLANs.
func ifacePrio(t string) int {
	switch t {
	case "loopback":
		return 0
	case "eth", "alias", "OVSPort":
		return 1
	case "OVSIntPort":
		return 2
	case "bond", "OVSBond":
		return 3
	case "bridge", "OVSBridge":
		return 4
	case "vlan":
		return 5
	default:
		return 6
	}
}

// parseInterfaces reads ifupdown-style text as written by renderInterfaces
// (and reasonably hand-edited variants of it).
func parseInterfaces(text string) (*netConfig, error) {
	cfg := &netConfig{Ifaces: map[string]*netIface{}}
	auto := map[string]bool{}
	var cur *netIface
	curFamily := ""
	prio := 0
	get := func(name string) *netIface {
		if ifc, ok := cfg.Ifaces[name]; ok {
			return ifc
		}
		prio++
		ifc := &netIface{Name: name, Attrs: map[string]string{}, Priority: prio}
		cfg.Ifaces[name] = ifc
		return ifc
	}
	// Lines of any length: a stored value (a long comment) must never
	// make the file unreadable, which bufio.Scanner's 64 KiB token limit
	// did for every later read.
	lineNo := 0
	for raw := range strings.Lines(text) {
		lineNo++
		raw = strings.TrimRight(raw, "\r\n")
		line := strings.TrimSpace(raw)
		if line == "" {
			continue
		}
		indented := raw[0] == ' ' || raw[0] == '\t'
		if strings.HasPrefix(line, "#") {
			if cur != nil {
				c := strings.TrimPrefix(line, "#") + "\n"
				if curFamily == "inet6" {
					cur.Comments6 += c
				} else {
					cur.Comments += c
				}
			}
			continue
		}
		fields := strings.Fields(line)
		switch {
		case !indented && (fields[0] == "auto" || strings.HasPrefix(fields[0], "allow-")):
			cur = nil
			for _, n := range fields[1:] {
				auto[n] = true
			}
		case !indented && fields[0] == "iface":
			if len(fields) < 4 {
				return nil, fmt.Errorf("line %d: malformed iface line %q", lineNo, line)
			}
			cur = get(fields[1])
			curFamily = fields[2]
			switch curFamily {
			case "inet":
				cur.Method = fields[3]
			case "inet6":
				cur.Method6 = fields[3]
			default:
				return nil, fmt.Errorf("line %d: unknown address family %q", lineNo, curFamily)
			}
		case !indented:
			cur = nil
			cfg.Trailer = append(cfg.Trailer, line)
		case cur == nil:
			return nil, fmt.Errorf("line %d: option outside an iface stanza", lineNo)
		default:
			key, value, _ := strings.Cut(line, " ")
			value = strings.TrimSpace(value)
			parseOption(cur, curFamily, key, value)
		}
	}
	for name, ifc := range cfg.Ifaces {
		ifc.Autostart = auto[name]
		ifc.Type = detectType(ifc)
	}
	return cfg, nil
}

func parseOption(ifc *netIface, family, key, value string) {
	six := family == "inet6"
	switch key {
	case "address":
		addr, mask, hasMask := strings.Cut(value, "/")
		if six {
			ifc.Attrs["address6"] = addr
			if hasMask {
				ifc.Attrs["netmask6"] = mask
				ifc.Attrs["cidr6"] = value
			}
		} else {
			ifc.Attrs["address"] = addr
			if hasMask {
				ifc.Attrs["netmask"] = mask
				ifc.Attrs["cidr"] = value
			}
		}
		return
	case "netmask":
		if six {
			ifc.Attrs["netmask6"] = value
			ifc.Attrs["cidr6"] = ifc.Attrs["address6"] + "/" + value
		} else {
			if n, ok := maskToPrefix(value); ok {
				value = strconv.Itoa(n)
			}
			ifc.Attrs["netmask"] = value
			ifc.Attrs["cidr"] = ifc.Attrs["address"] + "/" + value
		}
		return
	case "gateway":
		if six {
			ifc.Attrs["gateway6"] = value
		} else {
			ifc.Attrs["gateway"] = value
		}
		return
	}
	api, known := fileKeys[key]
	if !known || six {
		if six {
			ifc.Options6 = append(ifc.Options6, key+" "+value)
		} else {
			ifc.Options = append(ifc.Options, strings.TrimSpace(key+" "+value))
		}
		return
	}
	switch api {
	case "bridge_vlan_aware":
		if value == "yes" || value == "1" || value == "on" {
			ifc.Attrs[api] = "1"
		}
	case "bridge_ports", "slaves":
		// The writer says "none" for an empty list; the key still marks the type.
		if value == "none" {
			value = ""
		}
		ifc.Attrs[api] = value
	default:
		ifc.Attrs[api] = value
	}
}

// detectType derives the interface type from the stanza the way PVE's parser
// does: the file has no type field, only the shape of the stanza.
func detectType(ifc *netIface) string {
	_, hasPorts := ifc.Attrs["bridge_ports"]
	_, hasSlaves := ifc.Attrs["slaves"]
	switch {
	case ifc.Name == "lo" || ifc.Method == "loopback":
		return "loopback"
	case ifc.Attrs["ovs_type"] != "":
		return ifc.Attrs["ovs_type"]
	case strings.Contains(ifc.Name, ":"):
		return "alias"
	case hasPorts:
		return "bridge"
	case hasSlaves:
		return "bond"
	case ifc.Attrs["vlan-raw-device"] != "" || vlanName.MatchString(ifc.Name):
		return "vlan"
	case physicalNIC.MatchString(ifc.Name):
		return "eth"
	default:
		return "unknown"
	}
}

// renderInterfaces writes the file PVE would write for cfg: stanzas sorted by
// kind and name, "auto" lines for autostart, addresses in CIDR notation,
// comments as "#" lines at the end of their stanza.
func renderInterfaces(cfg *netConfig) string {
	names := make([]string, 0, len(cfg.Ifaces))
	for n := range cfg.Ifaces {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		pa, pb := ifacePrio(cfg.Ifaces[a].Type), ifacePrio(cfg.Ifaces[b].Type)
		if pa != pb {
			return pa - pb
		}
		return strings.Compare(a, b)
	})
	var b strings.Builder
	for _, n := range names {
		ifc := cfg.Ifaces[n]
		if ifc.Autostart {
			fmt.Fprintf(&b, "auto %s\n", n)
		}
		method := ifc.Method
		if method == "" {
			method = "manual"
		}
		fmt.Fprintf(&b, "iface %s inet %s\n", n, method)
		if a := ifc.Attrs["address"]; a != "" {
			if m := ifc.Attrs["netmask"]; m != "" {
				a += "/" + m
			}
			fmt.Fprintf(&b, "\taddress %s\n", a)
		}
		for _, k := range writeOrder {
			v, ok := ifc.Attrs[k.api]
			if !ok {
				continue
			}
			switch k.api {
			case "bridge_ports", "slaves":
				if v == "" {
					v = "none"
				}
			case "bridge_vlan_aware":
				if v != "1" {
					continue
				}
				v = "yes"
			}
			if v == "" {
				continue
			}
			fmt.Fprintf(&b, "\t%s %s\n", k.file, v)
		}
		for _, o := range ifc.Options {
			fmt.Fprintf(&b, "\t%s\n", o)
		}
		writeComments(&b, ifc.Comments)
		b.WriteString("\n")
		if ifc.Method6 != "" && (ifc.Method6 != "manual" || ifc.Comments6 != "" || len(ifc.Options6) > 0) {
			fmt.Fprintf(&b, "iface %s inet6 %s\n", n, ifc.Method6)
			if a := ifc.Attrs["address6"]; a != "" {
				if m := ifc.Attrs["netmask6"]; m != "" {
					a += "/" + m
				}
				fmt.Fprintf(&b, "\taddress %s\n", a)
			}
			if g := ifc.Attrs["gateway6"]; g != "" {
				fmt.Fprintf(&b, "\tgateway %s\n", g)
			}
			for _, o := range ifc.Options6 {
				fmt.Fprintf(&b, "\t%s\n", o)
			}
			writeComments(&b, ifc.Comments6)
			b.WriteString("\n")
		}
	}
	for _, t := range cfg.Trailer {
		fmt.Fprintf(&b, "%s\n", t)
	}
	return b.String()
}

func writeComments(b *strings.Builder, c string) {
	for l := range strings.Lines(c) {
		fmt.Fprintf(b, "#%s\n", strings.TrimRight(l, "\n"))
	}
}

// apiObject renders ifc the way GET /nodes/{node}/network[/{iface}] shows it:
// strings for everything the parser read from the file, 1 for booleans.
// running says whether the interface is in the running config ("active").
func (ifc *netIface) apiObject(running bool, withName bool) map[string]any {
	o := map[string]any{
		"type":     ifc.Type,
		"priority": ifc.Priority,
	}
	if withName {
		o["iface"] = ifc.Name
	}
	method, method6 := ifc.Method, ifc.Method6
	if method == "" {
		method = "manual"
	}
	if method6 == "" {
		method6 = "manual"
	}
	o["method"], o["method6"] = method, method6
	families := []string{"inet"}
	if ifc.Method6 != "" && (ifc.Method6 != "manual" || ifc.Comments6 != "" || len(ifc.Options6) > 0) {
		families = append(families, "inet6")
	}
	o["families"] = families
	if ifc.Autostart {
		o["autostart"] = 1
	}
	if running {
		o["active"] = 1
	}
	if ifc.Type == "eth" {
		o["exists"] = 1
	}
	for k, v := range ifc.Attrs {
		switch k {
		case "bridge_vlan_aware":
			if v == "1" {
				o[k] = 1
			}
		case "ovs_type":
			// Internal to the file; the API reports it as type.
		default:
			o[k] = v
		}
	}
	// A "<device>.<vid>" name implies both; PVE shows them without the file
	// spelling them out.
	if m := vlanName.FindStringSubmatch(ifc.Name); m != nil && ifc.Type == "vlan" {
		if _, ok := o["vlan-raw-device"]; !ok {
			o["vlan-raw-device"] = m[1]
		}
		if _, ok := o["vlan-id"]; !ok {
			o["vlan-id"] = m[2]
		}
	}
	if ifc.Comments != "" {
		o["comments"] = ifc.Comments
	}
	if ifc.Comments6 != "" {
		o["comments6"] = ifc.Comments6
	}
	if len(ifc.Options) > 0 {
		o["options"] = slices.Clone(ifc.Options)
	}
	if len(ifc.Options6) > 0 {
		o["options6"] = slices.Clone(ifc.Options6)
	}
	return o
}

// maskToPrefix turns a dotted IPv4 netmask into a prefix length.
func maskToPrefix(s string) (int, bool) {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 && n <= 32 {
		return n, true
	}
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return 0, false
	}
	var v uint32
	for _, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 255 {
			return 0, false
		}
		v = v<<8 | uint32(n)
	}
	ones := 0
	for v&0x80000000 != 0 {
		ones++
		v <<= 1
	}
	if v != 0 { // not contiguous
		return 0, false
	}
	return ones, true
}

// seedInterfaces is the initial running config: a small single-NIC node with
// the management bridge on it, as a fresh PVE install looks (documentation
// addresses from RFC 5737).
const seedInterfaces = `auto lo
iface lo inet loopback

iface eno1 inet manual

auto vmbr0
iface vmbr0 inet static
	address 192.0.2.10/24
	gateway 192.0.2.1
	bridge-ports eno1
	bridge-stp off
	bridge-fd 0

source /etc/network/interfaces.d/*
`

// unifiedDiff returns "diff -u" output for two texts, or "" when they are
// equal. PVE reports exactly this (diff of interfaces vs interfaces.new) as
// the list's top-level "changes".
func unifiedDiff(aName string, aTime time.Time, a string, bName string, bTime time.Time, b string) string {
	if a == b {
		return ""
	}
	al, bl := splitLines(a), splitLines(b)
	ops := diffOps(al, bl)
	const ctx = 3
	var out strings.Builder
	stamp := func(t time.Time) string { return t.Format("2006-01-02 15:04:05.000000000 -0700") }
	fmt.Fprintf(&out, "--- %s\t%s\n+++ %s\t%s\n", aName, stamp(aTime), bName, stamp(bTime))
	// Group ops into hunks separated by more than 2*ctx unchanged lines.
	i := 0
	for i < len(ops) {
		for i < len(ops) && ops[i].kind == ' ' {
			i++
		}
		if i >= len(ops) {
			break
		}
		start := max(0, i-ctx)
		end := i
		for end < len(ops) {
			if ops[end].kind != ' ' {
				end++
				continue
			}
			run := end
			for run < len(ops) && ops[run].kind == ' ' {
				run++
			}
			if run == len(ops) || run-end > 2*ctx {
				end = min(len(ops), end+ctx)
				break
			}
			end = run
		}
		h := ops[start:end]
		aStart, bStart := h[0].ai+1, h[0].bi+1
		aCount, bCount := 0, 0
		for _, op := range h {
			if op.kind != '+' {
				aCount++
			}
			if op.kind != '-' {
				bCount++
			}
		}
		if aCount == 0 {
			aStart--
		}
		if bCount == 0 {
			bStart--
		}
		fmt.Fprintf(&out, "@@ -%s +%s @@\n", hunkRange(aStart, aCount), hunkRange(bStart, bCount))
		for _, op := range h {
			fmt.Fprintf(&out, "%c%s\n", op.kind, op.line)
		}
		i = end
	}
	return out.String()
}

func hunkRange(start, count int) string {
	if count == 1 {
		return strconv.Itoa(start)
	}
	return fmt.Sprintf("%d,%d", start, count)
}

func splitLines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

type diffOp struct {
	kind   byte // ' ', '-', '+'
	line   string
	ai, bi int // index in a and b where this op stands
}

// diffOps is a longest-common-subsequence diff; the files are a few dozen
// lines, so the quadratic table costs nothing.
func diffOps(a, b []string) []diffOp {
	n, m := len(a), len(b)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var ops []diffOp
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			ops = append(ops, diffOp{' ', a[i], i, j})
			i++
			j++
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			// Deletions before insertions, as diff(1) prints them.
			ops = append(ops, diffOp{'-', a[i], i, j})
			i++
		default:
			ops = append(ops, diffOp{'+', b[j], i, j})
			j++
		}
	}
	return ops
}
