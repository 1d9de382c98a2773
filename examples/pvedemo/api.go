package pvedemo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// maxBody is pveproxy's POST body limit (libpve-http-server-perl ≥ 5.2.1).
const maxBody = 512 << 10

// apiError is an error with the HTTP status and per-parameter messages PVE's
// exception class carries. Handlers return it; the formatter decides how the
// client sees it (real status for json, HTTP 200 with "status" for extjs).
type apiError struct {
	status  int
	message string
	errors  map[string]string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%d %s", e.status, strings.TrimSpace(e.message))
}

// paramError is raise_param_exc: 400 "Parameter verification failed."
func paramError(errs map[string]string) *apiError {
	return &apiError{status: http.StatusBadRequest, message: msgParamFailed, errors: errs}
}

func paramErr(key, msg string) *apiError { return paramError(map[string]string{key: msg}) }

// dieError is a plain Perl die(): HTTP 500 with the text as message.
func dieError(format string, args ...any) *apiError {
	msg := fmt.Sprintf(format, args...)
	if !strings.HasSuffix(msg, "\n") {
		msg += "\n"
	}
	return &apiError{status: http.StatusInternalServerError, message: msg}
}

// result is what a handler produces on success.
type result struct {
	data    any
	changes string // top-level "changes" of the network list
	changed bool   // the write changed state: counts in Applied
}

// route is one API method+path the demo serves.
type route struct {
	method   string
	template string // without the /api2/<format> prefix
	segs     []string
	write    bool // a state-changing method (counted in Applied when it changed something)
	noAuth   bool // PVE's unauthenticated exceptions (the ticket endpoint)
	schema   schema
	handle   func(*call) (result, error)
}

// match reports whether segs fits the template and returns the path variables.
func (rt *route) match(segs []string) (map[string]string, bool) {
	if len(segs) != len(rt.segs) {
		return nil, false
	}
	vars := map[string]string{}
	for i, t := range rt.segs {
		if strings.HasPrefix(t, "{") && strings.HasSuffix(t, "}") {
			vars[t[1:len(t)-1]] = segs[i]
			continue
		}
		if t != segs[i] {
			return nil, false
		}
	}
	return vars, true
}

func splitPath(p string) []string {
	return strings.FieldsFunc(p, func(r rune) bool { return r == '/' })
}

// call is one API request on its way through a handler.
type call struct {
	s      *Server
	r      *http.Request
	params map[string]string   // validated, canonical values (path variables included)
	arrays map[string][]string // array-typed parameters
	user   string              // authenticated user id, for UPIDs
}

// splitAPIPath applies pveproxy's $split_abs_uri: ^/api2/+([a-z][a-z0-9]+)(/.*)?$
// on the escaped path, then decodes each segment on its own so that an
// encoded "/" (a subnet CIDR) stays inside its segment. Empty segments are
// dropped as PVE's RESTHandler drops them.
func splitAPIPath(escaped string) (format string, segs []string, ok bool) {
	rest, found := strings.CutPrefix(escaped, "/api2/")
	if !found {
		return "", nil, false
	}
	rest = strings.TrimLeft(rest, "/")
	format, rest, _ = strings.Cut(rest, "/")
	if format == "" || format[0] < 'a' || format[0] > 'z' {
		return "", nil, false
	}
	for _, r := range format {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') {
			return "", nil, false
		}
	}
	for _, s := range splitPath(rest) {
		d, err := url.PathUnescape(s)
		if err != nil {
			return "", nil, false
		}
		segs = append(segs, d)
	}
	return format, segs, true
}

// readParams merges query-string and body parameters as pveproxy does:
// form-urlencoded by default, JSON objects for application/json, repeated
// keys as arrays, "_dc" (ExtJS cache buster) dropped.
func readParams(r *http.Request) (map[string][]string, *apiError) {
	out := map[string][]string{}
	for k, v := range r.URL.Query() {
		out[k] = v
	}
	if r.Method == http.MethodPost || r.Method == http.MethodPut {
		body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBody))
		if err != nil {
			if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
				return nil, &apiError{status: http.StatusRequestEntityTooLarge, message: "request entity too large\n"}
			}
			return nil, &apiError{status: http.StatusBadRequest, message: fmt.Sprintf("unable to read request body: %v\n", err)}
		}
		ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if len(bytes.TrimSpace(body)) > 0 {
			if ct == "application/json" {
				if aerr := jsonParams(body, out); aerr != nil {
					return nil, aerr
				}
			} else {
				q, err := url.ParseQuery(string(body))
				if err != nil {
					return nil, &apiError{status: http.StatusBadRequest, message: fmt.Sprintf("unable to parse form body: %v\n", err)}
				}
				for k, v := range q {
					out[k] = v // the body wins over the query string
				}
			}
		}
	}
	delete(out, "_dc")
	return out, nil
}

func jsonParams(body []byte, out map[string][]string) *apiError {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return &apiError{status: http.StatusBadRequest, message: fmt.Sprintf("JSON decode error: %v\n", err)}
	}
	for k, v := range obj {
		var vals []string
		switch t := v.(type) {
		case nil:
			continue
		case []any:
			for _, e := range t {
				vals = append(vals, jsonScalar(e))
			}
		default:
			vals = []string{jsonScalar(t)}
		}
		out[k] = vals
	}
	return nil
}

func jsonScalar(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case json.Number:
		return t.String()
	case bool:
		if t {
			return "1"
		}
		return "0"
	case nil:
		return ""
	default:
		b, _ := json.Marshal(t)
		return string(b)
	}
}

// writeResult renders a success in the request's format.
func writeResult(w http.ResponseWriter, format string, res result) {
	env := map[string]any{"data": res.data}
	if res.changes != "" {
		env["changes"] = res.changes
	}
	if format == "extjs" {
		env["success"] = 1
	}
	writeJSON(w, http.StatusOK, env)
}

// writeError renders an error in the request's format. json: real status and
// {"data":null,"message":...,"errors":...}; extjs: always HTTP 200 with
// success 0 and the real code in "status", which is what the PVE GUI expects.
func writeError(w http.ResponseWriter, format string, e *apiError) {
	env := map[string]any{"data": nil, "message": e.message}
	if len(e.errors) > 0 {
		env["errors"] = e.errors
	}
	if format == "extjs" {
		env["success"] = 0
		env["status"] = e.status
		if m, ok := w.(fallbackMarker); ok && e.status >= 500 {
			m.markFailure(e.status)
		}
		writeJSON(w, http.StatusOK, env)
		return
	}
	// pveproxy drops keep-alive on every error response.
	w.Header().Set("Connection", "close")
	writeJSON(w, e.status, env)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"data":null,"message":"internal error: cannot encode response\n"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json;charset=UTF-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "max-age=0")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// asAPIError turns any handler error into an apiError: a plain error is a
// Perl die, i.e. HTTP 500 with its text.
func asAPIError(err error) *apiError {
	if ae, ok := errors.AsType[*apiError](err); ok {
		return ae
	}
	return dieError("%v", err)
}
