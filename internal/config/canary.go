package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pve-migration/router/internal/pveuser"
)

var canaryKeys = []string{"users", "percent"}

// canaryTable validates `[canary]` into routing.Canary. A malformed user
// id is an error, not a silent non-match: an operator who listed the
// Terraform token must learn at once that it will never be a canary. A
// pasted full token (with its secret) is reported without its value.
func (p *parser) canaryTable(v any) {
	m, ok := v.(map[string]any)
	if !ok {
		p.problem("canary", valueText(v), "expected a table ([canary]), got "+describe(v))
		return
	}
	for _, key := range sortedKeys(m) {
		full, v := "canary."+key, m[key]
		switch key {
		case "users":
			arr, ok := v.([]any)
			if !ok {
				p.problem(full, valueText(v), `expected an array of user ids (["USER@REALM", "USER@REALM!TOKENID"]), got `+describe(v))
				continue
			}
			users := []string{}
			for _, e := range arr {
				s, ok := e.(string)
				if !ok {
					p.problem(full, valueText(e), "expected user ids as strings, got "+describe(e))
					continue
				}
				if err := pveuser.Check(s); err != nil {
					shown := strconv.Quote(s)
					msg := fmt.Sprintf("malformed user id %s: %v", shown, err)
					if hasSecret(s) {
						shown = redacted
						msg = "malformed user id: " + err.Error()
						if !strings.ContainsRune(s, '=') {
							// Check's message quotes the part it rejects,
							// which holds the secret here.
							msg = "malformed user id: it contains what looks like an API token secret (a UUID); only the token's id USER@REALM!TOKENID belongs here"
						}
					}
					if sug := pveuser.Suggest(s); sug != "" && !hasSecret(sug) {
						msg += fmt.Sprintf("; did you mean %q?", sug)
					}
					p.problem(full, shown, msg)
					continue
				}
				if !slices.Contains(users, s) {
					users = append(users, s)
				}
			}
			if len(users) > 0 {
				p.canary.Users = users
			}
		case "percent":
			n, ok := v.(int64)
			if !ok || n < 0 || n > 100 {
				p.problem(full, valueText(v), "out of range: want an integer percentage of users from 0 to 100, got "+describe(v))
				continue
			}
			p.canary.Percent = int(n)
		default:
			p.problem(full, valueText(v), unknownKey(key, "canary", canaryKeys))
		}
	}
}

// hasSecret reports whether a would-be user id carries a token secret
// (`...=SECRET`), which must not be echoed.
func hasSecret(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '=' {
			return true
		}
	}
	return hasUUID(s)
}

// hasUUID reports whether s contains a UUID (8-4-4-4-12 hex digits), the
// shape of a PVE API token secret, whatever separates it from the id.
func hasUUID(s string) bool {
	const n = 36
	for i := 0; i+n <= len(s); i++ {
		ok := true
		for j := 0; j < n && ok; j++ {
			c := s[i+j]
			switch j {
			case 8, 13, 18, 23:
				ok = c == '-'
			default:
				ok = c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
			}
		}
		if ok {
			return true
		}
	}
	return false
}
