package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestCanaryUserNeverEchoesASecret: an operator who pastes a token with
// its secret into [canary] users gets an error that names the key and
// suggests the id, but the secret is never in the error (which /status,
// the log and migration-ctl show), whatever separates it from the id.
func TestCanaryUserNeverEchoesASecret(t *testing.T) {
	const secret = "0d9e6b1c-3f2a-4c5d-8e7f-a1b2c3d4e5f6"
	for _, v := range []string{
		"root@pam!tok=" + secret,
		"root@pam!tok:" + secret,
		"root@pam!tok " + secret,
		"root@pam!" + secret,
		secret,
		"PVEAPIToken=root@pam!tok=" + strings.ToUpper(secret),
	} {
		t.Run(v[:12], func(t *testing.T) {
			_, err := Parse("f.conf", []byte(fmt.Sprintf("[canary]\nusers = [%q]\n", v)), nil)
			if err == nil {
				t.Fatalf("user %q accepted", v)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 || !strings.Contains(err.Error(), "canary.users") {
				t.Fatalf("error does not name canary.users: %v", err)
			}
			all := err.Error() + fmt.Sprintf("%+v", ve.Problems)
			if strings.Contains(strings.ToLower(all), secret) {
				t.Errorf("error echoes the token secret: %v", err)
			}
		})
	}
}
