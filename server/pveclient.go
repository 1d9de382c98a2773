package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// TLSOptions says how the router verifies the PVE API's certificate.
// pveproxy's default certificate is signed by the cluster's own CA
// (/etc/pve/pve-root-ca.pem), which is not in the system pool, so an
// operator normally sets CAFile rather than turning verification off.
type TLSOptions struct {
	// CAFile is a PEM bundle of CAs trusted in addition to nothing else:
	// when set, the system pool is not used.
	CAFile string
	// RootCAs, when non-nil, is used instead of CAFile (tests, embedders).
	RootCAs *x509.CertPool
	// InsecureSkipVerify turns certificate verification off. Only for
	// labs: it lets anyone on the path read the API token.
	InsecureSkipVerify bool
}

// httpClient builds the client for the PVE API and the Rust daemon.
// Timeouts come from each request's context; the transport only bounds
// the connection setup so a dead host fails fast.
func (o TLSOptions) httpClient() (*http.Client, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.InsecureSkipVerify} //nolint:gosec // operator's explicit choice
	switch {
	case o.RootCAs != nil:
		cfg.RootCAs = o.RootCAs
	case o.CAFile != "":
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate found", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	tr := &http.Transport{
		Proxy:                 nil, // the PVE API is local; never send the token to a proxy
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       cfg,
		TLSHandshakeTimeout:   2 * time.Second,
		MaxIdleConns:          32,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{
		Transport: tr,
		// A redirect could carry the Authorization header elsewhere
		// (Go drops it only across hosts); PVE never redirects the API.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// displayURL is a base URL safe to show: no user info, no query.
func displayURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// apiURL joins a base URL and an /api2/json path.
func apiURL(base, path string) string {
	return strings.TrimRight(base, "/") + path
}
