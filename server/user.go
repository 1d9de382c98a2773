package server

import "github.com/pve-migration/router/internal/pveuser"

// requestUser returns the PVE user id a request claims in its
// Authorization header (an API token, or a ticket) or its PVEAuthCookie,
// for canary selection. Only the id leaves this function: the token secret
// and the ticket signature are neither copied nor kept, so nothing the
// stream holds afterwards can leak a credential. The id is not verified
// (the backend authenticates); a forged one can only move a request by
// one phase, within what the operator already chose to canary.
func requestUser(key string, v []byte) string {
	if key == "authorization" {
		return pveuser.FromAuthorization(string(v))
	}
	return pveuser.FromCookie(string(v))
}
