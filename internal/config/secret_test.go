package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

const testSecret = "0b8e7a3c-4f5d-4e57-a1d6-2b3c4d5e6f70"

func TestSecretNeverPrinted(t *testing.T) {
	token := "root@pam!router=" + testSecret
	snap := mustParse(t, "f.conf", `phase = "rust-full"`, map[string]string{EnvPerlAPIToken: token})
	if snap.PerlAPIToken.Reveal() != token {
		t.Fatalf("Reveal = %q", snap.PerlAPIToken.Reveal())
	}
	s := snap.PerlAPIToken

	outputs := map[string]string{}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3s"} {
		outputs["fmt "+verb+" secret"] = fmt.Sprintf(verb, s)
		outputs["fmt "+verb+" *snapshot"] = fmt.Sprintf(verb, snap)
		outputs["fmt "+verb+" snapshot"] = fmt.Sprintf(verb, *snap)
	}
	outputs["fmt Sprint"] = fmt.Sprint(s, snap)
	outputs["error wrap"] = fmt.Errorf("call failed with %v: %w", s, errors.New("x")).Error()
	for name, v := range map[string]any{"secret": s, "snapshot": snap, "map": map[string]Secret{"t": s}} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json %s: %v", name, err)
		}
		outputs["json "+name] = string(b)
	}
	for name, h := range map[string]func(*bytes.Buffer) slog.Handler{
		"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		"json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		var buf bytes.Buffer
		log := slog.New(h(&buf))
		log.Info("token", "token", s, "snapshot", snap, "any", any(s))
		log.With("token", s).Info("with")
		log.Info("group", slog.Group("g", "token", s))
		outputs["slog "+name] = buf.String()
	}
	for name, out := range outputs {
		if strings.Contains(out, testSecret) || strings.Contains(out, fmt.Sprintf("%x", testSecret)) {
			t.Errorf("%s leaks the secret: %s", name, out)
		}
	}
	if got := fmt.Sprintf("%v|%#v|%q", s, s, s); got != "[redacted]|[redacted]|[redacted]" {
		t.Errorf("fmt = %q", got)
	}
	if got := outputs["json secret"]; got != `"[redacted]"` {
		t.Errorf("json = %s", got)
	}
	if s.ID() != "root@pam!router" || !s.IsSet() || Secret("").IsSet() {
		t.Errorf("ID/IsSet = %q/%v", s.ID(), s.IsSet())
	}
}

func TestTokenCheckNeverEchoes(t *testing.T) {
	for _, v := range []string{
		testSecret,
		"root@pam=" + testSecret,
		"root@pam!" + testSecret,
		"root@pam!router=" + testSecret + " trailing",
		"PVEAPIToken=root@pam!router=" + testSecret,
		"pveapitoken=root@pam!router=" + testSecret,
	} {
		_, err := Parse("f.conf", nil, envMap(map[string]string{EnvPerlAPIToken: v}))
		if err == nil {
			t.Errorf("token %q accepted", v)
			continue
		}
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Problems[0].Value != "[redacted]" {
			t.Errorf("problem value not redacted: %+v", ve)
		}
		if strings.Contains(err.Error(), testSecret) || strings.Contains(fmt.Sprintf("%+v", ve.Problems), testSecret) {
			t.Errorf("error echoes the secret: %v", err)
		}
	}
}
