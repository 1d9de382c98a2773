// Package envoy holds the Envoy configurations that put the migration router
// in front of PVE, and the Go code that checks them and reads them back.
//
// Envoy itself cannot run on the build machines, so the two YAML files are
// embedded here and validated in `go test` with the same go-control-plane
// protos (v1.40.0) that the pinned Envoy release reads. The embedded data plane
// (migration-router --proxy-listen) plays Envoy's part without Envoy; it reads
// its route table, retry policies and ext_proc timeouts from these files
// through RouteTable and ExtProc, so both data planes route identically.
package envoy

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"unicode/utf8"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	// Every type that the configurations name in an "@type" must be linked in,
	// or protojson cannot resolve it. Keep this list in step with the YAML.
	_ "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/aggregate/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/composite/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/upstream_codec/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/priority/previous_priorities/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

//go:embed envoy.yaml
var demoConfig []byte

//go:embed envoy-pve-host.yaml
var pveHostConfig []byte

// DemoConfig returns envoy.yaml, the bootstrap used by docker-compose.yaml
// (plain HTTP on :8006, ext_proc over TCP). It is a copy, so callers may
// modify it; tests and the embedded data plane read the configuration from
// here rather than from the file system, so they see the file that was built
// in.
func DemoConfig() []byte { return bytes.Clone(demoConfig) }

// PVEHostConfig returns envoy-pve-host.yaml, the bootstrap for a real PVE
// node (TLS on :8443 in front of pveproxy, ext_proc over a unix socket). It
// is a copy, so callers may modify it.
func PVEHostConfig() []byte { return bytes.Clone(pveHostConfig) }

// LoadBootstrap parses an Envoy bootstrap written in YAML and checks it as far
// as is possible without an Envoy binary, so that a broken configuration
// fails in `go test` instead of at Envoy start-up on a PVE node.
//
// The checks, in order:
//  1. YAML to JSON (sigs.k8s.io/yaml), then strict protojson: unknown fields
//     and unresolvable "@type"s are errors. The error names the JSON path of
//     the object that holds the offending field.
//  2. The generated PGV rules (ValidateAll) on the whole bootstrap.
//  3. A walk over every google.protobuf.Any in the tree (typed_config and
//     friends), which ValidateAll does not look into: each is unpacked,
//     validated and walked in turn. Errors name the path and the type.
//  4. Checks that Envoy makes at load time but PGV cannot: every cluster a
//     route, a gRPC service or a composite/aggregate cluster names exists,
//     cluster names are unique, composite/aggregate clusters use
//     CLUSTER_PROVIDED, retry_on tokens are known, regexes compile, and the
//     ext_proc filter names exactly one service.
//
// All problems found in step 4 are reported together.
func LoadBootstrap(yamlBytes []byte) (*bootstrapv3.Bootstrap, error) {
	js, err := yaml.YAMLToJSON(yamlBytes)
	if err != nil {
		return nil, fmt.Errorf("envoy config: YAML: %w", err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(js, b); err != nil {
		if at := jsonPathOfError(js, err); at != "" {
			return nil, fmt.Errorf("envoy config: in %s: %w", at, err)
		}
		return nil, fmt.Errorf("envoy config: %w", err)
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("envoy config: bootstrap validation: %w", err)
	}
	c := newChecker(b)
	if err := walk("", b.ProtoReflect(), c.visit); err != nil {
		return nil, fmt.Errorf("envoy config: %w", err)
	}
	if err := c.finish(); err != nil {
		return nil, fmt.Errorf("envoy config: %w", err)
	}
	return b, nil
}

// validator is what protoc-gen-validate generates on every Envoy message.
type validator interface{ ValidateAll() error }

// walk calls visit on m and on every message below it, depth first, in field
// number order. A google.protobuf.Any is unpacked, validated with its own PGV
// rules and walked like any other message, with the same path.
func walk(path string, m protoreflect.Message, visit func(path string, m protoreflect.Message) error) error {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("%s: cannot decode %q: %w", orRoot(path), a.GetTypeUrl(), err)
		}
		if v, ok := inner.(validator); ok {
			if err := v.ValidateAll(); err != nil {
				return fmt.Errorf("%s (%s): %w", orRoot(path), inner.ProtoReflect().Descriptor().FullName(), err)
			}
		}
		return walk(path, inner.ProtoReflect(), visit)
	}
	if err := visit(path, m); err != nil {
		return err
	}
	var fields []protoreflect.FieldDescriptor
	m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if fd.Message() != nil {
			fields = append(fields, fd)
		}
		return true
	})
	slices.SortFunc(fields, func(a, b protoreflect.FieldDescriptor) int { return int(a.Number() - b.Number()) })
	for _, fd := range fields {
		name := join(path, string(fd.Name()))
		v := m.Get(fd)
		switch {
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				if err := walk(name+"["+strconv.Itoa(i)+"]", l.Get(i).Message(), visit); err != nil {
					return err
				}
			}
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				continue
			}
			var keys []string
			mv := v.Map()
			mv.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
				keys = append(keys, k.String())
				return true
			})
			slices.Sort(keys)
			for _, k := range keys {
				val := mv.Get(protoreflect.ValueOfString(k).MapKey())
				if err := walk(name+"["+strconv.Quote(k)+"]", val.Message(), visit); err != nil {
					return err
				}
			}
		default:
			if err := walk(name, v.Message(), visit); err != nil {
				return err
			}
		}
	}
	return nil
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func orRoot(path string) string {
	if path == "" {
		return "(bootstrap)"
	}
	return path
}

// protojson reports positions as "(line L:C)" in the JSON text, which means
// nothing to someone reading the YAML. jsonPathOfError turns the position
// back into the path of the enclosing JSON object, e.g.
// static_resources.clusters[1].outlier_detection.
var protojsonPos = regexp.MustCompile(`\(line (\d+):(\d+)\)`)

func jsonPathOfError(js []byte, err error) string {
	m := protojsonPos.FindStringSubmatch(err.Error())
	if m == nil {
		return ""
	}
	line, _ := strconv.Atoi(m[1])
	col, _ := strconv.Atoi(m[2])
	off := byteOffset(js, line, col)
	if off < 0 {
		return ""
	}
	return jsonPathAt(js, off)
}

// byteOffset converts protojson's 1-based line and rune column to a byte
// offset, or -1.
func byteOffset(js []byte, line, col int) int {
	start := 0
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(js[start:], '\n')
		if i < 0 {
			return -1
		}
		start += i + 1
	}
	off := start
	for c := 1; c < col; c++ {
		if off >= len(js) {
			return -1
		}
		_, n := utf8.DecodeRune(js[off:])
		off += n
	}
	return off
}

// jsonPathAt returns the path of the innermost object or array that is open
// at byte offset off of js.
func jsonPathAt(js []byte, off int) string {
	type frame struct {
		array   bool
		index   int    // arrays: index of the current element
		key     string // objects: key of the current member
		wantKey bool   // objects: the next string token is a key
	}
	var stack []*frame
	startValue := func() {
		if len(stack) == 0 {
			return
		}
		if top := stack[len(stack)-1]; top.array {
			top.index++
		}
	}
	endValue := func() {
		if len(stack) == 0 {
			return
		}
		if top := stack[len(stack)-1]; !top.array {
			top.wantKey = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	for {
		// Stop at the token that covers off: the path is then that of the
		// object or array holding it (plus the key, for a bad value).
		tok, err := dec.Token()
		if err != nil {
			break
		}
		if dec.InputOffset() > int64(off) {
			// An array element at off counts as the current element.
			if d, ok := tok.(json.Delim); !ok || d == '{' || d == '[' {
				if len(stack) > 0 && stack[len(stack)-1].array {
					startValue()
				}
			}
			break
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				startValue()
				stack = append(stack, &frame{wantKey: true})
			case '[':
				startValue()
				stack = append(stack, &frame{array: true, index: -1})
			default:
				stack = stack[:len(stack)-1]
				endValue()
			}
		default:
			if s, ok := t.(string); ok && len(stack) > 0 && !stack[len(stack)-1].array && stack[len(stack)-1].wantKey {
				stack[len(stack)-1].key = s
				stack[len(stack)-1].wantKey = false
				continue
			}
			startValue()
			endValue()
		}
	}
	var b bytes.Buffer
	for _, f := range stack {
		switch {
		case f.array && f.index >= 0:
			fmt.Fprintf(&b, "[%d]", f.index)
		case !f.array && !f.wantKey:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(f.key)
		}
	}
	if b.Len() == 0 {
		return "(bootstrap)"
	}
	return b.String()
}

// unpack returns the message inside a, or an error naming path.
func unpack[T proto.Message](path string, a *anypb.Any) (T, error) {
	var zero T
	if a == nil {
		return zero, fmt.Errorf("%s: no typed_config", path)
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		return zero, fmt.Errorf("%s: %w", path, err)
	}
	t, ok := m.(T)
	if !ok {
		return zero, fmt.Errorf("%s: is %s, want %T", path, m.ProtoReflect().Descriptor().FullName(), zero)
	}
	return t, nil
}

var errNotFound = errors.New("not found")
