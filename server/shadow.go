package server

import (
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/trace"

	"github.com/pve-migration/router/internal/shadow"
	"github.com/pve-migration/router/routing"
)

// Shadower is the shadow comparison as the Processor feeds it
// (*shadow.Worker). The Processor only reports what it sees: which GETs
// were sampled and served with 200, and which writes are under way. All
// methods must return at once: they run on the request path.
type Shadower interface {
	// Sample decides at request headers whether a GET of the category for
	// the node ("" for cluster paths) is shadowed; only then are the
	// caller's credentials kept.
	Sample(c routing.Category, node string) bool
	// Submit hands over a sampled GET answered 200; it never blocks.
	Submit(j shadow.Job)
	// WriteStarted and WriteDone bracket a write to a node ("" for the
	// cluster), so that comparisons overlapping it are skipped unless the
	// backend refused it (status 401 or 403; 0 when the stream ended
	// without an answer). WriteStarted returns the id WriteDone takes.
	WriteStarted(node string) uint64
	WriteDone(node string, id uint64, status int)
}

var _ Shadower = (*shadow.Worker)(nil)

// HTTPClient returns the client the router uses for the PVE API, for other
// parts of the program that talk to the backends (the shadow worker).
func (o TLSOptions) HTTPClient() (*http.Client, error) { return o.httpClient() }

// shadowState is a stream's part in the shadow comparison.
type shadowState struct {
	// sampled: a GET picked for comparison. auth and cookie point into
	// the request headers message until the decision; for a sampled GET
	// the credentials are then copied into authorization and cookieValue,
	// which live until the job is handed over.
	sampled                    bool
	auth, cookie               []byte
	authorization, cookieValue string
	write                      bool   // a write was announced with WriteStarted
	writeNode                  string // its node
	writeID                    uint64 // and its id
}

// shadowHeader keeps a reference to a credential header (no copy: most
// requests are not sampled); the first of repeated headers counts.
func (s *stream) shadowHeader(key string, v []byte) {
	switch {
	case key == "authorization" && s.sh.auth == nil:
		s.sh.auth = v
	case key == "cookie" && s.sh.cookie == nil:
		s.sh.cookie = v
	}
}

// shadowDecided runs after the decision: a GET is sampled or not, a write
// in a network category is announced.
func (s *stream) shadowDecided() {
	sh := s.p.shadow
	if sh == nil {
		return
	}
	c := s.dec.Decision.Category
	if s.dec.Method == "GET" {
		// The kill switch is the rollback of a node that cannot write the
		// config (no quorum), so cannot turn [compare] off either: while
		// it is on, rust gets nothing, shadow GETs with the caller's
		// credentials included.
		s.sh.sampled = c != routing.NotNetwork && s.dec.Decision.Reason != routing.ReasonKillSwitch &&
			sh.Sample(c, pathNode(s.dec.Path))
		if s.sh.sampled {
			s.sh.authorization, s.sh.cookieValue = string(s.sh.auth), string(s.sh.cookie)
		}
	}
	s.sh.auth, s.sh.cookie = nil, nil
	if s.dec.Method == "GET" {
		return
	}
	if c == routing.NotNetwork || s.dec.Method == "HEAD" || s.dec.Method == "OPTIONS" {
		return
	}
	s.sh.write, s.sh.writeNode = true, pathNode(s.dec.Path)
	s.sh.writeID = sh.WriteStarted(s.sh.writeNode)
}

// shadowFinished runs at the response headers (or when the stream ends
// without them): a sampled GET answered 200 by a backend becomes a job;
// an announced write is over.
func (s *stream) shadowFinished(status int, servedBy string) {
	sh := s.p.shadow
	if sh == nil {
		return
	}
	if s.sh.write {
		s.sh.write = false
		sh.WriteDone(s.sh.writeNode, s.sh.writeID, status)
	}
	if !s.sh.sampled || status != http.StatusOK || servedBy == "" {
		s.sh.sampled, s.sh.authorization, s.sh.cookieValue = false, "", ""
		return
	}
	s.sh.sampled = false
	sh.Submit(shadow.Job{
		Category:      s.dec.Decision.Category,
		Template:      s.dec.Decision.Template,
		Path:          s.dec.Path,
		RawQuery:      s.rawQuery,
		ServedBy:      servedBy,
		Node:          pathNode(s.dec.Path),
		Authorization: s.sh.authorization,
		Cookie:        s.sh.cookieValue,
		Trace:         trace.SpanContextFromContext(s.obsCtx),
	})
	s.sh.authorization, s.sh.cookieValue = "", ""
}

// pathNode is the {node} of a normalised /api2/<format>/nodes/{node}/...
// path, "" for other paths (cluster-wide).
func pathNode(clean string) string {
	rest, ok := strings.CutPrefix(clean, "/api2/")
	if !ok {
		return ""
	}
	seg := strings.SplitN(rest, "/", 4)
	if len(seg) < 3 || seg[1] != "nodes" {
		return ""
	}
	return seg[2]
}
