package ctl

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pve-migration/router/internal/config"
)

// EnvRustAPIURL names the Rust daemon's base URL for test-rust; the config
// file has no key for it because the router does not call Rust itself
// (Envoy or the embedded data plane does).
const EnvRustAPIURL = "RUST_API_URL"

// pveRootCA is where a PVE cluster keeps the CA that signs every node's
// pveproxy certificate.
const pveRootCA = "/etc/pve/pve-root-ca.pem"

type apiTestOptions struct {
	url         string
	tokenFile   string
	ca          string
	fingerprint string
	insecure    bool
	timeout     time.Duration
}

func defineAPITestFlags(fs *flag.FlagSet, o *apiTestOptions, urlHelp string) {
	fs.StringVar(&o.url, "url", "", urlHelp)
	fs.StringVar(&o.tokenFile, "token-file", "", "read the API token (USER@REALM!TOKENID=SECRET) from `FILE` (- for stdin) instead of $"+config.EnvPerlAPIToken)
	fs.StringVar(&o.ca, "ca", "", "trust this CA certificate `FILE` (the cluster's CA is "+pveRootCA+")")
	fs.StringVar(&o.fingerprint, "fingerprint", "", "accept only a server certificate with this `SHA256` fingerprint (AA:BB:... or hex, as `pvenode cert info` prints it)")
	fs.BoolVar(&o.insecure, "insecure", false, "do not verify the server's certificate (testing only)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "give up after `DURATION`")
}

func testPerlCommand() *command {
	return &command{
		name:    "test-perl",
		summary: "check that the Perl API (pveproxy) answers, with the token",
		details: `Sends GET {url}/api2/json/version with "Authorization: PVEAPIToken=..." and
prints the PVE version and the latency, or what failed and what to do about
it. The URL defaults to perl_api_base_url from the config (or $PERL_API_URL);
the token comes from $PERL_API_TOKEN or --token-file and is never printed.
TLS is verified: trust the cluster CA with --ca ` + pveRootCA + ` or pin
the certificate with --fingerprint; --insecure skips the check.`,
		examples: []string{
			prog + " test-perl --ca " + pveRootCA,
			prog + " test-perl --url https://pve1.example.com:8006 --fingerprint AB:CD:...",
			"PERL_API_TOKEN='root@pam!migration=...' " + prog + " test-perl   # single quotes: ! is special in bash",
		},
		maxArgs: 0,
		define: func(fs *flag.FlagSet) runFunc {
			o := &apiTestOptions{}
			defineAPITestFlags(fs, o, "base `URL` of pveproxy (default: perl_api_base_url from the config)")
			return func(a *app, cfg configFlag, _ []string) int {
				return a.testAPI(cfg, "perl", *o)
			}
		},
	}
}

func testRustCommand() *command {
	return &command{
		name:    "test-rust",
		summary: "check that the Rust API answers, with the token",
		details: `Sends GET {url}/api2/json/version to the Rust daemon, like test-perl. The
config file has no key for the Rust daemon's address: pass --url or set
$` + EnvRustAPIURL + `. The token is the same PVE API token ($PERL_API_TOKEN or
--token-file).`,
		examples: []string{
			prog + " test-rust --url https://127.0.0.1:8009 --ca " + pveRootCA,
		},
		maxArgs: 0,
		define: func(fs *flag.FlagSet) runFunc {
			o := &apiTestOptions{}
			defineAPITestFlags(fs, o, "base `URL` of the Rust daemon (default: $"+EnvRustAPIURL+")")
			return func(a *app, cfg configFlag, _ []string) int {
				return a.testAPI(cfg, "rust", *o)
			}
		},
	}
}

// pveVersion is the data of GET /api2/json/version.
type pveVersion struct {
	Version string `json:"version"`
	Release string `json:"release"`
	RepoID  string `json:"repoid"`
}

func (a *app) testAPI(cfg configFlag, which string, o apiTestOptions) int {
	cmd := "test-" + which
	// The token is checked first: a malformed PERL_API_TOKEN would
	// otherwise surface as a config error while loading the URL.
	token, code := a.apiToken(o.tokenFile)
	if code != ExitOK {
		return code
	}
	base := o.url
	switch {
	case base == "" && which == "rust":
		base = strings.TrimSpace(a.getenv(EnvRustAPIURL))
		if base == "" {
			return a.usageError(cmd, "--url is required: the config has no key for the Rust daemon (or set "+EnvRustAPIURL+")")
		}
	case base == "":
		env := a.getenv
		if token != "" || o.tokenFile != "" {
			// Already checked, and possibly replaced by --token-file.
			env = func(k string) string {
				if k == config.EnvPerlAPIToken {
					return ""
				}
				return a.getenv(k)
			}
		}
		path, explicit := cfg.resolve(env)
		snap, err := config.LoadResolved(path, explicit, env)
		if err != nil {
			a.reportLoadError(path, err)
			return ExitFailure
		}
		base = snap.PerlAPIBaseURL
	}
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return a.usageError(cmd, fmt.Sprintf("invalid URL %q: expected http(s)://HOST[:PORT]", base))
	}
	u.User = nil
	var pin []byte
	if o.fingerprint != "" {
		if pin, err = parseFingerprint(o.fingerprint); err != nil {
			return a.usageError(cmd, err.Error())
		}
	}
	if o.insecure && (pin != nil || o.ca != "") {
		return a.usageError(cmd, "--insecure cannot be combined with --ca or --fingerprint")
	}
	name := which + " API at " + u.Redacted()
	tlsState := &tlsCheck{host: u.Hostname(), pin: pin, insecure: o.insecure}
	if o.ca != "" {
		pem, err := os.ReadFile(o.ca)
		if err != nil {
			return a.failf([]string{"the PVE cluster CA is " + pveRootCA + " on every node"}, "cannot read --ca: %v", err)
		}
		tlsState.roots = x509.NewCertPool()
		if !tlsState.roots.AppendCertsFromPEM(pem) {
			return a.failf([]string{"--ca takes a PEM file such as " + pveRootCA}, "--ca %s holds no PEM certificate", o.ca)
		}
	}
	client := &http.Client{
		Timeout: o.timeout,
		Transport: &http.Transport{
			// Direct, like the router: an http_proxy set for apt must
			// not decide whether the API looks reachable.
			Proxy:             nil,
			TLSClientConfig:   tlsState.config(),
			DisableKeepAlives: true,
		},
		// A redirect (pveproxy sends http:// to https://) is reported,
		// not followed: the token must not travel somewhere unexpected.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	ctx, cancel := context.WithTimeout(a.ctx, o.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String()+"/api2/json/version", nil)
	if err != nil {
		return a.failf(nil, "%s: %v", name, err)
	}
	if token != "" {
		req.Header.Set("Authorization", "PVEAPIToken="+token.Reveal())
	}
	req.Header.Set("User-Agent", prog)
	start := time.Now()
	resp, err := client.Do(req)
	latency := time.Since(start)
	if err != nil {
		setting := "perl_api_base_url in the config, or $" + config.EnvPerlAPIURL
		switch {
		case o.url != "":
			setting = "--url"
		case which == "rust":
			setting = "$" + EnvRustAPIURL
		}
		msg, hints := explainTransportError(err, u, which, setting, tlsState, o.timeout)
		return a.failf(hints, "%s: %s", name, msg)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		msg, hints := explainHTTPError(resp, body, which, token)
		return a.failf(hints, "%s: %s", name, msg)
	}
	var env struct {
		Data *pveVersion `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil || env.Data == nil || env.Data.Version == "" {
		return a.failf([]string{"check that the URL points at a PVE API (port 8006 for pveproxy), not at another service"},
			"%s answered 200 but not with a PVE version object", name)
	}
	fmt.Fprintf(a.stdout, "%s %s answered in %s: PVE %s (release %s, repoid %s)\n", a.style.good("OK:"), name,
		latency.Round(time.Millisecond), env.Data.Version, env.Data.Release, env.Data.RepoID)
	fmt.Fprintf(a.stdout, "tls: %s\n", tlsState.describe(u))
	if token != "" {
		fmt.Fprintf(a.stdout, "token: %s (secret not shown)\n", token.ID())
	} else {
		fmt.Fprintf(a.stdout, "token: none sent (set %s or pass --token-file)\n", config.EnvPerlAPIToken)
	}
	return ExitOK
}

// apiToken reads the token from --token-file or PERL_API_TOKEN. It is
// checked for PVE's USER@REALM!TOKENID=SECRET shape here because a
// malformed token fails as a bare 401 three seconds later.
func (a *app) apiToken(file string) (config.Secret, int) {
	raw := a.getenv(config.EnvPerlAPIToken)
	from := "$" + config.EnvPerlAPIToken
	if file != "" {
		var b []byte
		var err error
		if file == "-" {
			b, err = io.ReadAll(io.LimitReader(a.stdin, 4096))
		} else {
			b, err = os.ReadFile(file)
		}
		if err != nil {
			return "", a.failf(nil, "cannot read --token-file: %v", err)
		}
		raw, from = string(b), "--token-file"
	}
	tok := config.Secret(strings.TrimSpace(raw))
	if tok == "" {
		return "", ExitOK
	}
	if tok.ID() == "" {
		msg := fmt.Sprintf("the token from %s is not a PVE API token (value not shown)", from)
		hints := []string{"the format is USER@REALM!TOKENID=SECRET, e.g. root@pam!migration=aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee; create one with: pveum user token add root@pam migration"}
		if strings.HasPrefix(strings.ToLower(tok.Reveal()), "pveapitoken") {
			hints = append([]string{`drop the "PVEAPIToken=" prefix: migration-ctl adds it to the Authorization header itself`}, hints...)
		}
		return "", a.failf(hints, "%s", msg)
	}
	return tok, ExitOK
}

// tlsCheck verifies the server certificate itself (crypto/tls's own check
// is switched off) so that on failure it still knows the certificate the
// server presented and can print its fingerprint for --fingerprint.
type tlsCheck struct {
	host     string
	roots    *x509.CertPool // nil: the system roots
	pin      []byte
	insecure bool

	mu sync.Mutex
	// seen is the SHA-256 of the leaf the server presented.
	seen []byte
}

// presented returns the fingerprint of the certificate the server sent,
// nil before a handshake got that far.
func (t *tlsCheck) presented() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.seen
}

// errFingerprint is a certificate that does not match --fingerprint.
type errFingerprint struct{ got, want []byte }

func (e *errFingerprint) Error() string {
	return fmt.Sprintf("certificate fingerprint %s does not match --fingerprint %s", colonHex(e.got), colonHex(e.want))
}

func (t *tlsCheck) config() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // verified in VerifyConnection below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server sent no certificate")
			}
			leaf := cs.PeerCertificates[0]
			sum := sha256.Sum256(leaf.Raw)
			t.mu.Lock()
			t.seen = sum[:]
			t.mu.Unlock()
			if t.insecure {
				return nil
			}
			if t.pin != nil {
				if string(t.pin) != string(sum[:]) {
					return &errFingerprint{got: sum[:], want: t.pin}
				}
				if t.roots == nil {
					return nil // a pin replaces the CA check, as PVE's own clients do
				}
			}
			opts := x509.VerifyOptions{DNSName: t.host, Roots: t.roots, Intermediates: x509.NewCertPool()}
			for _, c := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			_, err := leaf.Verify(opts)
			return err
		},
	}
}

func (t *tlsCheck) describe(u *url.URL) string {
	switch {
	case u.Scheme == "http":
		return "none (plain http)"
	case t.insecure:
		return "certificate NOT verified (--insecure); its fingerprint is " + colonHex(t.presented())
	case t.pin != nil && t.roots != nil:
		return "certificate verified against --ca and matches --fingerprint"
	case t.pin != nil:
		return "certificate matches --fingerprint"
	case t.roots != nil:
		return "certificate verified against --ca"
	}
	return "certificate verified against the system CAs"
}

// parseFingerprint accepts a SHA-256 fingerprint as PVE prints it
// (AA:BB:...) or as plain hex, with an optional "sha256" prefix.
func parseFingerprint(s string) ([]byte, error) {
	h := strings.TrimSpace(s)
	if i := strings.IndexAny(h, "=/"); i >= 0 && strings.EqualFold(h[:i], "sha256") {
		h = h[i+1:]
	}
	h = strings.NewReplacer(":", "", " ", "").Replace(h)
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("--fingerprint %q is not a SHA-256 fingerprint (32 bytes as AA:BB:... or 64 hex digits; `pvenode cert info` shows it)", s)
	}
	return b, nil
}

func colonHex(b []byte) string {
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = fmt.Sprintf("%02X", c)
	}
	return strings.Join(parts, ":")
}

// explainTransportError turns a failed request into one line and the
// hints for its cause: DNS, refused, TLS, timeout. setting names where the
// URL came from, which is what the operator has to correct.
func explainTransportError(err error, u *url.URL, which, setting string, t *tlsCheck, timeout time.Duration) (string, []string) {
	daemon := "pveproxy"
	if which == "rust" {
		daemon = "the Rust daemon"
	}
	pinHint := ""
	if seen := t.presented(); seen != nil {
		pinHint = fmt.Sprintf(" (the server presented %s; compare with `pvenode cert info` on the node)", colonHex(seen))
	}
	var (
		dnsErr  *net.DNSError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
		fpErr   *errFingerprint
		recErr  tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &dnsErr):
		return fmt.Sprintf("cannot resolve host %q: %s", u.Hostname(), dnsErr.Err),
			[]string{"check the host name in " + setting + "; on the node itself the local API is https://127.0.0.1:8006"}
	case errors.Is(err, syscall.ECONNREFUSED):
		hint := fmt.Sprintf("is pveproxy running (systemctl status pveproxy)? is the port right (8006)? check %s", setting)
		if which == "rust" {
			hint = fmt.Sprintf("is the Rust daemon running and listening on %s? check %s", u.Host, setting)
		}
		return fmt.Sprintf("connection refused: nothing listens on %s", u.Host), []string{hint}
	case errors.As(err, &fpErr):
		return fpErr.Error(), []string{"the node's certificate changed or the URL points at another host: check `pvenode cert info` on the node and update --fingerprint"}
	case errors.As(err, &unknown):
		return "TLS: certificate signed by an unknown authority",
			[]string{"trust the cluster CA: --ca " + pveRootCA + ", or pin the certificate: --fingerprint SHA256" + pinHint}
	case errors.As(err, &host):
		return "TLS: " + host.Error(),
			[]string{"use a host name the certificate names (pveproxy's certificate covers the node name, its IPs and 127.0.0.1), or pin it with --fingerprint" + pinHint}
	case errors.As(err, &invalid):
		return "TLS: " + invalid.Error(),
			[]string{"renew the certificate (pvecm updatecerts --force on the node), or pin it with --fingerprint" + pinHint}
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return "TLS: the server speaks plain HTTP on " + u.Host, []string{"use http:// in the URL, or check that the port is the TLS one"}
	case errors.As(err, &recErr), strings.Contains(err.Error(), "tls:"):
		return "TLS handshake failed: " + rootMessage(err), []string{"check the URL's scheme and port (pveproxy serves HTTPS on 8006)"}
	case isTimeout(err):
		return fmt.Sprintf("no answer within %s", timeout),
			[]string{fmt.Sprintf("is %s overloaded or a firewall dropping packets to %s? raise --timeout to wait longer", daemon, u.Host)}
	}
	return rootMessage(err), []string{"check " + setting}
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// rootMessage strips the net/http wrapping ("Get "https://...": ") that
// repeats the URL the line already names.
func rootMessage(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// explainHTTPError explains a non-200 answer. PVE puts the reason in the
// status line (and, for json since pve-http-server 5.2.0, in "message").
func explainHTTPError(resp *http.Response, body []byte, which string, token config.Secret) (string, []string) {
	var env struct {
		Message string `json:"message"`
	}
	_ = json.Unmarshal(body, &env)
	reason := strings.TrimSpace(env.Message)
	if reason == "" {
		reason = strings.TrimSpace(strings.TrimPrefix(resp.Status, fmt.Sprint(resp.StatusCode)))
	}
	msg := fmt.Sprintf("HTTP %d", resp.StatusCode)
	if reason != "" {
		msg += ": " + reason
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		if token == "" {
			return msg + " (no token was sent)", []string{"set " + config.EnvPerlAPIToken + "=USER@REALM!TOKENID=SECRET or pass --token-file FILE"}
		}
		return msg, []string{
			fmt.Sprintf("the API rejected token %s: check that it exists and has not expired (pveum user token list %s)", token.ID(), strings.SplitN(token.ID(), "!", 2)[0]),
			"the token is USER@REALM!TOKENID=SECRET and is sent as the header \"Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET\"; the secret is the UUID shown once at creation",
		}
	case http.StatusForbidden:
		id := token.ID()
		if id == "" {
			id = "USER@REALM!TOKENID"
		}
		return msg, []string{
			"the version call needs no privilege beyond a valid token, so a proxy or pveproxy's ALLOW_FROM/DENY_FROM (/etc/default/pveproxy) may be refusing this client",
			"the router's own network reads need Sys.Audit on /nodes/{node}; with privilege separation the token needs its own ACL: pveum acl modify /nodes --tokens '" + id + "' --roles PVEAuditor",
		}
	case http.StatusMovedPermanently, http.StatusFound, http.StatusPermanentRedirect, http.StatusTemporaryRedirect:
		return fmt.Sprintf("HTTP %d: redirected to %s", resp.StatusCode, resp.Header.Get("Location")),
			[]string{"use the redirect's target as the URL (pveproxy only serves https)"}
	case http.StatusNotImplemented:
		if which == "rust" {
			return msg, []string{"the Rust daemon does not implement /api2/json/version; its network endpoints may still work (check with explain and status)"}
		}
	}
	if resp.StatusCode >= 500 {
		if which == "rust" {
			return msg, []string{"the Rust daemon is up but failing: check its log"}
		}
		return msg, []string{"pveproxy is up but failing: check its journal (journalctl -u pveproxy -u pvedaemon)"}
	}
	return msg, nil
}
