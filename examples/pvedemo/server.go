// Package pvedemo is a small stand-in for a Proxmox VE node's network API,
// playing either the Perl pveproxy ("perl") or the new Rust daemon ("rust")
// behind the migration router. Examples, docker compose and end-to-end tests
// use it where a real PVE node is not available.
//
// It imitates what the router and PVE clients can observe: the /api2/json and
// /api2/extjs formats with their error conventions, API tokens and tickets
// with CSRF, the staged interfaces/interfaces.new model with apply and revert,
// task UPIDs, a subset of SDN, and Perl's loose JSON typing. Two servers on
// one state directory share state through the files, so a write routed to
// rust is read back through perl. The rust flavour can answer chosen
// endpoints with 501 ("not implemented here"), and both can inject faults
// (errors, latency, crashes, refused connections) to exercise fallback.
//
// Every response carries x-pve-served-by, and /debug/* reports the applied
// writes and the requests each backend saw, so a test can tell which backend
// actually served what.
package pvedemo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Flavor is which side of the migration a demo backend plays.
type Flavor string

// The two flavours. They serve the same API on the same state; only the
// x-pve-served-by header and the --unimplemented list tell them apart.
const (
	FlavorPerl Flavor = "perl"
	FlavorRust Flavor = "rust"
)

// DefaultNode is the node name the demo answers for when Options.Node is empty.
const DefaultNode = "pve1"

// DefaultPassword is the ticket password when Options.Password is empty.
const DefaultPassword = "demo"

// maxRequestLog caps GET /debug/requests so a soak run cannot grow it forever.
const maxRequestLog = 10000

const serverHeader = "pve-api-daemon/3.0"

// ErrInvalidOptions marks errors New returns for options that can never
// work (as opposed to I/O failures), so the CLI can exit with a usage status.
var ErrInvalidOptions = errors.New("invalid options")

// ErrCrashed is returned by Serve after a simulated crash (Faults.CrashAfter).
var ErrCrashed = errors.New("simulated crash")

// Options configure a Server. Only Flavor and StateDir are required.
type Options struct {
	// Flavor is the side this backend plays; it is sent as x-pve-served-by.
	Flavor Flavor
	// StateDir holds interfaces, interfaces.new and sdn.json. Backends on the
	// same directory share state (flock plus atomic renames). Created if
	// missing and seeded with a small node config when empty.
	StateDir string
	// Node is the only node name the API answers for (DefaultNode if empty);
	// other names fail as an unknown cluster node does in PVE.
	Node string
	// Token is "USER@REALM!TOKENID=SECRET", the one API token accepted. Empty
	// disables authentication entirely; set, it also enables tickets.
	Token string
	// Password is what POST /access/ticket accepts for any user
	// (DefaultPassword if empty).
	Password string
	// Unimplemented lists "METHOD:TEMPLATE" entries (rust flavour only) that
	// answer 501 {"data":null,"message":"not implemented here"}, the signal
	// on which the router falls back to perl. TEMPLATE may carry the
	// /api2/json or /api2/extjs prefix.
	Unimplemented []string
	// NoFallbackHeader stops the rust flavour from marking its failed web
	// UI answers (extjs format, status ≥ 500, sent as HTTP 200) with
	// x-pve-fallback: STATUS, the header on which Envoy's route retries on
	// perl. Without the header only the router's upstream ext_proc stage,
	// which reads the body, can tell the failure. The perl flavour never
	// sets it (pveproxy does not).
	NoFallbackHeader bool
	// Faults is the initial fault injection; see SetFaults.
	Faults Faults
	// Seed makes ErrorRate decisions reproducible.
	Seed uint64
	// Logger receives one debug record per request (never credentials).
	// Nil discards.
	Logger *slog.Logger
}

// RequestRecord is one entry of GET /debug/requests: enough for a test to
// see which backend served a request it sent through the router.
type RequestRecord struct {
	Time      time.Time `json:"time"`
	Method    string    `json:"method"`
	Path      string    `json:"path"`
	Template  string    `json:"template,omitempty"`
	RequestID string    `json:"x-request-id,omitempty"`
	// Status is the HTTP status sent; 0 means the connection was dropped.
	Status int `json:"status"`
	// Shadow is true for the router's shadow comparison requests
	// (x-pve-shadow: 1), so a test can tell them from client traffic.
	Shadow bool `json:"shadow,omitempty"`
}

// Server is one demo backend. It is an http.Handler; Serve adds the
// listener control that crash and refuse faults need.
type Server struct {
	flavor        Flavor
	node          string
	store         *store
	auth          *authenticator
	routes        []*route
	unimplemented map[string]bool // "METHOD TEMPLATE"
	log           *slog.Logger
	debug         *http.ServeMux
	taskSeq       atomic.Uint32

	// markFallback: set x-pve-fallback on failed extjs answers.
	markFallback bool

	mu          sync.Mutex
	faults      Faults
	rng         *rand.Rand
	sinceFaults int64 // API requests admitted since the faults were last set
	applied     map[string]int64
	reqs        []RequestRecord // ring buffer
	reqNext     int

	crashOnce sync.Once
	crashed   chan struct{}

	lnMu      sync.Mutex
	serving   bool
	addr      net.Addr
	ln        net.Listener  // nil while refusing
	lnChanged chan struct{} // closed and replaced whenever ln changes
}

var nodeRe = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$`)

// New validates opts, prepares the state directory and returns a Server.
// All option errors are reported together, wrapped in ErrInvalidOptions.
func New(opts Options) (*Server, error) {
	var errs []error
	switch opts.Flavor {
	case FlavorPerl, FlavorRust:
	default:
		errs = append(errs, fmt.Errorf("flavor %q: want perl or rust", opts.Flavor))
	}
	if opts.StateDir == "" {
		errs = append(errs, errors.New("state dir is required"))
	}
	if opts.Node == "" {
		opts.Node = DefaultNode
	}
	if !nodeRe.MatchString(opts.Node) {
		errs = append(errs, fmt.Errorf("node %q: not a valid node name", opts.Node))
	}
	if opts.Password == "" {
		opts.Password = DefaultPassword
	}
	auth, err := newAuthenticator(opts.Token, opts.Password)
	if err != nil {
		errs = append(errs, err)
	}
	if err := opts.Faults.validate(); err != nil {
		errs = append(errs, err)
	}
	s := &Server{
		flavor:    opts.Flavor,
		node:      opts.Node,
		store:     &store{dir: opts.StateDir},
		auth:      auth,
		log:       opts.Logger,
		faults:    opts.Faults,
		rng:       rand.New(rand.NewPCG(opts.Seed, 0x5eed)),
		applied:   map[string]int64{},
		crashed:   make(chan struct{}),
		lnChanged: make(chan struct{}),
	}
	s.markFallback = opts.Flavor == FlavorRust && !opts.NoFallbackHeader

	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("flavor", string(opts.Flavor))
	s.routes = s.buildRoutes()
	s.unimplemented, err = s.parseUnimplemented(opts.Flavor, opts.Unimplemented)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, errors.Join(errs...))
	}
	if err := os.MkdirAll(opts.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	if err := s.seed(); err != nil {
		return nil, err
	}
	s.debug = s.debugMux()
	return s, nil
}

// seed writes the initial node config and an empty SDN config into an empty
// state directory. Under the locks, so two backends starting together on one
// directory seed it once.
func (s *Server) seed() error {
	ctx := context.Background()
	unlock, err := s.store.lock(ctx, fileNetworkLock, true)
	if err != nil {
		return err
	}
	_, _, haveRun, err := s.store.read(fileInterfaces)
	if err == nil && !haveRun {
		err = s.store.write(fileInterfaces, []byte(seedInterfaces))
	}
	unlock()
	if err != nil {
		return fmt.Errorf("seed %s: %w", fileInterfaces, err)
	}
	unlock, err = s.store.lock(ctx, fileSDNLock, true)
	if err != nil {
		return err
	}
	defer unlock()
	_, _, haveSDN, err := s.store.read(fileSDN)
	if err == nil && !haveSDN {
		st := &sdnState{}
		st.Pending.init()
		st.Running.init()
		err = s.saveSDN(st)
	}
	if err != nil {
		return fmt.Errorf("seed %s: %w", fileSDN, err)
	}
	return nil
}

// parseUnimplemented turns "METHOD:TEMPLATE" entries into route keys. Each
// entry must name a route the demo has, so a typo ({name} for {iface}) is
// caught at start-up instead of silently never matching.
func (s *Server) parseUnimplemented(flavor Flavor, entries []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(entries) == 0 {
		return out, nil
	}
	if flavor != FlavorRust {
		return nil, errors.New("unimplemented entries only apply to the rust flavour")
	}
	var errs []error
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		method, tmpl, ok := strings.Cut(e, ":")
		if !ok {
			errs = append(errs, fmt.Errorf("unimplemented entry %q: want METHOD:TEMPLATE", e))
			continue
		}
		method = strings.ToUpper(strings.TrimSpace(method))
		tmpl = strings.TrimSpace(tmpl)
		for _, prefix := range []string{"/api2/json", "/api2/extjs"} {
			if rest, found := strings.CutPrefix(tmpl, prefix); found && (rest == "" || rest[0] == '/') {
				tmpl = rest
			}
		}
		tmpl = "/" + strings.Join(splitPath(tmpl), "/")
		found := false
		var known []string
		for _, rt := range s.routes {
			if rt.method == method {
				known = append(known, rt.template)
				found = found || rt.template == tmpl
			}
		}
		switch {
		case len(known) == 0:
			errs = append(errs, fmt.Errorf("unimplemented entry %q: unknown method %q (want GET, POST, PUT or DELETE)", e, method))
		case !found:
			errs = append(errs, fmt.Errorf("unimplemented entry %q: no %s route %q (known: %s)", e, method, tmpl, strings.Join(known, ", ")))
		default:
			out[method+" "+tmpl] = true
		}
	}
	return out, errors.Join(errs...)
}

// Flavor returns the side this server plays.
func (s *Server) Flavor() Flavor { return s.flavor }

// Applied returns, per "METHOD TEMPLATE" (template without the /api2 prefix,
// e.g. "POST /nodes/{node}/network"), how many writes this server applied.
// A write counts only when it changed state, so tests can assert that a
// request was applied exactly once, and by which backend.
func (s *Server) Applied() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int64, len(s.applied))
	for k, v := range s.applied {
		out[k] = v
	}
	return out
}

// Requests returns the most recent requests (up to 10,000), oldest first.
func (s *Server) Requests() []RequestRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) < maxRequestLog {
		return append([]RequestRecord(nil), s.reqs...)
	}
	out := make([]RequestRecord, 0, len(s.reqs))
	out = append(out, s.reqs[s.reqNext:]...)
	return append(out, s.reqs[:s.reqNext]...)
}

func (s *Server) record(r *http.Request, tmpl string, status int, at time.Time) {
	rec := RequestRecord{Time: at, Method: r.Method, Path: r.URL.Path, Template: tmpl, RequestID: r.Header.Get("X-Request-Id"), Status: status, Shadow: r.Header.Get("X-Pve-Shadow") == "1"}
	s.mu.Lock()
	if len(s.reqs) < maxRequestLog {
		s.reqs = append(s.reqs, rec)
	} else {
		s.reqs[s.reqNext] = rec
		s.reqNext = (s.reqNext + 1) % maxRequestLog
	}
	s.mu.Unlock()
}

// Faults returns the current fault injection.
func (s *Server) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// SetFaults replaces the fault injection at run time and restarts the
// CrashAfter count. Switching Refuse on closes the listener before it
// returns (connections are refused from then on); switching it off listens
// again on the same address before it returns. A crash is final.
func (s *Server) SetFaults(f Faults) error {
	if err := f.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	s.faults = f
	s.sinceFaults = 0
	s.mu.Unlock()
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if !s.serving || s.isCrashed() {
		return nil
	}
	switch {
	case f.Refuse && s.ln != nil:
		_ = s.ln.Close()
		s.ln = nil
		s.notifyListenerLocked()
	case !f.Refuse && s.ln == nil:
		ln, err := net.Listen(s.addr.Network(), s.addr.String())
		if err != nil {
			return fmt.Errorf("listen again on %s: %w", s.addr, err)
		}
		s.ln = ln
		s.notifyListenerLocked()
	}
	return nil
}

func (s *Server) notifyListenerLocked() {
	close(s.lnChanged)
	s.lnChanged = make(chan struct{})
}

func (s *Server) isCrashed() bool {
	select {
	case <-s.crashed:
		return true
	default:
		return false
	}
}

// Crashed is closed when the simulated crash happens; owners of a listener
// that Serve does not manage (httptest) can close it then.
func (s *Server) Crashed() <-chan struct{} { return s.crashed }

// crash closes the listener first, so that by the time the client sees its
// connection dropped, a reconnect is already refused.
func (s *Server) crash() {
	s.crashOnce.Do(func() {
		s.lnMu.Lock()
		if s.ln != nil {
			_ = s.ln.Close()
		}
		close(s.crashed)
		s.lnMu.Unlock()
		s.log.Warn("simulated crash: dropping connections and closing the listener")
	})
}

// Serve answers HTTP on ln until ctx ends (then it shuts down gracefully and
// returns nil), a simulated crash (ErrCrashed), or a listener failure. It
// owns ln: the Refuse fault closes it and re-listens on the same address.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.lnMu.Lock()
	if s.serving {
		s.lnMu.Unlock()
		return errors.New("pvedemo: Serve called twice")
	}
	s.serving, s.addr, s.ln = true, ln.Addr(), ln
	if s.Faults().Refuse {
		_ = ln.Close()
		s.ln = nil
	}
	s.lnMu.Unlock()
	defer func() {
		s.lnMu.Lock()
		if s.ln != nil {
			_ = s.ln.Close()
		}
		s.serving, s.ln = false, nil
		s.lnMu.Unlock()
	}()
	for {
		s.lnMu.Lock()
		cur, changed := s.ln, s.lnChanged
		s.lnMu.Unlock()
		var hs *http.Server
		errc := make(chan error, 1)
		if cur != nil {
			hs = &http.Server{
				Handler:           s,
				ReadHeaderTimeout: 10 * time.Second,
				IdleTimeout:       2 * time.Minute,
				ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
			}
			go func() { errc <- hs.Serve(cur) }()
		}
		select {
		case <-ctx.Done():
			if hs != nil {
				sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				err := hs.Shutdown(sctx)
				cancel()
				if err != nil {
					_ = hs.Close()
				}
			}
			return nil
		case <-s.crashed:
			if hs != nil {
				_ = hs.Close() // a crashed process takes every connection with it
			}
			return ErrCrashed
		case <-changed:
			s.stopForRefuse(hs)
		case err := <-errc:
			s.lnMu.Lock()
			swapped := s.ln != cur
			s.lnMu.Unlock()
			if s.isCrashed() {
				return ErrCrashed
			}
			if !swapped {
				return fmt.Errorf("serve: %w", err)
			}
			s.stopForRefuse(hs)
		}
	}
}

// stopForRefuse ends the HTTP server whose listener Refuse closed: requests
// in flight (such as the POST /debug/faults that switched Refuse on) finish,
// idle keep-alive connections are closed, so nothing more gets through.
func (s *Server) stopForRefuse(hs *http.Server) {
	if hs == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := hs.Shutdown(ctx); err != nil {
		_ = hs.Close()
	}
}

// admit applies the fault injection to one API request.
func (s *Server) admit() (f Faults, crash, fail bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f = s.faults
	s.sinceFaults++
	if f.CrashAfter > 0 && s.sinceFaults > f.CrashAfter {
		return f, true, false
	}
	if f.ErrorRate > 0 && s.rng.Float64() < f.ErrorRate {
		fail = true
	}
	return f, false, fail
}

// dropConnection closes the client connection without a response, which is
// what a client sees when the process dies mid-request.
func dropConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not hijackable (HTTP/2): aborting the handler resets the stream.
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// statusRecorder remembers the status for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status int

	markFallback bool
}

// fallbackMarker is implemented by a writer that marks failed extjs answers
// with x-pve-fallback (the rust flavour's statusRecorder).
type fallbackMarker interface{ markFailure(status int) }

func (w *statusRecorder) markFailure(status int) {
	if w.markFallback {
		w.Header().Set("X-Pve-Fallback", strconv.Itoa(status))
	}
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ServeHTTP answers one request: /debug/* directly, everything else through
// fault injection and then the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.isCrashed() {
		dropConnection(w)
		return
	}
	h := w.Header()
	h.Set("Server", serverHeader)
	// Envoy sets this from endpoint metadata in the real system; the demo
	// sets it too so that tests talking to a backend directly see it.
	h.Set("X-Pve-Served-By", string(s.flavor))
	if r.URL.Path == "/debug" || strings.HasPrefix(r.URL.Path, "/debug/") {
		s.debug.ServeHTTP(w, r)
		return
	}
	start := time.Now()
	f, crash, fail := s.admit()
	if crash || (f.Refuse && !s.servingWithListener()) {
		s.record(r, "", 0, start)
		s.log.Debug("request dropped", "method", r.Method, "path", r.URL.Path, "request_id", r.Header.Get("X-Request-Id"), "crash", crash)
		if crash {
			s.crash()
		}
		dropConnection(w)
		return
	}
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
	}
	rec := &statusRecorder{ResponseWriter: w, markFallback: s.markFallback}
	dropAfter := f.DropAfterWrite && r.Method != http.MethodGet && r.Method != http.MethodHead
	if dropAfter {
		// The write runs to the end; its answer goes nowhere.
		rec.ResponseWriter = &discardWriter{h: http.Header{}}
	}
	var tmpl string
	if fail {
		format, _, _ := splitAPIPath(r.URL.EscapedPath())
		writeError(rec, format, dieError("injected fault: error rate %g", f.ErrorRate))
	} else {
		tmpl = s.serveAPI(rec, r)
	}
	s.record(r, tmpl, rec.status, start)
	s.log.Debug("request",
		"method", r.Method,
		"path", r.URL.Path,
		"template", tmpl,
		"status", rec.status,
		"duration", time.Since(start),
		"request_id", r.Header.Get("X-Request-Id"),
		"injected", fail,
	)
	if dropAfter {
		s.log.Debug("write applied, connection dropped", "method", r.Method, "path", r.URL.Path, "template", tmpl)
		dropConnection(w)
	}
}

// discardWriter takes a response that the drop_after_write fault never
// sends.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// servingWithListener reports whether Serve manages the listener (and so
// implements Refuse by refusing connections rather than dropping them).
func (s *Server) servingWithListener() bool {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	return s.serving
}

var knownMethods = map[string]bool{http.MethodGet: true, http.MethodPost: true, http.MethodPut: true, http.MethodDelete: true}

// serveAPI runs pveproxy's request pipeline and returns the matched template.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) string {
	format, segs, ok := splitAPIPath(r.URL.EscapedPath())
	if !ok {
		writeError(w, "json", &apiError{status: http.StatusNotFound, message: "File not found\n"})
		return ""
	}
	if format != "json" && format != "extjs" {
		writeError(w, "json", &apiError{status: http.StatusNotImplemented, message: fmt.Sprintf("no formatter for uri %s\n", r.URL.Path)})
		return ""
	}
	if !knownMethods[r.Method] {
		writeError(w, format, &apiError{status: http.StatusNotImplemented, message: fmt.Sprintf("method '%s' not available\n", r.Method)})
		return ""
	}
	if (r.Method == http.MethodGet || r.Method == http.MethodDelete) && (r.ContentLength > 0 || len(r.TransferEncoding) > 0) {
		writeError(w, format, &apiError{status: http.StatusNotImplemented, message: fmt.Sprintf("Unexpected content for method '%s'\n", r.Method)})
		return ""
	}
	if r.ContentLength > maxBody {
		writeError(w, format, &apiError{status: http.StatusRequestEntityTooLarge, message: "request entity too large\n"})
		return ""
	}
	rel := "/" + strings.Join(segs, "/")
	var rt *route
	var vars map[string]string
	for _, cand := range s.routes {
		if cand.method != r.Method {
			continue
		}
		if v, ok := cand.match(segs); ok {
			rt, vars = cand, v
			break
		}
	}
	user := ""
	if s.auth.enabled() && (rt == nil || !rt.noAuth) {
		var fail authFailure
		user, fail = s.auth.authenticate(r)
		if fail != "" {
			// pveproxy puts the reason in the status line and sends no JSON
			// body; net/http cannot set a custom reason, so it goes in a header.
			s.log.Debug("authentication failed", "method", r.Method, "path", r.URL.Path, "reason", string(fail))
			w.Header().Set("Connection", "close")
			w.Header().Set("X-Pve-Auth-Failure", string(fail))
			w.WriteHeader(http.StatusUnauthorized)
			return ""
		}
	}
	if rt == nil {
		writeError(w, format, &apiError{status: http.StatusNotImplemented, message: fmt.Sprintf("Method '%s %s' not implemented\n", r.Method, rel)})
		return ""
	}
	if s.unimplemented[r.Method+" "+rt.template] {
		// A real 501 in both formats: the router decides on the HTTP status,
		// and an extjs-style 200 would hide the signal to fall back to perl.
		writeJSON(w, http.StatusNotImplemented, map[string]any{"data": nil, "message": "not implemented here"})
		return rt.template
	}
	if node, ok := vars["node"]; ok && node != s.node {
		writeError(w, format, dieError("hostname lookup '%s' failed - failed to get address info for: %s: Name or service not known", node, node))
		return rt.template
	}
	raw, aerr := readParams(r)
	if aerr != nil {
		writeError(w, format, aerr)
		return rt.template
	}
	for k, v := range vars {
		if got, dup := raw[k]; dup && (len(got) != 1 || got[0] != v) {
			writeError(w, format, paramErr(k, "duplicate parameter"))
			return rt.template
		}
		raw[k] = []string{v}
	}
	params, arrays, aerr := rt.schema.validate(raw)
	if aerr != nil {
		writeError(w, format, aerr)
		return rt.template
	}
	res, err := rt.handle(&call{s: s, r: r, params: params, arrays: arrays, user: user})
	if err != nil {
		ae := asAPIError(err)
		if ae.status >= 500 {
			s.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		}
		writeError(w, format, ae)
		return rt.template
	}
	if rt.write && res.changed {
		// Counted before the response goes out, so a client that reads
		// /debug/applied right after its write sees the count.
		s.mu.Lock()
		s.applied[rt.method+" "+rt.template]++
		s.mu.Unlock()
	}
	if r.Method == http.MethodGet {
		res.data = s.alterAnswer(res.data)
	}
	writeResult(w, format, res)
	return rt.template
}

func (s *Server) buildRoutes() []*route {
	const (
		get = http.MethodGet
		pst = http.MethodPost
		put = http.MethodPut
		del = http.MethodDelete
	)
	netTypes := []string{"bridge", "bond", "eth", "alias", "vlan", "fabric", "OVSBridge", "OVSBond", "OVSPort", "OVSIntPort", "vnet", "any_bridge", "any_local_bridge", "include_sdn"}
	null := func(*call) (result, error) { return result{}, nil }
	rs := []*route{
		{method: get, template: "/version", schema: schema{}, handle: s.version},
		{method: get, template: "/access/ticket", noAuth: true, schema: schema{}, handle: null},
		{method: pst, template: "/access/ticket", noAuth: true, handle: s.ticketCreate, schema: schema{
			"username": reqString, "password": reqString, "realm": optString, "otp": optString,
			"path": optString, "privs": optString, "new-format": optBool, "tfa-challenge": optString,
		}},

		{method: get, template: "/nodes/{node}/network", handle: s.networkList, schema: schema{"node": reqString, "type": optEnum(netTypes...)}},
		{method: pst, template: "/nodes/{node}/network", write: true, handle: s.networkCreate, schema: networkWriteSchema(false)},
		{method: put, template: "/nodes/{node}/network", write: true, handle: s.networkApply, schema: schema{"node": reqString, "regenerate-frr": optBool}},
		{method: del, template: "/nodes/{node}/network", write: true, handle: s.networkRevert, schema: pathOnly("node")},
		{method: get, template: "/nodes/{node}/network/{iface}", handle: s.networkGet, schema: schema{"node": reqString, "iface": {kind: kIface, required: true}}},
		{method: put, template: "/nodes/{node}/network/{iface}", write: true, handle: s.networkUpdate, schema: networkWriteSchema(true)},
		{method: del, template: "/nodes/{node}/network/{iface}", write: true, handle: s.networkDelete, schema: schema{"node": reqString, "iface": {kind: kIface, required: true}}},
		{method: get, template: "/nodes/{node}/tasks/{upid}/status", handle: s.taskStatus, schema: pathOnly("node", "upid")},

		{method: get, template: "/cluster/sdn", handle: s.sdnIndex, schema: schema{}},
		{method: put, template: "/cluster/sdn", write: true, handle: s.sdnApply, schema: schema{"lock-token": optString, "release-lock": optBool}},
		{method: pst, template: "/cluster/sdn/rollback", write: true, handle: s.sdnRollback, schema: schema{"lock-token": optString, "release-lock": optBool}},

		{method: get, template: "/cluster/sdn/zones", handle: s.sdnList(sdnZones, zonesOfType), schema: schema{"pending": optBool, "running": optBool, "type": optEnum(zoneTypes...)}},
		{method: pst, template: "/cluster/sdn/zones", write: true, handle: s.zoneCreate, schema: zoneSchema(false)},
		{method: get, template: "/cluster/sdn/zones/{zone}", handle: s.sdnGet(sdnZones, pathID("zone")), schema: sdnReadSchema("zone")},
		{method: put, template: "/cluster/sdn/zones/{zone}", write: true, handle: s.zoneUpdate, schema: zoneSchema(true)},
		{method: del, template: "/cluster/sdn/zones/{zone}", write: true, handle: s.zoneDelete, schema: schema{"zone": reqString, "lock-token": optString}},

		{method: get, template: "/cluster/sdn/vnets", handle: s.sdnList(sdnVnets, nil), schema: sdnReadSchema()},
		{method: pst, template: "/cluster/sdn/vnets", write: true, handle: s.vnetCreate, schema: vnetSchema(false)},
		{method: get, template: "/cluster/sdn/vnets/{vnet}", handle: s.sdnGet(sdnVnets, pathID("vnet")), schema: sdnReadSchema("vnet")},
		{method: put, template: "/cluster/sdn/vnets/{vnet}", write: true, handle: s.vnetUpdate, schema: vnetSchema(true)},
		{method: del, template: "/cluster/sdn/vnets/{vnet}", write: true, handle: s.vnetDelete, schema: schema{"vnet": reqString, "lock-token": optString}},

		{method: get, template: "/cluster/sdn/vnets/{vnet}/subnets", handle: s.sdnList(sdnSubnets, subnetsOfVnet), schema: sdnReadSchema("vnet")},
		{method: pst, template: "/cluster/sdn/vnets/{vnet}/subnets", write: true, handle: s.subnetCreate, schema: subnetSchema(false)},
		{method: get, template: "/cluster/sdn/vnets/{vnet}/subnets/{subnet}", handle: s.sdnGet(sdnSubnets, subnetID), schema: sdnReadSchema("vnet", "subnet")},
		{method: put, template: "/cluster/sdn/vnets/{vnet}/subnets/{subnet}", write: true, handle: s.subnetUpdate, schema: subnetSchema(true)},
		{method: del, template: "/cluster/sdn/vnets/{vnet}/subnets/{subnet}", write: true, handle: s.subnetDelete, schema: schema{"vnet": reqString, "subnet": reqString, "lock-token": optString}},
	}
	for _, rt := range rs {
		rt.segs = splitPath(rt.template)
	}
	return rs
}

func pathID(name string) func(*call, *sdnState) string {
	return func(c *call, _ *sdnState) string { return c.params[name] }
}

// DebugHandler serves only /debug/*, for a second listener that stays
// reachable while the API listener refuses connections.
func (s *Server) DebugHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", serverHeader)
		w.Header().Set("X-Pve-Served-By", string(s.flavor))
		s.debug.ServeHTTP(w, r)
	})
}

func (s *Server) debugMux() *http.ServeMux {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, v any) { writeJSON(w, http.StatusOK, v) }
	mux.HandleFunc("GET /debug/faults", func(w http.ResponseWriter, r *http.Request) { reply(w, s.Faults()) })
	mux.HandleFunc("POST /debug/faults", func(w http.ResponseWriter, r *http.Request) {
		var p faultsPatch
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": fmt.Sprintf("decode faults: %v", err)})
			return
		}
		f, err := p.apply(s.Faults())
		if err == nil {
			err = s.SetFaults(f)
		}
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": err.Error()})
			return
		}
		s.log.Info("faults changed", "error_rate", f.ErrorRate, "latency", f.Latency, "crash_after", f.CrashAfter, "refuse", f.Refuse, "drop_after_write", f.DropAfterWrite, "diverge", f.Diverge, "noise", f.Noise)
		reply(w, f)
	})
	mux.HandleFunc("GET /debug/applied", func(w http.ResponseWriter, r *http.Request) { reply(w, s.Applied()) })
	mux.HandleFunc("DELETE /debug/applied", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		clear(s.applied)
		s.mu.Unlock()
		reply(w, map[string]int64{})
	})
	mux.HandleFunc("GET /debug/requests", func(w http.ResponseWriter, r *http.Request) { reply(w, s.Requests()) })
	mux.HandleFunc("DELETE /debug/requests", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.reqs, s.reqNext = nil, 0
		s.mu.Unlock()
		reply(w, []RequestRecord{})
	})
	return mux
}
