package server

import (
	"github.com/pve-migration/router/internal/pveuser"
	"github.com/pve-migration/router/routing"
)

// noteCredential remembers where a request's credentials are, without
// reading or copying them: most requests never need their user.
func (s *stream) noteCredential(key string, v []byte) {
	if key == "authorization" {
		if s.authz == nil {
			s.authz = v
		}
		return
	}
	// Two Cookie headers cover HTTP/2 clients that split cookies; a
	// ticket further on stays unread (no canary, never a wrong one).
	if s.nCookies < len(s.cookies) {
		s.cookies[s.nCookies] = v
		s.nCookies++
	}
}

// dropCredentials forgets the credential headers once the request headers
// are answered: nothing the stream keeps afterwards holds a secret.
func (s *stream) dropCredentials() { s.authz, s.cookies, s.nCookies = nil, [2][]byte{}, 0 }

// canaryUser reports whether the request's user is a canary that would
// change decision d: d keeps the request on perl by the phase alone, the
// next phase moves its category, and the user is listed or picked. Only
// then is the user read, once per request: from the API token header (as
// pveproxy, it wins), else from a PVEAuthCookie ticket. Only the id is
// kept; it is not verified (the backend authenticates), and a forged one
// can only move a request one phase early, within what the operator chose
// to canary.
func (s *stream) canaryUser(d routing.Decision) bool {
	if d.Backend != routing.Perl || d.Reason != routing.ReasonPhase || !routing.RustInPhase(d.Phase+1, d.Category) {
		return false
	}
	if !s.policy.Canary.Enabled() {
		return false
	}
	if !s.userResolved {
		s.userResolved = true
		if s.authz != nil {
			s.user = pveuser.FromAuthorizationBytes(s.authz)
		}
		for _, c := range s.cookies[:s.nCookies] {
			if s.user != "" {
				break
			}
			s.user = pveuser.FromCookieBytes(c)
		}
	}
	return s.user != "" && s.policy.Canary.Includes(s.user)
}
