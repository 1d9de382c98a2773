package server

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"io"
	"strings"
)

// extjsDecodeLimit bounds what a compressed extjs answer may inflate to
// before the stage gives up judging it (the answer then stands). An extjs
// failure is a few hundred bytes; the bound keeps a compressed answer of
// a few KiB from costing the stage megabytes.
const extjsDecodeLimit = 1 << 20

// extjsEncoding classifies a Content-Encoding for the upstream stage:
// whether the stage can read a body in it. The web UI, the one client of
// the extjs format, always sends Accept-Encoding (gzip, deflate, br), the
// data plane and Envoy pass it on, and a backend may compress its
// answers: a compressed failure judged as it came looked like no JSON at
// all and reached the browser instead of perl's answer.
func extjsEncoding(v string) (enc string, readable bool) {
	enc = strings.ToLower(strings.TrimSpace(v))
	switch enc {
	case "", "identity":
		return "", true
	case "gzip", "x-gzip", "deflate":
		return enc, true
	}
	return enc, false // br, zstd, a list of codings: not judged
}

// decodeExtjsBody undoes enc (as extjsEncoding returned it). ok is false
// when the body does not decode or inflates past extjsDecodeLimit.
func decodeExtjsBody(enc string, body []byte) (out []byte, ok bool) {
	var r io.Reader
	switch enc {
	case "":
		return body, true
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, false
		}
		r = zr
	case "deflate":
		// HTTP's deflate is zlib-wrapped (RFC 9110 §8.4.1.2); some servers
		// send raw DEFLATE under the same name.
		if zr, err := zlib.NewReader(bytes.NewReader(body)); err == nil {
			r = zr
		} else {
			r = flate.NewReader(bytes.NewReader(body))
		}
	default:
		return nil, false
	}
	out, err := io.ReadAll(io.LimitReader(r, extjsDecodeLimit+1))
	if err != nil || len(out) > extjsDecodeLimit {
		return nil, false
	}
	return out, true
}
