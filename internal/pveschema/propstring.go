package pveschema

import "strings"

var (
	rePropKV  = mustPerl(`^([^=]+)=(.+)$`)
	reBlank   = mustPerl(`^\s*$`)
	reBoolYes = mustPerl(`(?i)^(1|on|yes|true)$`)
	reBoolNo  = mustPerl(`(?i)^(0|off|no|false)$`)
)

// parseBoolean is JSONSchema.pm's parse_boolean: "1", "0" or the text.
func parseBoolean(s string) string {
	switch {
	case reBoolYes.MatchString(s):
		return "1"
	case reBoolNo.MatchString(s):
		return "0"
	}
	return s
}

func isBooleanNode(n *node) bool { return len(n.types) == 1 && n.types[0] == kindBoolean }

// checkPropertyString is parse_property_string followed by its
// check_object: "" when text is a valid property string of format f,
// otherwise what is wrong (the first problem; PVE reports the whole value
// as a format error either way).
func checkPropertyString(f *node, text string) string {
	res := map[string]any{}
	defaultSet := false
	parts := strings.Split(text, ",")
	for len(parts) > 0 && parts[len(parts)-1] == "" { // Perl's split drops trailing empty fields
		parts = parts[:len(parts)-1]
	}
	for _, part := range parts {
		if reBlank.MatchString(part) {
			continue
		}
		if m := rePropKV.FindStringSubmatch(part); m != nil {
			k, v := m[1], m[2]
			if res[k] != nil {
				return "duplicate key in comma-separated list property: " + k
			}
			sub := f.lookup(k)
			if sub != nil && sub.alias {
				if sub.keyAlias != "" {
					if res[sub.keyAlias] != nil {
						return "key alias '" + sub.keyAlias + "' is already defined"
					}
					res[sub.keyAlias] = k
				}
				k = sub.aliasTarget
				sub = f.lookup(k)
				if res[k] != nil {
					return "key '" + k + "' is already defined (via alias)"
				}
			}
			if sub == nil {
				return "invalid key in comma-separated list property: " + k
			}
			if isBooleanNode(sub) {
				v = parseBoolean(v)
			}
			res[k] = v
			continue
		}
		if strings.Contains(part, "=") {
			return "missing key in comma-separated list property"
		}
		if f.defaultKey == "" {
			return "value without key, but schema does not define a default key"
		}
		if defaultSet || perlTruthy(res[f.defaultKey]) {
			return "duplicate key in comma-separated list property: " + f.defaultKey
		}
		defaultSet = true
		if isBooleanNode(f.lookup(f.defaultKey)) {
			part = parseBoolean(part)
		}
		res[f.defaultKey] = part
	}
	w := walker{path: []byte("x")}
	w.object(res, f, "")
	if len(w.out) > 0 {
		return strings.TrimPrefix(w.out[0].Path, "x.") + ": " + w.out[0].Message
	}
	return ""
}
