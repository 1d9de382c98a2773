package pvedemo

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// kind is a parameter type from PVE's JSON schema, reduced to what the demo's
// endpoints use.
type kind int

const (
	kString kind = iota
	kInt
	kBool
	kEnum
	kIPv4
	kIPv6
	kIP
	kCIDRv4
	kCIDRv6
	kCIDR
	kMask4
	kIface
	kIfaceList
	kID // SDN zone / vnet id
	kArray
)

// param is one schema property.
type param struct {
	kind     kind
	required bool
	min, max int64 // kInt bounds; both zero means unbounded
	enum     []string
	maxLen   int // PVE's maxLength; 0 means none
}

// maxLength is PVE's maxLength for a string parameter: longer values are
// refused as JSONSchema.pm refuses them.
func (p param) maxLength(n int) param { p.maxLen = n; return p }

// schema lists every parameter an endpoint accepts, path variables included.
// Anything else is rejected the way PVE rejects it, so clients that send a
// misspelt key find out here rather than in production.
type schema map[string]param

func (p param) bounded(lo, hi int64) param { p.min, p.max = lo, hi; return p }

var (
	optString = param{kind: kString}
	reqString = param{kind: kString, required: true}
	optInt    = param{kind: kInt}
	optBool   = param{kind: kBool}
)

func optEnum(v ...string) param { return param{kind: kEnum, enum: v} }
func reqEnum(v ...string) param { return param{kind: kEnum, enum: v, required: true} }

// Messages PVE's JSONSchema.pm uses; clients match on some of them.
const (
	msgParamFailed = "Parameter verification failed.\n"
	msgNotInSchema = "property is not defined in schema and the schema does not allow additional properties"
	msgMissing     = "property is missing and it is not optional"
)

var (
	ifaceRe = regexp.MustCompile(`(?i)^[a-z][a-z0-9_]{1,20}([:.]\d+)?$`)
	sdnIDRe = regexp.MustCompile(`^[a-z][a-z0-9]*[a-z0-9]$`)
)

// validate checks raw request parameters against s, converting values to the
// canonical strings the handlers store: booleans as "1"/"0", integers in
// decimal, IPv4 masks as prefix lengths. Array parameters keep every value.
func (s schema) validate(raw map[string][]string) (map[string]string, map[string][]string, *apiError) {
	out := map[string]string{}
	arrays := map[string][]string{}
	errs := map[string]string{}
	for k, vals := range raw {
		p, ok := s[k]
		if !ok {
			errs[k] = msgNotInSchema
			continue
		}
		if p.kind == kArray {
			arrays[k] = vals
			continue
		}
		if len(vals) > 1 {
			errs[k] = fmt.Sprintf("type check ('%s') failed - got ARRAY", typeName(p.kind))
			continue
		}
		v, msg := p.check(vals[0])
		if msg != "" {
			errs[k] = msg
			continue
		}
		out[k] = v
	}
	for k, p := range s {
		if _, ok := raw[k]; p.required && !ok {
			errs[k] = msgMissing
		}
	}
	if len(errs) > 0 {
		return nil, nil, paramError(errs)
	}
	return out, arrays, nil
}

func typeName(k kind) string {
	switch k {
	case kInt:
		return "integer"
	case kBool:
		return "boolean"
	default:
		return "string"
	}
}

func (p param) check(v string) (string, string) {
	if p.maxLen > 0 && len(v) > p.maxLen {
		return "", fmt.Sprintf("value may only be %d characters long", p.maxLen)
	}
	switch p.kind {
	case kInt:
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return "", fmt.Sprintf("type check ('integer') failed - got '%s'", v)
		}
		if p.min != 0 || p.max != 0 {
			if n < p.min {
				return "", fmt.Sprintf("value must have a minimum value of %d", p.min)
			}
			if n > p.max {
				return "", fmt.Sprintf("value must have a maximum value of %d", p.max)
			}
		}
		return strconv.FormatInt(n, 10), ""
	case kBool:
		switch strings.ToLower(v) {
		case "1", "true", "yes", "on":
			return "1", ""
		case "0", "false", "no", "off", "":
			return "0", ""
		}
		return "", fmt.Sprintf("type check ('boolean') failed - got '%s'", v)
	case kEnum:
		for _, e := range p.enum {
			if v == e {
				return v, ""
			}
		}
		return "", fmt.Sprintf("value '%s' does not have a value in the enumeration '%s'", v, strings.Join(p.enum, ", "))
	case kIPv4, kIPv6, kIP:
		a, err := netip.ParseAddr(v)
		if err != nil || (p.kind == kIPv4 && !a.Is4()) || (p.kind == kIPv6 && !a.Is6()) {
			return "", fmt.Sprintf("value does not look like a valid %s address", ipWord(p.kind))
		}
		return a.String(), ""
	case kCIDRv4, kCIDRv6, kCIDR:
		pf, err := netip.ParsePrefix(v)
		if err != nil || (p.kind == kCIDRv4 && !pf.Addr().Is4()) || (p.kind == kCIDRv6 && !pf.Addr().Is6()) {
			return "", fmt.Sprintf("value does not look like a valid %s network configuration", cidrWord(p.kind))
		}
		return pf.String(), ""
	case kMask4:
		n, ok := maskToPrefix(v)
		if !ok {
			return "", "value does not look like a valid IP netmask"
		}
		return strconv.Itoa(n), ""
	case kIface:
		if !ifaceRe.MatchString(v) {
			return "", fmt.Sprintf("invalid format - invalid network interface name '%s'", v)
		}
		return v, ""
	case kIfaceList:
		list := splitList(v)
		for _, n := range list {
			if !ifaceRe.MatchString(n) {
				return "", fmt.Sprintf("invalid format - invalid network interface name '%s'", n)
			}
		}
		return strings.Join(list, " "), ""
	case kID:
		if len(v) > 8 || !sdnIDRe.MatchString(v) {
			return "", fmt.Sprintf("invalid format - invalid sdn id '%s' (lowercase letters and digits, 2-8 characters)", v)
		}
		return v, ""
	}
	return v, ""
}

func ipWord(k kind) string {
	switch k {
	case kIPv4:
		return "IPv4"
	case kIPv6:
		return "IPv6"
	}
	return "IP"
}

func cidrWord(k kind) string {
	switch k {
	case kCIDRv4:
		return "IPv4"
	case kCIDRv6:
		return "IPv6"
	}
	return "IP"
}

// splitList splits PVE's list formats (space, comma or semicolon separated).
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' || r == ';' || r == '\t' || r == '\n' })
}

// networkTypes is the POST/PUT type enum of Network.pm.
var networkTypes = []string{"bridge", "bond", "eth", "alias", "vlan", "fabric", "OVSBridge", "OVSBond", "OVSPort", "OVSIntPort", "vnet", "unknown"}

// networkWriteSchema is shared by POST /nodes/{node}/network and
// PUT /nodes/{node}/network/{iface}.
func networkWriteSchema(update bool) schema {
	s := schema{
		"node":                  reqString,
		"iface":                 {kind: kIface, required: true},
		"type":                  reqEnum(networkTypes...),
		"address":               {kind: kIPv4},
		"address6":              {kind: kIPv6},
		"autostart":             optBool,
		"bond-primary":          {kind: kIface},
		"bond_mode":             optEnum("balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad", "balance-tlb", "balance-alb", "balance-slb", "lacp-balance-slb", "lacp-balance-tcp"),
		"bond_xmit_hash_policy": optEnum("layer2", "layer2+3", "layer3+4"),
		"bridge_ports":          {kind: kIfaceList},
		"bridge_vids":           optString,
		"bridge_vlan_aware":     optBool,
		"cidr":                  {kind: kCIDRv4},
		"cidr6":                 {kind: kCIDRv6},
		"comments":              optString,
		"comments6":             optString,
		"gateway":               {kind: kIPv4},
		"gateway6":              {kind: kIPv6},
		"mtu":                   optInt.bounded(1280, 65520),
		"netmask":               {kind: kMask4},
		"netmask6":              optInt.bounded(0, 128),
		"ovs_bonds":             {kind: kIfaceList},
		"ovs_bridge":            {kind: kIface},
		"ovs_options":           optString.maxLength(1024),
		"ovs_ports":             {kind: kIfaceList},
		"ovs_tag":               optInt.bounded(1, 4094),
		"slaves":                {kind: kIfaceList},
		"vlan-id":               optInt.bounded(1, 4094),
		"vlan-raw-device":       {kind: kIface},
	}
	if update {
		s["delete"] = optString
	}
	return s
}

var zoneTypes = []string{"evpn", "faucet", "qinq", "simple", "vlan", "vxlan"}

// zoneSchema: POST /cluster/sdn/zones and PUT /cluster/sdn/zones/{zone}.
func zoneSchema(update bool) schema {
	s := schema{
		"zone":                        {kind: kID, required: true},
		"advertise-subnets":           optBool,
		"bridge":                      optString,
		"bridge-disable-mac-learning": optBool,
		"controller":                  optString,
		"dhcp":                        optEnum("dnsmasq"),
		"disable-arp-nd-suppression":  optBool,
		"dns":                         optString,
		"dnszone":                     optString,
		"dp-id":                       optInt,
		"exitnodes":                   optString,
		"exitnodes-local-routing":     optBool,
		"exitnodes-primary":           optString,
		"fabric":                      optString,
		"ipam":                        optString,
		"lock-token":                  optString,
		"mac":                         optString,
		"mtu":                         optInt,
		"nodes":                       optString,
		"peers":                       optString,
		"reversedns":                  optString,
		"rt-import":                   optString,
		"tag":                         optInt.bounded(0, 1<<62),
		"vlan-protocol":               optEnum("802.1q", "802.1ad"),
		"vrf-vxlan":                   optInt.bounded(1, 16777215),
		"vxlan-port":                  optInt.bounded(1, 65536),
	}
	if update {
		s["delete"] = optString.maxLength(4096)
		s["digest"] = optString.maxLength(64)
	} else {
		s["type"] = reqEnum(zoneTypes...)
	}
	return s
}

// vnetSchema: POST /cluster/sdn/vnets and PUT /cluster/sdn/vnets/{vnet}.
func vnetSchema(update bool) schema {
	s := schema{
		"vnet":          {kind: kID, required: true},
		"zone":          {kind: kID, required: !update},
		"alias":         optString.maxLength(256),
		"isolate-ports": optBool,
		"lock-token":    optString,
		"tag":           optInt.bounded(1, 16777215),
		"vlanaware":     optBool,
	}
	if update {
		s["delete"] = optString.maxLength(4096)
		s["digest"] = optString.maxLength(64)
	} else {
		s["type"] = optEnum("vnet")
	}
	return s
}

// subnetSchema: POST /cluster/sdn/vnets/{vnet}/subnets and PUT .../{subnet}.
func subnetSchema(update bool) schema {
	s := schema{
		"vnet":            {kind: kID, required: true},
		"subnet":          reqString,
		"dhcp-dns-server": {kind: kIP},
		"dhcp-range":      {kind: kArray},
		"dnszoneprefix":   optString,
		"gateway":         {kind: kIP},
		"lock-token":      optString,
		"snat":            optBool,
	}
	if update {
		s["delete"] = optString.maxLength(4096)
		s["digest"] = optString.maxLength(64)
	} else {
		s["type"] = reqEnum("subnet")
	}
	return s
}

// sdnReadSchema: GET of SDN lists and objects (path variables plus views).
func sdnReadSchema(vars ...string) schema {
	s := schema{"pending": optBool, "running": optBool}
	for _, v := range vars {
		s[v] = reqString
	}
	return s
}

// pathOnly accepts the path variables and nothing else.
func pathOnly(vars ...string) schema {
	s := schema{}
	for _, v := range vars {
		s[v] = reqString
	}
	return s
}
