package ctl

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	testTokenID = "root@pam!migration"
	testSecret  = "0f6e2b1c-5ad4-4c1d-9a77-6c1d2e3f4a5b"
	testToken   = testTokenID + "=" + testSecret
)

// pveHandler answers like pveproxy's GET /api2/json/version: it checks the
// PVEAPIToken header, then returns the version object.
func pveHandler(t *testing.T) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path != "/api2/json/version":
			http.Error(w, "not found", http.StatusNotFound)
		case r.Header.Get("Authorization") != "PVEAPIToken="+testToken:
			// pveproxy puts the reason in the status line, no JSON body.
			w.WriteHeader(http.StatusUnauthorized)
		default:
			w.Header().Set("Content-Type", "application/json;charset=UTF-8")
			fmt.Fprint(w, `{"data":{"version":"9.1.2","release":"9.1","repoid":"b3e4c5d6"}}`)
		}
	})
}

// writeCA stores a TLS test server's certificate as a PEM file, as
// /etc/pve/pve-root-ca.pem would hold the cluster CA.
func writeCA(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pve-root-ca.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func fingerprint(srv *httptest.Server) []byte {
	sum := sha256.Sum256(srv.Certificate().Raw)
	return sum[:]
}

var latencyOut = regexp.MustCompile(`answered in [0-9.]+(ns|µs|ms|s)`)

func normaliseAPI(s string, urls map[string]string) string {
	// Longest first, so that a URL is replaced before its host:port.
	keys := slices.SortedFunc(maps.Keys(urls), func(a, b string) int { return len(b) - len(a) })
	for _, from := range keys {
		s = strings.ReplaceAll(s, from, urls[from])
	}
	return latencyOut.ReplaceAllString(s, "answered in $$LATENCY")
}

// closedAddr returns a loopback address on which nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestTestAPI(t *testing.T) {
	plain := httptest.NewServer(pveHandler(t))
	defer plain.Close()
	tlsSrv := httptest.NewUnstartedServer(pveHandler(t))
	// The handshakes this test fails on purpose are not news.
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0)
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	ca := writeCA(t, tlsSrv)
	fp := fingerprint(tlsSrv)
	otherFP := strings.Repeat("AB:", 31) + "AB"
	forbidden := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"data":null,"message":"Permission check failed (/, Sys.Audit)\n"}`)
	}))
	defer forbidden.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	notPVE := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "<html>hello</html>") }))
	defer notPVE.Close()
	redirect := httptest.NewServer(http.RedirectHandler("https://pve1.example:8006/api2/json/version", http.StatusMovedPermanently))
	defer redirect.Close()
	closed := "http://" + closedAddr(t)

	cfgDir := t.TempDir()
	cfgPath := filepath.Join(cfgDir, "c.conf")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf("perl_api_base_url = %q\n", plain.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(cfgDir, "token")
	if err := os.WriteFile(tokenFile, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withToken := map[string]string{"PERL_API_TOKEN": testToken}
	urls := map[string]string{
		plain.URL: "$PLAIN", tlsSrv.URL: "$TLS", forbidden.URL: "$FORBIDDEN", slow.URL: "$SLOW",
		notPVE.URL: "$NOTPVE", redirect.URL: "$REDIRECT", closed: "$CLOSED", ca: "$CA", cfgPath: "$CONFIG",
		colonHex(fp): "$FINGERPRINT",
	}
	for from, to := range maps.Clone(urls) {
		if host, ok := strings.CutPrefix(strings.TrimPrefix(from, "https://"), "http://"); ok || strings.HasPrefix(from, "https://") {
			urls[host] = to + "_HOST"
		}
	}

	tests := []struct {
		name   string
		args   []string
		env    map[string]string
		stdin  string
		code   int
		want   string // in stdout+stderr
		golden bool
	}{
		{"plain ok", []string{"test-perl", "--url", plain.URL}, withToken, "", 0, "PVE 9.1.2 (release 9.1, repoid b3e4c5d6)", true},
		{"url from config", []string{"test-perl", "--config", cfgPath}, withToken, "", 0, "OK: perl API at " + plain.URL, false},
		{"url from PERL_API_URL", []string{"test-perl", "--config", cfgPath}, map[string]string{"PERL_API_TOKEN": testToken, "PERL_API_URL": tlsSrv.URL}, "", 1, "unknown authority", false},
		{"token file", []string{"test-perl", "--url", plain.URL, "--token-file", tokenFile}, nil, "", 0, "token: root@pam!migration (secret not shown)", false},
		{"token file wins over env", []string{"test-perl", "--url", plain.URL, "--token-file", tokenFile}, map[string]string{"PERL_API_TOKEN": "root@pam!other=wrong"}, "", 0, "OK:", false},
		{"token from stdin", []string{"test-perl", "--url", plain.URL, "--token-file", "-"}, nil, testToken + "\n", 0, "OK:", false},
		{"missing token file", []string{"test-perl", "--url", plain.URL, "--token-file", filepath.Join(cfgDir, "nope")}, nil, "", 1, "cannot read --token-file", false},
		{"tls with ca", []string{"test-perl", "--url", tlsSrv.URL, "--ca", ca}, withToken, "", 0, "tls: certificate verified against --ca", true},
		{"tls unknown authority", []string{"test-perl", "--url", tlsSrv.URL}, withToken, "", 1, "--ca /etc/pve/pve-root-ca.pem", true},
		{"tls wrong host name", []string{"test-perl", "--url", strings.Replace(tlsSrv.URL, "127.0.0.1", "localhost", 1), "--ca", ca}, withToken, "", 1, "", false},
		{"fingerprint ok", []string{"test-perl", "--url", tlsSrv.URL, "--fingerprint", colonHex(fp)}, withToken, "", 0, "certificate matches --fingerprint", false},
		{"fingerprint plain hex", []string{"test-perl", "--url", tlsSrv.URL, "--fingerprint", hex.EncodeToString(fp)}, withToken, "", 0, "OK:", false},
		{"fingerprint and ca", []string{"test-perl", "--url", tlsSrv.URL, "--fingerprint", colonHex(fp), "--ca", ca}, withToken, "", 0, "verified against --ca and matches --fingerprint", false},
		{"fingerprint wrong", []string{"test-perl", "--url", tlsSrv.URL, "--fingerprint", otherFP}, withToken, "", 1, "does not match --fingerprint", true},
		{"insecure", []string{"test-perl", "--url", tlsSrv.URL, "--insecure"}, withToken, "", 0, "NOT verified (--insecure)", true},
		{"bad ca file", []string{"test-perl", "--url", tlsSrv.URL, "--ca", tokenFile}, withToken, "", 1, "holds no PEM certificate", false},
		{"https to plain http", []string{"test-perl", "--url", strings.Replace(plain.URL, "http:", "https:", 1)}, withToken, "", 1, "speaks plain HTTP", false},
		{"401 wrong token", []string{"test-perl", "--url", plain.URL}, map[string]string{"PERL_API_TOKEN": "root@pam!migration=wrong"}, "", 1, "PVEAPIToken=USER@REALM!TOKENID=SECRET", true},
		{"401 no token", []string{"test-perl", "--url", plain.URL}, nil, "", 1, "no token was sent", true},
		{"403", []string{"test-perl", "--url", forbidden.URL}, withToken, "", 1, "Permission check failed (/, Sys.Audit)", true},
		{"connection refused", []string{"test-perl", "--url", closed}, withToken, "", 1, "connection refused", true},
		{"dns failure", []string{"test-perl", "--url", "https://nonexistent.invalid:8006"}, withToken, "", 1, `cannot resolve host "nonexistent.invalid"`, false},
		{"timeout", []string{"test-perl", "--url", slow.URL, "--timeout", "300ms"}, withToken, "", 1, "no answer within 300ms", true},
		{"not pve", []string{"test-perl", "--url", notPVE.URL}, withToken, "", 1, "not with a PVE version object", false},
		{"redirect not followed", []string{"test-perl", "--url", redirect.URL}, withToken, "", 1, "redirected to https://pve1.example:8006", false},
		{"rust via --url", []string{"test-rust", "--url", tlsSrv.URL, "--ca", ca}, withToken, "", 0, "OK: rust API at " + tlsSrv.URL, false},
		{"rust via RUST_API_URL", []string{"test-rust"}, map[string]string{"PERL_API_TOKEN": testToken, "RUST_API_URL": plain.URL}, "", 0, "OK: rust API", false},
		{"rust refused", []string{"test-rust", "--url", closed}, withToken, "", 1, "is the Rust daemon running", true},
		{"malformed token", []string{"test-perl", "--url", plain.URL}, map[string]string{"PERL_API_TOKEN": "just-a-secret"}, "", 1, "USER@REALM!TOKENID=SECRET", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, tt.env, tt.stdin, tt.args...)
			all := r.stdout + r.stderr
			if r.code != tt.code {
				t.Errorf("exit %d, want %d\n%s", r.code, tt.code, all)
			}
			if !strings.Contains(all, tt.want) {
				t.Errorf("output lacks %q:\n%s", tt.want, all)
			}
			if strings.Contains(all, testSecret) || strings.Contains(all, "=wrong") {
				t.Errorf("output shows a token secret:\n%s", all)
			}
			if tt.code != 0 && !strings.Contains(r.stderr, "hint:") && !strings.Contains(r.stderr, "cannot read") {
				t.Errorf("failure without a hint:\n%s", r.stderr)
			}
			if tt.golden {
				out := fmt.Sprintf("exit: %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
				checkGolden(t, "api-"+strings.ReplaceAll(tt.name, " ", "-"), normaliseAPI(out, urls))
			}
		})
	}
}

func TestParseFingerprint(t *testing.T) {
	want := strings.Repeat("ab", 32)
	for _, in := range []string{want, strings.ToUpper(want), strings.TrimSuffix(strings.Repeat("AB:", 32), ":"), "sha256=" + want, " SHA256/" + want + " "} {
		b, err := parseFingerprint(in)
		if err != nil || hex.EncodeToString(b) != want {
			t.Errorf("parseFingerprint(%q) = %x, %v", in, b, err)
		}
	}
	for _, in := range []string{"", "AB:CD", want + "ab", "zz" + want[2:]} {
		if _, err := parseFingerprint(in); err == nil {
			t.Errorf("parseFingerprint(%q): no error", in)
		}
	}
}
