package dataplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
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
	out    []byte // bytes for the reader: out[outOff:] are still to go
	outOff int
	buf    [16 << 10]byte
}

func (c *framingConn) Read(p []byte) (int, error) {
	for c.outOff == len(c.out) {
		c.out, c.outOff = c.out[:0], 0 // keep the buffer
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
	n := copy(p, c.out[c.outOff:])
	c.outOff += n
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
			if len(c.line) == 0 {
				// The common case: the whole head is in b; no copy.
				if end := headEnd(b); end >= 0 {
					c.out = append(c.out, c.head(b[:end])...)
					b = b[end:]
					continue
				}
			}
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
			line := b[:i+1]
			if len(c.line) > 0 {
				line = append(c.line, line...)
				c.line = nil
			}
			b = b[i+1:]
			c.out = append(c.out, line...)
			text := bytes.TrimRight(line, "\r\n")
			if c.state == fsTrailer {
				if len(text) == 0 {
					c.state = fsHead
				}
				continue
			}
			if k := bytes.IndexByte(text, ';'); k >= 0 {
				text = text[:k]
			}
			n, ok := parseHex(bytes.TrimSpace(text))
			switch {
			case !ok:
				c.state = fsPassThrough
			case n == 0:
				c.state = fsTrailer
			default:
				c.state, c.remain = fsChunkData, n+2 // data and its CRLF
			}
		}
	}
}

// parseHex parses a chunk size.
func parseHex(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var n int64
	for _, d := range b {
		switch {
		case d >= '0' && d <= '9':
			n = n<<4 | int64(d-'0')
		case d >= 'a' && d <= 'f':
			n = n<<4 | int64(d-'a'+10)
		case d >= 'A' && d <= 'F':
			n = n<<4 | int64(d-'A'+10)
		default:
			return 0, false
		}
	}
	return n, true
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
	// The head ends at the first empty line: a '\n' followed by '\n' or
	// "\r\n". Only the head itself is scanned.
	for k := start; k < len(b); {
		i := bytes.IndexByte(b[k:], '\n')
		if i < 0 {
			return -1
		}
		k += i + 1
		switch {
		case k < len(b) && b[k] == '\n':
			return k + 1
		case k+1 < len(b) && b[k] == '\r' && b[k+1] == '\n':
			return k + 2
		case k >= len(b) || (k+1 >= len(b) && b[k] == '\r'):
			return -1 // the blank line may still be coming
		}
	}
	return -1
}

// head decides what follows a complete request head and returns the head
// to hand on: as it came, or with Content-Length made invalid when
// Transfer-Encoding is there too. It does not allocate on the common path.
func (c *framingConn) head(head []byte) []byte {
	rest := bytes.TrimLeft(head, "\r\n")
	i := bytes.IndexByte(rest, '\n')
	if i < 0 || !bytes.HasSuffix(bytes.TrimRight(rest[:i], "\r"), []byte(" HTTP/1.1")) {
		c.state = fsPassThrough // HTTP/1.0 ignores Transfer-Encoding; anything else is refused
		return head
	}
	rest = rest[i+1:]
	var nCL, nTE int
	var clValue []byte
	chunked, upgrade := false, false
	for len(rest) > 0 {
		j := bytes.IndexByte(rest, '\n')
		if j < 0 {
			break
		}
		line := bytes.TrimRight(rest[:j], "\r")
		rest = rest[j+1:]
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			continue
		}
		name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case bytes.EqualFold(name, []byte("content-length")):
			nCL++
			clValue = value
		case bytes.EqualFold(name, []byte("transfer-encoding")):
			nTE++
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("upgrade")):
			upgrade = true
		}
	}
	switch {
	case nCL > 0 && nTE > 0:
		c.state = fsPassThrough // net/http answers 400 and closes
		return refuseLength(head)
	case upgrade:
		c.state = fsPassThrough // after a 101 the bytes are not HTTP
	case nTE == 1 && chunked:
		c.state = fsChunkSize
	case nTE > 0:
		c.state = fsPassThrough // net/http refuses it
	case nCL == 1:
		n, ok := parseLength(clValue)
		switch {
		case !ok:
			c.state = fsPassThrough
		case n > 0:
			c.state, c.remain = fsBody, n
		default:
			c.state = fsHead
		}
	case nCL > 1:
		c.state = fsPassThrough // net/http decides (equal values pass)
	default:
		c.state = fsHead
	}
	return head
}

// refuseLength returns head with every Content-Length value replaced by
// one net/http refuses.
func refuseLength(head []byte) []byte {
	lines := strings.Split(string(head), "\n")
	for i, l := range lines {
		if name, _, ok := strings.Cut(l, ":"); ok && strings.EqualFold(name, "content-length") {
			lines[i] = "Content-Length: refused-with-transfer-encoding\r"
		}
	}
	return []byte(strings.Join(lines, "\n"))
}

// parseLength parses a Content-Length value: decimal digits only.
func parseLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, d := range b {
		if d < '0' || d > '9' {
			return 0, false
		}
		n = n*10 + int64(d-'0')
	}
	return n, true
}
