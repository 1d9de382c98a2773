package pveschema

import (
	"strconv"
	"strings"
)

// formatFunc is one of PVE's registered format checks: true when the value
// passes it. The checks are ported from the Perl code that registers them
// (register_format in pve-common's JSONSchema.pm and pve-network's SDN
// plugins), regular expressions included, so that a value passes here
// exactly when it passes on a PVE node.
type formatFunc func(string) bool

// Regular expressions of pve-common's PVE/ParseUtils.pm, in Perl syntax.
const (
	reIPv4Octet = `(?:25[0-5]|(?:2[0-4]|1[0-9]|[1-9])?[0-9])`
	reIPv4      = `(?:(?:` + reIPv4Octet + `\.){3}` + reIPv4Octet + `)`
	reIPv6H16   = `(?:[0-9a-fA-F]{1,4})`
	reIPv6LS32  = `(?:(?:` + reIPv4 + `|` + reIPv6H16 + `:` + reIPv6H16 + `))`
	reIPv6      = `(?:` +
		`(?:(?:(?:` + reIPv6H16 + `:){6})` + reIPv6LS32 + `)|` +
		`(?:(?:::(?:` + reIPv6H16 + `:){5})` + reIPv6LS32 + `)|` +
		`(?:(?:(?:` + reIPv6H16 + `)?::(?:` + reIPv6H16 + `:){4})` + reIPv6LS32 + `)|` +
		`(?:(?:(?:(?:` + reIPv6H16 + `:){0,1}` + reIPv6H16 + `)?::(?:` + reIPv6H16 + `:){3})` + reIPv6LS32 + `)|` +
		`(?:(?:(?:(?:` + reIPv6H16 + `:){0,2}` + reIPv6H16 + `)?::(?:` + reIPv6H16 + `:){2})` + reIPv6LS32 + `)|` +
		`(?:(?:(?:(?:` + reIPv6H16 + `:){0,3}` + reIPv6H16 + `)?::(?:` + reIPv6H16 + `:){1})` + reIPv6LS32 + `)|` +
		`(?:(?:(?:(?:` + reIPv6H16 + `:){0,4}` + reIPv6H16 + `)?::)` + reIPv6LS32 + `)|` +
		`(?:(?:(?:(?:` + reIPv6H16 + `:){0,5}` + reIPv6H16 + `)?::)` + reIPv6H16 + `)|` +
		`(?:(?:(?:(?:` + reIPv6H16 + `:){0,6}` + reIPv6H16 + `)?::)))`
	reEmailUser = `[\w\+\-\~]+(\.[\w\+\-\~]+)*`
	reEmail     = reEmailUser + `@[a-zA-Z0-9\-]+(\.[a-zA-Z0-9\-]+)*`
	reDNSLabel  = `([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)`
)

var (
	fmtIPv4        = mustPerl(`^(?:` + reIPv4 + `)$`)
	fmtIPv6        = mustPerl(`^(?:` + reIPv6 + `)$`)
	fmtCIDRv4      = mustPerl(`^(?:` + reIPv4 + `)(?:/(\d+))$`)
	fmtCIDRv6      = mustPerl(`^(?:` + reIPv6 + `)(?:/(\d+))$`)
	fmtIface       = mustPerl(`(?i)^[a-z][a-z0-9_]{1,20}([:\.]\d+)?$`)
	fmtConfigID    = mustPerl(`(?i)^[a-z][a-z0-9_-]+$`)
	fmtID          = mustPerl(`(?i)^[a-z][a-z0-9\-\_\.]*[a-z0-9]$`)
	fmtBridgeID    = mustPerl(`^[-_.\w\d]+$`)
	fmtVMID        = mustPerl(`^[1-9][0-9]{2,8}$`)
	fmtNode        = mustPerl(`^([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)$`)
	fmtMAC         = mustPerl(`(?i)^[a-f0-9][02468ace](?::[a-f0-9]{2}){5}$`)
	fmtURLEncoded  = mustPerl(`^[-%a-zA-Z0-9_.!~*'()]*$`)
	fmtEmail       = mustPerl(`^` + reEmail + `$`)
	fmtEmailUser   = mustPerl(`^` + reEmailUser + `$`)
	fmtDNSName     = mustPerl(`^(` + reDNSLabel + `\.)*` + reDNSLabel + `$`)
	fmtVlanRange   = mustPerl(`^(\d+)(?:-(\d+))?$`)
	fmtFabricID    = mustPerl(`(?i)^[a-zA-Z0-9][a-zA-Z0-9-]{0,6}[a-zA-Z0-9]?$`)
	fmtISISNet     = mustPerl(`^[a-fA-F0-9]{2}(\.[a-fA-F0-9]{4}){3,9}\.[a-fA-F0-9]{2}$`)
	fmtBGPRT       = mustPerl(`^(\d+):(\d+)$`)
	fmtIPv4Config  = mustPerl(`^(?:dhcp|manual)$`)
	fmtIPv6Config  = mustPerl(`^(?:auto|dhcp|manual)$`)
	fmtLdapAttr    = mustPerl(`^[a-zA-Z0-9]+$`)
	ipv4MaskValues = func() map[string]bool {
		m := make(map[string]bool, 33)
		for bits := 0; bits <= 32; bits++ {
			mask := uint32(0)
			if bits > 0 {
				mask = ^uint32(0) << (32 - bits)
			}
			m[strconv.Itoa(int(mask>>24))+"."+strconv.Itoa(int(mask>>16&255))+"."+
				strconv.Itoa(int(mask>>8&255))+"."+strconv.Itoa(int(mask&255))] = true
		}
		return m
	}()
)

// cidrBits checks the prefix length the way pve_verify_cidrv4/v6 do:
// `($1 > 7) && ($1 <= max)`.
func cidrBits(sub []string, max int) bool {
	if sub == nil {
		return false
	}
	n := perlNum(sub[1])
	return n > 7 && n <= float64(max)
}

func verifyCIDRv4(s string) bool { return cidrBits(fmtCIDRv4.FindStringSubmatch(s), 32) }
func verifyCIDRv6(s string) bool { return cidrBits(fmtCIDRv6.FindStringSubmatch(s), 128) }
func verifyIP(s string) bool     { return fastIPv4(s) || fmtIPv6.MatchString(s) }

// perlNum is Perl's numeric value of a string that a regular expression
// already showed to be digits.
func perlNum(s string) float64 {
	f, _ := strconv.ParseFloat(s, 64)
	return f
}

// formats are PVE's registered formats that the network and SDN schemas
// (and most others) name. A format that is not here is reported once as
// unchecked, never as a violation: PVE has formats that need the node's
// own state (storage, users, time zones) or parse property strings.
var formats = map[string]formatFunc{
	"string": func(string) bool { return true },
	// check_format returns before looking a format up when it is "regex".
	"regex":          func(string) bool { return true },
	"urlencoded":     fmtURLEncoded.MatchString,
	"pve-configid":   fmtConfigID.MatchString,
	"pve-storage-id": parseID,
	"acme-plugin-id": parseID,
	"pve-bridge-id":  fmtBridgeID.MatchString,
	"pve-vmid":       fmtVMID.MatchString,
	"pve-node":       fmtNode.MatchString,
	"mac-addr":       fmtMAC.MatchString,
	"ipv4":           fastIPv4,
	"ipv6":           fmtIPv6.MatchString,
	"ip":             verifyIP,
	"ipv4mask":       func(s string) bool { return ipv4MaskValues[s] },
	"CIDRv4":         fastCIDRv4,
	"CIDRv6":         verifyCIDRv6,
	"CIDR":           func(s string) bool { return fastCIDRv4(s) || verifyCIDRv6(s) },
	"pve-ipv4-config": func(s string) bool {
		return fmtIPv4Config.MatchString(s) || fastCIDRv4(s)
	},
	"pve-ipv6-config": func(s string) bool {
		return fmtIPv6Config.MatchString(s) || verifyCIDRv6(s)
	},
	"email":             fmtEmail.MatchString,
	"email-or-username": func(s string) bool { return fmtEmail.MatchString(s) || fmtEmailUser.MatchString(s) },
	"dns-name":          fmtDNSName.MatchString,
	"address":           func(s string) bool { return verifyIP(s) || fmtDNSName.MatchString(s) },
	"ldap-simple-attr":  fmtLdapAttr.MatchString,
	"pve-iface":         fastIface,
	"pve-vlan-id-or-range": func(s string) bool {
		m := fmtVlanRange.FindStringSubmatch(s)
		if m == nil {
			return false
		}
		start := perlNum(m[1])
		if start < 2 || start > 4094 {
			return false
		}
		// Perl tests `if ($end)`: an end of "0" counts as absent.
		if m[2] != "" && perlNum(m[2]) != 0 {
			end := perlNum(m[2])
			if end < 2 || end > 4094 || start >= end {
				return false
			}
		}
		return true
	},

	// pve-network (src/PVE/Network/SDN/...).
	"pve-sdn-fabric-id": fmtFabricID.MatchString,
	"pve-sdn-isis-net":  fmtISISNet.MatchString,
	"pve-sdn-bgp-rt": func(s string) bool {
		m := fmtBGPRT.FindStringSubmatch(s)
		return m != nil && perlNum(m[1]) <= 4294967295 && perlNum(m[2]) <= 4294967295
	},
	"pve-sdn-subnet-id": func(s string) bool {
		cidr := s
		if !strings.Contains(s, "/") {
			parts := strings.Split(s, "-")
			ip, mask := "", ""
			if len(parts) > 1 {
				ip = parts[1]
			}
			if len(parts) > 2 {
				mask = parts[2]
			}
			cidr = ip + "/" + mask
		}
		return verifyCIDRv4(cidr) || verifyCIDRv6(cidr)
	},
}

// parseID is pve-common's parse_id (storage and ACME plugin IDs).
func parseID(s string) bool {
	return len([]rune(s)) >= 2 && fmtID.MatchString(s)
}

// splitList is pve-common's split_list, which `-list` formats apply before
// checking each element: NUL-separated if there is a NUL, else separated
// by commas, semicolons and white space.
func splitList(s string) []string {
	if strings.IndexByte(s, 0) >= 0 {
		parts := strings.Split(s, "\x00")
		// Perl's split drops trailing empty fields.
		for len(parts) > 0 && parts[len(parts)-1] == "" {
			parts = parts[:len(parts)-1]
		}
		return parts
	}
	return strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ';' || isPerlSpace(r)
	})
}

func isPerlSpace(r rune) bool {
	switch r {
	case ' ', '\t', '\n', '\v', '\f', '\r', 0x85, 0xa0, 0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000:
		return true
	}
	return r >= 0x2000 && r <= 0x200a
}

// resolveFormat turns a schema's format name into its check, following
// check_format (suffix first, as its `^(.*?)(?:-(list|opt))?$` does): a
// "-list" suffix checks every element of split_list (an
// empty list passes), "-opt" checks only a true value. ok is false for a
// format this package does not know.
func resolveFormat(name string) (formatFunc, bool) {
	if base, ok := strings.CutSuffix(name, "-list"); ok {
		f, ok := formats[base]
		if !ok {
			return nil, false
		}
		return func(s string) bool {
			for _, el := range splitList(s) {
				if !f(el) {
					return false
				}
			}
			return true
		}, true
	}
	if base, ok := strings.CutSuffix(name, "-opt"); ok {
		f, ok := formats[base]
		if !ok {
			return nil, false
		}
		return func(s string) bool { return !perlTrue(s) || f(s) }, true
	}
	f, ok := formats[name]
	return f, ok
}

// perlTrue is Perl's truth of a defined string: false for "" and "0".
func perlTrue(s string) bool { return s != "" && s != "0" }
