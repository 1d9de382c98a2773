package pveschema

import (
	"fmt"
	"regexp"
	"strings"
)

// Perl's \d, \w and \s match Unicode characters on the character strings
// that JSON::XS decodes; Go's match ASCII only. A vnet alias "Büro" passes
// PVE's `[\w\d\s]` and must pass here too.
const (
	perlWordClass  = `\p{L}\p{M}\p{Nd}\p{Pc}`
	perlDigitClass = `\p{Nd}`
	perlSpaceClass = `\t\n\x0B\f\r\x{85}\p{Z}`
)

// posixUnicode are POSIX classes whose Perl meaning on character strings
// is wider than RE2's ASCII one.
var posixUnicode = map[string]string{
	"digit": perlDigitClass,
	"alpha": `\p{L}\p{M}`,
	"alnum": `\p{L}\p{M}\p{Nd}`,
	"word":  perlWordClass,
	"space": perlSpaceClass,
}

// translatePerlRegex rewrites the Perl regular expressions that PVE's
// schemas carry into Go's RE2 syntax:
//   - `(?^flags:...)` (how Perl stringifies a qr//) becomes a group that
//     sets flags and clears the others, as `^` does;
//   - `(?>...)` (atomic group) becomes a plain group: RE2 never backtracks,
//     so the set of strings the whole pattern matches only differs for
//     patterns that rely on atomicity to fail, which PVE's do not;
//   - `{,n}` becomes `{0,n}` (Perl 5.34 and later, PVE 9's Perl 5.40);
//   - possessive quantifiers lose their `+`, for the same reason as atomic
//     groups;
//   - `\d`, `\w`, `\s` and `\D`, `\W`, `\S` outside classes get Perl's
//     Unicode meaning; inside a class `\d`, `\w`, `\s`, `\D` do (`\W` and
//     `\S` inside a class keep RE2's ASCII meaning);
//   - `$` and `\Z` match at the end or before a final newline, as in Perl;
//     `\z` and `\A` are the same in both.
//
// What RE2 cannot express (backreferences, lookaround, \Q...\E) stays an
// error: the caller reports the pattern once as unchecked.
func translatePerlRegex(p string) (string, error) {
	var b strings.Builder
	inClass := false
	classStart := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '\\' && i+1 < len(p) {
			n := p[i+1]
			i++
			switch n {
			case 'd':
				b.WriteString(perlDigitClass)
			case 'D':
				b.WriteString(`\P{Nd}`)
			case 'w':
				if inClass {
					b.WriteString(perlWordClass)
				} else {
					b.WriteString("[" + perlWordClass + "]")
				}
			case 'W':
				if inClass {
					b.WriteString(`\W`)
				} else {
					b.WriteString("[^" + perlWordClass + "]")
				}
			case 's':
				if inClass {
					b.WriteString(perlSpaceClass)
				} else {
					b.WriteString("[" + perlSpaceClass + "]")
				}
			case 'S':
				if inClass {
					b.WriteString(`\S`)
				} else {
					b.WriteString("[^" + perlSpaceClass + "]")
				}
			case 'Z':
				if inClass {
					return "", fmt.Errorf("\\Z inside a character class")
				}
				b.WriteString(`(?:\n?\z)`)
			case '0':
				// Perl's \0 is NUL (with up to two more octal digits);
				// RE2 wants \x00.
				b.WriteString(`\x00`)
			default:
				b.WriteByte('\\')
				b.WriteByte(n)
			}
			classStart = false
			continue
		}
		if inClass {
			if c == '[' && i+1 < len(p) && p[i+1] == ':' {
				// POSIX class [:alpha:]: same syntax in RE2, but
				// ASCII; the common ones get Perl's Unicode meaning.
				if j := strings.Index(p[i:], ":]"); j > 0 {
					if u, ok := posixUnicode[p[i+2:i+j]]; ok {
						b.WriteString(u)
					} else {
						b.WriteString(p[i : i+j+2])
					}
					i += j + 1
					classStart = false
					continue
				}
			}
			if c == ']' && !classStart {
				inClass = false
			}
			if c == '^' && classStart {
				b.WriteByte(c)
				continue // `[^]...]`: the ] after ^ is still a literal
			}
			classStart = false
			b.WriteByte(c)
			continue
		}
		switch c {
		case '[':
			inClass = true
			classStart = true
			b.WriteByte(c)
		case '$':
			b.WriteString(`(?:\n?\z)`)
		case '(':
			rest := p[i+1:]
			switch {
			case strings.HasPrefix(rest, "?^"):
				j := strings.IndexByte(rest, ':')
				if j < 0 {
					return "", fmt.Errorf("unterminated (?^ group")
				}
				flags := rest[2:j]
				set, clear := "", ""
				for _, f := range flags {
					switch f {
					case 'i', 'm', 's':
						set += string(f)
					case 'x', 'n', 'u', 'a', 'l', 'd', 'p':
						// x (extended) would change the pattern's text;
						// PVE's patterns do not use it. The others only
						// name character-set semantics.
						if f == 'x' {
							return "", fmt.Errorf("flag x (extended syntax) in a (?^...) group is not supported")
						}
					default:
						return "", fmt.Errorf("unknown flag %q in the group (?^%s)", f, flags)
					}
				}
				for _, f := range "ims" {
					if !strings.ContainsRune(set, f) {
						clear += string(f)
					}
				}
				b.WriteString("(?" + set + "-" + clear + ":")
				i += j + 1
			case strings.HasPrefix(rest, "?>"):
				b.WriteString("(?:")
				i += 2
			default:
				b.WriteByte(c)
			}
		case '{':
			if strings.HasPrefix(p[i:], "{,") {
				b.WriteString("{0,")
				i++
			} else {
				b.WriteByte(c)
			}
		case '+':
			// A + right after a quantifier makes it possessive in Perl.
			if i > 0 && strings.IndexByte("*+?}", p[i-1]) >= 0 && !(i > 1 && p[i-2] == '\\') {
				continue
			}
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// compilePerlAnchored compiles a schema pattern the way check_prop applies
// it: `m/^$pattern$/`, anchored at both ends, Perl's `$` included.
func compilePerlAnchored(p string) (*regexp.Regexp, error) {
	t, err := translatePerlRegex(p)
	if err != nil {
		return nil, err
	}
	return regexp.Compile(`^(?:` + t + `)(?:\n?\z)`)
}

// mustPerl compiles a Perl regular expression that this package writes
// itself (the formats' checks), already anchored by its author.
func mustPerl(p string) *regexp.Regexp {
	t, err := translatePerlRegex(p)
	if err != nil {
		panic(err)
	}
	return regexp.MustCompile(t)
}
