package dataplane

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/pve-migration/router/examples/pvedemo"
)

// gzipRecorder buffers an answer so that gzipAnswers can compress it.
type gzipRecorder struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (g *gzipRecorder) Header() http.Header         { return g.h }
func (g *gzipRecorder) WriteHeader(status int)      { g.status = status }
func (g *gzipRecorder) Write(p []byte) (int, error) { return g.body.Write(p) }

// gzipAnswers compresses every answer whose request accepts gzip, as a
// backend with response compression does.
func gzipAnswers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			next.ServeHTTP(w, r)
			return
		}
		rec := &gzipRecorder{h: http.Header{}, status: 200}
		next.ServeHTTP(rec, r)
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		_, _ = zw.Write(rec.body.Bytes())
		_ = zw.Close()
		for k, v := range rec.h {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
		w.WriteHeader(rec.status)
		_, _ = w.Write(b.Bytes())
	})
}

// TestExtjsFallbackCompressed: the web UI sends Accept-Encoding: gzip with
// every request; when rust compresses its failed extjs answer (HTTP 200,
// success 0, status 500, no x-pve-fallback), the upstream stage must still
// see the failure and the GET must end on perl, over gRPC and over the
// in-process link.
func TestExtjsFallbackCompressed(t *testing.T) {
	for _, inProcess := range []bool{false, true} {
		t.Run("in-process "+strconv.FormatBool(inProcess), func(t *testing.T) {
			e := newEnv(t, envOptions{phase: "rust-read-only", inProcess: inProcess, rustFaults: pvedemo.Faults{ErrorRate: 1},
				rustNoFallbackHeader: true, rustMiddleware: gzipAnswers})
			r := e.do("GET", extjsNet, nil, map[string]string{"Accept-Encoding": "gzip, deflate, br"})
			if r.status != 200 || r.servedBy != "perl" || r.attempts != "2" {
				t.Fatalf("GET %s: %d served by %q after %s attempts", extjsNet, r.status, r.servedBy, r.attempts)
			}
			if n := seen(e.rust, "GET", extjsNet); n != 1 {
				t.Errorf("rust saw the GET %d times, want 1", n)
			}
			// A compressed success stays rust's.
			if err := e.rust.SetFaults(pvedemo.Faults{}); err != nil {
				t.Fatal(err)
			}
			r = e.do("GET", extjsNet, nil, map[string]string{"Accept-Encoding": "gzip"})
			if r.status != 200 || r.servedBy != "rust" || r.attempts != "1" || r.header.Get("Content-Encoding") != "gzip" {
				t.Errorf("compressed success: %d served by %q after %s attempts, encoding %q", r.status, r.servedBy, r.attempts, r.header.Get("Content-Encoding"))
			}
		})
	}
}
