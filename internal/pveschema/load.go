package pveschema

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
)

// DefaultPath is where a PVE node's pve-docs package installs the API
// viewer's schema. It matches the installed PVE version, so it is the
// default; a host without it (not a PVE node, a container) falls back to
// the embedded schema.
const DefaultPath = "/usr/share/pve-docs/api-viewer/apidoc.js"

// EmbeddedVersion is the PVE version of the schema built into the binary.
const EmbeddedVersion = "9.1.3"

// embeddedSchema is PVE 9.1.3's apidata.json reduced to the returns of
// every method (mkembed.go writes it; `go generate` reruns it).
//
//go:generate go run mkembed.go ../../../shared/pve-api/apidata.json
//go:embed pve91.json.gz
var embeddedSchema []byte

// Source says which schema a Checker was compiled from, for status, the
// log and the compare report.
type Source struct {
	// Name is "embedded" or the file's path.
	Name string `json:"source"`
	// Version is "PVE 9.1.3" for the embedded schema and the file's
	// SHA-256 ("sha256:" and 16 hex digits) for a file: apidoc.js carries
	// no version of its own, and a digest tells two nodes' files apart.
	Version string `json:"version"`
	// Methods is how many method+path pairs the schema holds.
	Methods int `json:"methods"`
}

// String is the one-line form status and the log print:
// "embedded PVE 9.1.3 (649 methods)" or
// "/usr/share/pve-docs/api-viewer/apidoc.js sha256:0123abcd... (651 methods)".
func (s Source) String() string {
	if s.Name == "embedded" {
		return fmt.Sprintf("embedded %s (%d methods)", s.Version, s.Methods)
	}
	return fmt.Sprintf("%s %s (%d methods)", s.Name, s.Version, s.Methods)
}

var (
	embeddedOnce    sync.Once
	embeddedChecker *Checker
	embeddedErr     error
)

// Embedded returns the checker of the schema built into the binary,
// compiled on first use and shared afterwards (it is immutable).
func Embedded() (*Checker, error) {
	embeddedOnce.Do(func() {
		embeddedChecker, embeddedErr = compileEmbedded()
	})
	return embeddedChecker, embeddedErr
}

func compileEmbedded() (*Checker, error) {
	zr, err := gzip.NewReader(bytes.NewReader(embeddedSchema))
	if err != nil {
		return nil, fmt.Errorf("embedded schema: %w", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("embedded schema: %w", err)
	}
	s, err := Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("embedded schema: %w", err)
	}
	c, err := Compile(s)
	if err != nil {
		return nil, fmt.Errorf("embedded schema: %w", err)
	}
	c.source = Source{Name: "embedded", Version: "PVE " + EmbeddedVersion, Methods: s.Methods()}
	return c, nil
}

// Load returns the checker for the `[compare] api_schema` setting. path ""
// means DefaultPath if it exists, else the embedded schema, silently: a
// host that is not a PVE node has no apidoc.js. A named path that cannot be
// read or parsed, or a default file that exists but is broken, is an error
// naming the file, and the embedded schema's checker is returned with it:
// the caller reports the error in status and the log and keeps checking.
// The returned checker is never nil unless the embedded schema itself is
// broken (a build defect a test catches).
func Load(path string) (*Checker, error) {
	named := path != ""
	if !named {
		path = DefaultPath
	}
	c, err := LoadFile(path)
	if err == nil {
		return c, nil
	}
	emb, embErr := Embedded()
	if embErr != nil {
		return nil, errors.Join(err, embErr)
	}
	if !named && errors.Is(err, fs.ErrNotExist) {
		return emb, nil
	}
	return emb, fmt.Errorf("%w; the embedded PVE %s schema serves instead", err, EmbeddedVersion)
}

// LoadFile reads, parses and compiles one schema file (apidoc.js,
// apidata.js or apidata.json). Errors name the file.
func LoadFile(path string) (*Checker, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("api_schema %s: %w", path, err)
	}
	s, err := Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("api_schema %s: %w", path, err)
	}
	c, err := Compile(s)
	if err != nil {
		return nil, fmt.Errorf("api_schema %s: %w", path, err)
	}
	sum := sha256.Sum256(raw)
	c.source = Source{Name: path, Version: "sha256:" + hex.EncodeToString(sum[:8]), Methods: s.Methods()}
	return c, nil
}
