package dataplane

import (
	"io"
	"net"
	"strings"
	"testing"
)

// TestFramingConnSplitReads: however the bytes arrive (here one byte per
// read, and all at once), the framing connection hands on exactly what
// came, except the Content-Length of a head that also has
// Transfer-Encoding, and nothing after that head is interpreted.
func TestFramingConnSplitReads(t *testing.T) {
	const (
		get     = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
		withCL  = "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 39\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 1\r\n\r\n\r\n"
		chunked = "PUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nabcd\r\n0\r\nT: 1\r\n\r\n"
		both    = "PUT /d HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
		after   = "GET /e HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
		upgrade = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
	)
	if len("GET / HTTP/1.1\r\nContent-Length: 1\r\n\r\n\r\n") != 39 {
		t.Fatal("withCL body length")
	}
	bothOut := strings.Replace(both, "Content-Length: 4", "Content-Length: refused-with-transfer-encoding", 1)
	cases := []struct{ name, in, want string }{
		{"keep-alive", get + withCL + chunked + get, get + withCL + chunked + get},
		{"both", get + both + after, get + bothOut + after},
		{"after an upgrade", upgrade + after, upgrade + after},
		{"HTTP/1.0", strings.Replace(after, "HTTP/1.1", "HTTP/1.0", 1), strings.Replace(after, "HTTP/1.1", "HTTP/1.0", 1)},
		{"cut-off head", "GET /x HTTP/1.1\r\nHost:", "GET /x HTTP/1.1\r\nHost:"},
		{"bare LF lines", "PUT /f HTTP/1.1\nContent-Length: 2\n\nab" + both, "PUT /f HTTP/1.1\nContent-Length: 2\n\nab" + bothOut},
		{"blank lines before a head", "\r\n\r\n" + both, "\r\n\r\n" + bothOut},
	}
	for _, c := range cases {
		for _, oneByte := range []bool{true, false} {
			name := c.name + "/whole"
			if oneByte {
				name = c.name + "/byte by byte"
			}
			t.Run(name, func(t *testing.T) {
				a, b := net.Pipe()
				go func() {
					if oneByte {
						for i := range len(c.in) {
							_, _ = b.Write([]byte{c.in[i]})
						}
					} else {
						_, _ = b.Write([]byte(c.in))
					}
					_ = b.Close()
				}()
				got, err := io.ReadAll(&framingConn{Conn: a})
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != c.want {
					t.Errorf("got  %q\nwant %q", got, c.want)
				}
			})
		}
	}
}

// loopConn is a net.Conn whose reads return data over and over.
type loopConn struct {
	net.Conn
	data []byte
	off  int
}

func (c *loopConn) Read(p []byte) (int, error) {
	n := copy(p, c.data[c.off:])
	c.off = (c.off + n) % len(c.data)
	return n, nil
}

// BenchmarkFramingConn: the cost of following request framing, against
// reading the same bytes from the bare connection (the baseline), for
// keep-alive GETs and chunked PUTs.
func BenchmarkFramingConn(b *testing.B) {
	get := "GET /api2/json/nodes/pve1/network HTTP/1.1\r\nHost: pve1:8006\r\nAuthorization: PVEAPIToken=root@pam!t=00000000-0000-0000-0000-000000000000\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
	put := "PUT /api2/json/nodes/pve1/network/eno1 HTTP/1.1\r\nHost: pve1\r\nTransfer-Encoding: chunked\r\n\r\n1c\r\ntype=eth&comments=benchmark1\r\n0\r\n\r\n"
	for _, w := range []struct{ name, req string }{{"get", get}, {"chunked-put", put}} {
		data := []byte(strings.Repeat(w.req, 64))
		buf := make([]byte, 4096)
		for _, framed := range []bool{false, true} {
			name := w.name + "/bare"
			if framed {
				name = w.name + "/framing"
			}
			b.Run(name, func(b *testing.B) {
				var c net.Conn = &loopConn{data: data}
				if framed {
					c = &framingConn{Conn: c}
				}
				b.SetBytes(int64(len(data)))
				for b.Loop() {
					for n := 0; n < len(data); {
						m, _ := c.Read(buf)
						n += m
					}
				}
			})
		}
	}
}
