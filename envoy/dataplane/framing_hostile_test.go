package dataplane_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pve-migration/router/envoy/dataplane"
)

// pipeline writes reqs on one connection (TLS if tlsOn) and reads as many
// responses as come, in order.
func pipeline(t *testing.T, addr string, tlsOn bool, reqs ...string) []int {
	t.Helper()
	var conn net.Conn
	var err error
	if tlsOn {
		conn, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	} else {
		conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, strings.Join(reqs, "")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	var codes []int
	for range reqs {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
	return codes
}

// TestContentLengthWithTransferEncoding is finding 4 of issue 13: Envoy
// answers 400 to a request with both Content-Length and Transfer-Encoding;
// the data plane used to drop the length and serve it. Now it answers 400
// too, over plain HTTP and TLS, after the answers to earlier pipelined
// requests, and request framing is followed exactly: bodies that look like
// heads are never touched, and keep-alive requests after chunked and
// Content-Length bodies are served.
func TestContentLengthWithTransferEncoding(t *testing.T) {
	const (
		get     = "GET /api2/json/nodes/pve1/network HTTP/1.1\r\nHost: x\r\n\r\n"
		both    = "PUT /api2/json/nodes/pve1/network/eno1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n13\r\ntype=eth&comments=x\r\n0\r\n\r\n"
		bothLow = "PUT /api2/json/nodes/pve1/network/eno1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\ntransfer-encoding: chunked\r\ncontent-length: 19\r\n\r\n13\r\ntype=eth&comments=x\r\n0\r\n\r\n"
		// A Content-Length body whose bytes look like a head with both.
		lookalike = "POST /api2/json/access/lookalike HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 63\r\n\r\nX / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
		chunked   = "PUT /api2/json/nodes/pve1/network/eno1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ntype=eth&\r\nb;ext=1\r\ncomments=ab\r\n0\r\nX-Trailer: 1\r\n\r\n"
	)
	if n := len("X / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"); n != 63 {
		t.Fatalf("lookalike body is %d bytes", n)
	}
	for _, tlsOn := range []bool{false, true} {
		name := "plain"
		so := dataplane.ServeOptions{}
		if tlsOn {
			name, so.SelfSigned = "tls", true
		}
		t.Run(name, func(t *testing.T) {
			e := newHostileEnv(t, "rust-basic-write", so)
			cases := []struct {
				name string
				reqs []string
				want []int
			}{
				{"both", []string{both}, []int{400}},
				{"both in lower case", []string{bothLow}, []int{400}},
				{"after a pipelined read", []string{get, both, get}, []int{200, 400}},
				{"a body that looks like a head", []string{lookalike, get}, []int{0, 200}},
				{"keep-alive after a chunked body", []string{chunked, get, get}, []int{200, 200, 200}},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					got := pipeline(t, e.addr, tlsOn, c.reqs...)
					if len(got) != len(c.want) {
						t.Fatalf("responses %v, want %v", got, c.want)
					}
					for i, w := range c.want {
						if w != 0 && got[i] != w {
							t.Errorf("response %d: %d, want %d (all: %v)", i, got[i], w, got)
						}
						if w == 0 && got[i] == 400 {
							t.Errorf("response %d: 400 for a body that only looks like a head", i)
						}
					}
				})
			}
			if n := seenPath(e.perl, "/api2/json/access/lookalike"); n != 1 {
				t.Errorf("perl saw the look-alike body's request %d times, want 1", n)
			}
		})
	}
}
