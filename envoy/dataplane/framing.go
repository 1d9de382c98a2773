package dataplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"strconv"
	"strings"
)

// Envoy answers 400 to a request that carries both Content-Length and
// Transfer-Encoding (http1 codec; unless allow_chunked_length). Go's HTTP/1
// server accepts it: it drops the length, reads the chunked body and
// deletes Content-Length from the header map, so no handler can tell. The
// framing listener closes that gap where the bytes are still visible: it
// follows each connection's request framing (heads, Content-Length bodies,
// chunked bodies) and, in the head of such a request, replaces the
// Content-Length value with one net/http refuses, so the server itself
// answers 400 and closes the connection, after the answers to any earlier
// pipelined requests, as Envoy does. Bytes are never changed anywhere else:
// wherever the framing is not certain (an upgrade, HTTP/1.0, a malformed
// chunk, an oversized head) it stops looking and passes the rest through,
// which is net/http's own, re-framing behaviour.

// framingListener wraps accepted connections in framingConn.
type framingListener struct{ net.Listener }

func (l framingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &framingConn{Conn: c}, nil
}

// tlsConnKey is the context key under which Serve's ConnContext keeps the
// *tls.Conn inside a framingConn: net/http fills Request.TLS only for a
// connection that is a *tls.Conn itself.
type tlsConnKey struct{}

// connContext stores the TLS connection of c, if any, in ctx.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if fc, ok := c.(*framingConn); ok {
		if tc, ok := fc.Conn.(*tls.Conn); ok {
			return context.WithValue(ctx, tlsConnKey{}, tc)
		}
	}
	return ctx
}

// tlsState returns the TLS state of the request's connection, or nil.
func tlsState(ctx context.Context) *tls.ConnectionState {
	tc, ok := ctx.Value(tlsConnKey{}).(*tls.Conn)
	if !ok {
		return nil
	}
	st := tc.ConnectionState()
	return &st
}

type framingState uint8

const (
	fsHead        framingState = iota // collecting a request head
	fsBody                            // remaining bytes of a Content-Length body
	fsChunkSize                       // a chunk-size line
	fsChunkData                       // chunk data plus its CRLF
	fsTrailer                         // trailer lines after the last chunk
	fsPassThrough                     // no longer looking
)

// maxFramingHead is more than any head net/http accepts (Serve's limit is
// 16 KiB); a longer one is passed on for net/http to refuse.
const maxFramingHead = 64 << 10

// framingConn is a connection whose read side is followed as HTTP/1.1
// request framing. It is only ever read by one goroutine at a time
// (net/http's connection reader), so it needs no lock.
type framingConn struct {
	net.Conn
	state  framingState
	line   []byte // the head, chunk-size or trailer line being collected
	remain int64  // fsBody, fsChunkData
	out    []byte // bytes ready for the reader
	buf    [16 << 10]byte
}

func (c *framingConn) Read(p []byte) (int, error) {
	for len(c.out) == 0 {
		n, err := c.Conn.Read(c.buf[:])
		c.feed(c.buf[:n])
		if err != nil {
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				// The connection is done: a head cut off by it is
				// handed on as it is.
				c.out = append(c.out, c.line...)
				c.line = nil
			}
			if len(c.out) == 0 {
				// Errors are not kept: net/http interrupts reads with
				// a past deadline and then reads on.
				return 0, err
			}
		}
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	if len(c.out) == 0 {
		c.out = nil
	}
	return n, nil
}

// feed runs b through the framing state machine into c.out.
func (c *framingConn) feed(b []byte) {
	for len(b) > 0 {
		switch c.state {
		case fsPassThrough:
			c.out = append(c.out, b...)
			return
		case fsBody, fsChunkData:
			n := min(int64(len(b)), c.remain)
			c.out = append(c.out, b[:n]...)
			b = b[n:]
			c.remain -= n
			if c.remain == 0 {
				if c.state == fsBody {
					c.state = fsHead
				} else {
					c.state = fsChunkSize
				}
			}
		case fsHead:
			c.line = append(c.line, b...)
			b = nil
			end := headEnd(c.line)
			if end < 0 {
				if len(c.line) > maxFramingHead {
					c.passThrough()
				}
				continue
			}
			head, rest := c.line[:end], c.line[end:]
			c.line = nil
			c.out = append(c.out, c.head(head)...)
			b = rest
		case fsChunkSize, fsTrailer:
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				c.line = append(c.line, b...)
				b = nil
				if len(c.line) > 4096 {
					c.passThrough()
				}
				continue
			}
			c.line = append(c.line, b[:i+1]...)
			b = b[i+1:]
			line := c.line
			c.line = nil
			c.out = append(c.out, line...)
			text := strings.TrimRight(string(line), "\r\n")
			if c.state == fsTrailer {
				if text == "" {
					c.state = fsHead
				}
				continue
			}
			size, _, _ := strings.Cut(text, ";")
			n, err := strconv.ParseInt(strings.TrimSpace(size), 16, 64)
			switch {
			case err != nil || n < 0:
				c.state = fsPassThrough
			case n == 0:
				c.state = fsTrailer
			default:
				c.state, c.remain = fsChunkData, n+2 // data and its CRLF
			}
		}
	}
}

func (c *framingConn) passThrough() {
	c.out = append(c.out, c.line...)
	c.line = nil
	c.state = fsPassThrough
}

// headEnd returns the length of the head at the start of b (up to and
// including the blank line), or -1 if it is not complete. Blank lines
// before the request line belong to the head, as net/http skips them.
func headEnd(b []byte) int {
	start := 0
	for start < len(b) && (b[start] == '\r' || b[start] == '\n') {
		start++
	}
	if i := bytes.Index(b[start:], []byte("\r\n\r\n")); i >= 0 {
		if j := bytes.Index(b[start:], []byte("\n\n")); j >= 0 && j < i {
			return start + j + 2
		}
		return start + i + 4
	}
	if j := bytes.Index(b[start:], []byte("\n\n")); j >= 0 {
		return start + j + 2
	}
	return -1
}

// head decides what follows a complete request head and returns the head
// to hand on: as it came, or with Content-Length made invalid when
// Transfer-Encoding is there too.
func (c *framingConn) head(head []byte) []byte {
	lines := strings.Split(strings.TrimLeft(string(head), "\r\n"), "\n")
	reqLine := strings.TrimRight(lines[0], "\r")
	if !strings.HasSuffix(reqLine, " HTTP/1.1") {
		c.state = fsPassThrough // HTTP/1.0 ignores Transfer-Encoding; anything else is refused
		return head
	}
	var cl []int
	var te []string
	upgrade := false
	for i, l := range lines[1:] {
		name, value, ok := strings.Cut(strings.TrimRight(l, "\r"), ":")
		if !ok {
			continue
		}
		switch strings.ToLower(name) {
		case "content-length":
			cl = append(cl, i+1)
		case "transfer-encoding":
			te = append(te, strings.TrimSpace(value))
		case "upgrade":
			upgrade = true
		}
	}
	switch {
	case len(cl) > 0 && len(te) > 0:
		for _, i := range cl {
			lines[i] = "Content-Length: refused-with-transfer-encoding\r"
		}
		c.state = fsPassThrough // net/http answers 400 and closes
		return []byte(strings.Join(lines, "\n"))
	case upgrade:
		c.state = fsPassThrough // after a 101 the bytes are not HTTP
	case len(te) == 1 && strings.EqualFold(te[0], "chunked"):
		c.state = fsChunkSize
	case len(te) > 0:
		c.state = fsPassThrough // net/http refuses it
	case len(cl) > 0:
		n, err := strconv.ParseInt(strings.TrimSpace(strings.SplitN(strings.TrimRight(lines[cl[0]], "\r"), ":", 2)[1]), 10, 64)
		if err != nil || n < 0 || len(cl) > 1 {
			c.state = fsPassThrough
		} else if n > 0 {
			c.state, c.remain = fsBody, n
		} else {
			c.state = fsHead
		}
	default:
		c.state = fsHead
	}
	return head
}
