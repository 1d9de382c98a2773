package pveschema

import "strings"

// Hand-written forms of the formats every network answer exercises
// (address, gateway, cidr, iface, bridge_ports): the regular expressions
// in formats.go are the definition, these are the same check without the
// regexp engine for the common case, ASCII text. Anything else (other
// scripts' digits, Unicode case folding such as the Kelvin sign under /i)
// goes to the regular expression. FuzzFastFormats holds both together.

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// perlEnd drops the one final newline Perl's `$` lets through.
func perlEnd(s string) string { return strings.TrimSuffix(s, "\n") }

// ipv4Octets is IPV4RE on ASCII text: four decimal octets 0-255 without
// leading zeros.
func ipv4Octets(s string) bool {
	for part := 0; part < 4; part++ {
		n, v := 0, 0
		for n < len(s) && n < 4 && s[n] >= '0' && s[n] <= '9' {
			v = v*10 + int(s[n]-'0')
			n++
		}
		if n == 0 || n > 3 || v > 255 || (n > 1 && s[0] == '0') {
			return false
		}
		s = s[n:]
		if part < 3 {
			if s == "" || s[0] != '.' {
				return false
			}
			s = s[1:]
		}
	}
	return s == ""
}

func fastIPv4(s string) bool {
	if !isASCII(s) {
		return fmtIPv4.MatchString(s)
	}
	return ipv4Octets(perlEnd(s))
}

func fastCIDRv4(s string) bool {
	if !isASCII(s) {
		return verifyCIDRv4(s)
	}
	s = perlEnd(s)
	i := strings.LastIndexByte(s, '/')
	if i < 0 || !ipv4Octets(s[:i]) {
		return false
	}
	bits := s[i+1:]
	if bits == "" {
		return false
	}
	for j := 0; j < len(bits); j++ {
		if bits[j] < '0' || bits[j] > '9' {
			return false
		}
	}
	n := perlNum(bits)
	return n > 7 && n <= 32
}

func isAlpha(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// fastIface is pve_verify_iface on ASCII text:
// /^[a-z][a-z0-9_]{1,20}([:\.]\d+)?$/i.
func fastIface(s string) bool {
	if !isASCII(s) {
		return fmtIface.MatchString(s)
	}
	s = perlEnd(s)
	if s == "" || !isAlpha(s[0]) {
		return false
	}
	n := 1
	for n < len(s) && (isAlpha(s[n]) || isDigit(s[n]) || s[n] == '_') {
		n++
	}
	if n-1 < 1 || n-1 > 20 {
		return false
	}
	if n == len(s) {
		return true
	}
	if s[n] != ':' && s[n] != '.' {
		return false
	}
	rest := s[n+1:]
	if rest == "" {
		return false
	}
	for j := 0; j < len(rest); j++ {
		if !isDigit(rest[j]) {
			return false
		}
	}
	return true
}
