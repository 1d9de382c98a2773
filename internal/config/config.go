// Package config loads the migration router's TOML configuration
// (/etc/pve/network-migration.conf) into an immutable Snapshot, keeps the
// current one in a Store that the request path reads without locks, and
// watches the file so that a phase change or a rollback takes effect without
// a restart. The router and `migration-ctl validate` share Parse, so the
// checker and the server can never disagree about a file.
package config

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/toml/v2"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/v2"
	gotoml "github.com/pelletier/go-toml/v2"

	"github.com/pve-migration/router/routing"
)

// DefaultPath is where PVE keeps the file: /etc/pve is the cluster file
// system, so one edit reaches every node.
const DefaultPath = "/etc/pve/network-migration.conf"

// Environment variables of the contract. They are exported so that help
// texts and the CLI name them exactly as the loader reads them.
const (
	// EnvConfig names the config file when --config is not given.
	EnvConfig = "PVE_NETWORK_MIGRATION_CONFIG"
	// EnvPhase overrides `phase`: an emergency rollback that does not
	// depend on the cluster file system being writable.
	EnvPhase = "PVE_NETWORK_MIGRATION_PHASE"
	// EnvFallback overrides `fallback_enabled`.
	EnvFallback = "PVE_NETWORK_MIGRATION_FALLBACK"
	// EnvPerlAPIURL overrides `perl_api_base_url`.
	EnvPerlAPIURL = "PERL_API_URL"
	// EnvPerlAPIToken is the only place the API token comes from, so that
	// a credential never sits in a cluster-wide, world-readable file.
	EnvPerlAPIToken = "PERL_API_TOKEN"
)

// envFile is the Problem.File of an environment variable problem.
const envFile = "environment"

// Source says where a setting's value came from, so `migration-ctl status`
// can explain why the phase is not what the file says.
type Source string

// Sources, in increasing precedence.
const (
	SourceDefault Source = "default"
	SourceFile    Source = "file"
	SourceEnv     Source = "env"
)

// Snapshot is one loaded configuration. It is immutable once published in
// a Store: readers on the request path hold it without locks, so nobody may
// modify it or the maps and slices it holds. A reload builds a new one.
type Snapshot struct {
	// Policy is what routing.Decide needs; its Endpoints map is keyed by
	// template without format prefix.
	Policy routing.Policy
	// PerlAPIBaseURL is pveproxy's base URL (http or https, with host).
	PerlAPIBaseURL string
	// PerlAPITimeout bounds a request to the Perl API.
	PerlAPITimeout time.Duration
	// LogDecisions is log_migration_decisions: log every routing decision.
	LogDecisions bool
	// MetricsEnabled is metrics_enabled.
	MetricsEnabled bool
	// PerlAPIToken comes from PERL_API_TOKEN only; empty when unset.
	PerlAPIToken Secret
	// PhaseSource and FallbackSource say where the two settings that
	// operators change during a migration came from.
	PhaseSource    Source
	FallbackSource Source
	// Sources has the source of every setting, keyed by its TOML key
	// ("phase", "features.enable_sdn_migration", "endpoints",
	// "perl_api_token").
	Sources map[string]Source
	// Warnings are valid but probably unintended settings (an entry's
	// rust_methods without use_rust = true, ...). They never block a load.
	Warnings []Problem
	// Path is the file the snapshot was read from, "" for built-in
	// defaults.
	Path string
	// FileExists is false when the default file was absent and the
	// built-in defaults apply.
	FileExists bool
	// LoadedAt is when the snapshot was loaded. Parse leaves it zero (it
	// has no clock); Load, the Store and the watcher set it.
	LoadedAt time.Time
	// FileNodes are the file's [nodes.NAME] phases, even where
	// PVE_NETWORK_MIGRATION_PHASE overrides them in Policy.Nodes.
	FileNodes map[string]routing.Phase
	// Digest identifies what the file configures (see nodes.go), so each
	// node's state file tells whether that node runs the current file.
	Digest string
	// Gate is the `[gate]` table (its defaults when absent).
	Gate Gate
	// Compare is the [compare] table (shadow comparison), see compare.go.
	Compare Compare
}

// Equal reports whether two snapshots configure the same behaviour and
// provenance, ignoring LoadedAt. A rewrite that only changes comments is
// therefore a reload with result "unchanged", not a new snapshot.
func (s *Snapshot) Equal(o *Snapshot) bool {
	if s == nil || o == nil {
		return s == o
	}
	a, b := *s, *o
	a.LoadedAt, b.LoadedAt = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

// ResolvePath picks the config file as the contract orders it: the --config
// flag, then PVE_NETWORK_MIGRATION_CONFIG, then DefaultPath. explicit
// reports whether the operator named the file, in which case it must exist.
func ResolvePath(flagValue string, env func(string) string) (path string, explicit bool) {
	if flagValue != "" {
		return flagValue, true
	}
	if env != nil {
		if v := strings.TrimSpace(env(EnvConfig)); v != "" {
			return v, true
		}
	}
	return DefaultPath, false
}

// Load reads and parses the file at path. A missing file is an error,
// except at DefaultPath, where the built-in defaults apply: a node that
// never opted into the migration keeps routing everything to Perl.
// LoadedAt is set to the current time.
func Load(path string, env func(string) string) (*Snapshot, error) {
	return LoadResolved(path, path != DefaultPath, env)
}

// LoadResolved is Load for the pair ResolvePath returns: a file the
// operator named (explicit) must exist even if it is DefaultPath; an
// implicit one may be absent, giving the built-in defaults.
func LoadResolved(path string, explicit bool, env func(string) string) (*Snapshot, error) {
	snap, err := load(path, explicit, env)
	if err != nil {
		return nil, err
	}
	snap.LoadedAt = time.Now()
	return snap, nil
}

func load(path string, explicit bool, env func(string) string) (*Snapshot, error) {
	data, err := readConfigFile(context.Background(), path, DefaultReadTimeout)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !explicit {
			return defaults(env)
		}
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data, env)
}

// defaults is the snapshot of a missing optional file: built-in values with
// the environment overrides still applied.
func defaults(env func(string) string) (*Snapshot, error) {
	snap, err := Parse("", nil, env)
	if err != nil {
		return nil, err
	}
	snap.Path, snap.FileExists = "", false
	return snap, nil
}

// Parse builds a Snapshot from the TOML in data and the environment (env
// may be nil: no overrides). It has no side effects and no clock, so the
// router, the watcher and `migration-ctl validate` share it and tests need
// no files. name labels problems and becomes Snapshot.Path.
//
// Layers, lowest first: the contract's defaults, the file, the
// environment. Every problem of every layer is collected into one
// *ValidationError.
func Parse(name string, data []byte, env func(string) string) (*Snapshot, error) {
	if env == nil {
		env = func(string) string { return "" }
	}
	p := &parser{file: name, fileLayer: map[string]any{}, envLayer: map[string]any{}, gate: DefaultGate()}

	// koanf is the layering engine: each layer is a map of validated,
	// typed values, merged in precedence order. The environment is not
	// read through koanf's env provider because each variable has its own
	// syntax and its own error message, and env must stay injectable.
	fileK := koanf.New(".")
	if err := fileK.Load(bytesProvider(data), toml.Parser()); err != nil {
		p.syntax(err)
	} else {
		p.fileTables(fileK.Raw())
	}
	p.environment(env)
	if len(p.problems) > 0 {
		return nil, &ValidationError{Problems: p.problems}
	}

	layers := []map[string]any{defaultLayer(), p.fileLayer, p.envLayer}
	k := koanf.New(".")
	var ks []*koanf.Koanf
	for _, l := range layers {
		lk := koanf.New(".")
		if err := lk.Load(confmap.Provider(l, ""), nil); err != nil {
			return nil, fmt.Errorf("config: layer: %w", err)
		}
		if err := k.Merge(lk); err != nil {
			return nil, fmt.Errorf("config: merge: %w", err)
		}
		ks = append(ks, lk)
	}

	s := &Snapshot{
		Policy: routing.Policy{
			Phase:           k.Get("phase").(routing.Phase),
			FallbackEnabled: k.Bool("fallback_enabled"),
			FallbackTimeout: k.Get("fallback_timeout").(time.Duration),
			Features: routing.Features{
				EnableSDNMigration:       k.Bool("features.enable_sdn_migration"),
				EnableAdvancedNetworking: k.Bool("features.enable_advanced_networking"),
			},
			Endpoints: p.endpoints,
			Canary:    p.canary,
		},
		Gate:           p.gate,
		PerlAPIBaseURL: k.String("perl_api_base_url"),
		PerlAPITimeout: k.Get("perl_api_timeout").(time.Duration),
		LogDecisions:   k.Bool("log_migration_decisions"),
		MetricsEnabled: k.Bool("metrics_enabled"),
		PerlAPIToken:   p.token,
		Sources:        map[string]Source{},
		Warnings:       p.warnings,
		Path:           name,
		FileExists:     true,
		Compare:        p.compareSnapshot(),
	}
	if s.Policy.Endpoints == nil {
		s.Policy.Endpoints = map[string]routing.EndpointRule{}
	}
	for _, key := range k.Keys() {
		s.Sources[key] = sourceOf(key, ks[1], ks[2])
	}
	s.Sources["endpoints"] = SourceDefault
	if len(p.endpoints) > 0 {
		s.Sources["endpoints"] = SourceFile
	}
	s.Sources["perl_api_token"] = SourceDefault
	if p.token != "" {
		s.Sources["perl_api_token"] = SourceEnv
	}
	p.finishNodes(s)
	s.PhaseSource = s.Sources["phase"]
	s.FallbackSource = s.Sources["fallback_enabled"]
	return s, nil
}

func sourceOf(key string, file, env *koanf.Koanf) Source {
	switch {
	case env.Exists(key):
		return SourceEnv
	case file.Exists(key):
		return SourceFile
	}
	return SourceDefault
}

// defaultLayer is the contract's built-in configuration. Policy values come
// from routing.DefaultPolicy so the two cannot drift apart.
func defaultLayer() map[string]any {
	d := routing.DefaultPolicy()
	return map[string]any{
		"phase":                   d.Phase,
		"fallback_enabled":        d.FallbackEnabled,
		"fallback_timeout":        d.FallbackTimeout,
		"perl_api_base_url":       "https://127.0.0.1:8006",
		"perl_api_timeout":        60 * time.Second,
		"log_migration_decisions": true,
		"metrics_enabled":         true,
		"features": map[string]any{
			"enable_sdn_migration":       d.Features.EnableSDNMigration,
			"enable_advanced_networking": d.Features.EnableAdvancedNetworking,
		},
	}
}

// bytesProvider feeds data to koanf's TOML parser without a file, keeping
// Parse pure.
type bytesProvider []byte

func (b bytesProvider) ReadBytes() ([]byte, error) { return b, nil }

func (b bytesProvider) Read() (map[string]any, error) {
	return nil, errors.New("bytesProvider needs a parser")
}

// Known keys per level, in the contract's order (used for "valid:" lists).
var (
	topKeys      = []string{"phase", "fallback_enabled", "fallback_timeout", "perl_api_base_url", "perl_api_timeout", "log_migration_decisions", "metrics_enabled", "features", "endpoints", "nodes", "gate", "canary", "compare"}
	featureKeys  = []string{"enable_sdn_migration", "enable_advanced_networking"}
	endpointKeys = []string{"use_rust", "fallback_on_error", "rust_timeout", "rust_methods", "compare_ignore"}
	methodNames  = []string{"GET", "POST", "PUT", "DELETE"}
)

// parser collects validated values and problems for one Parse call.
type parser struct {
	file      string
	fileLayer map[string]any
	envLayer  map[string]any
	endpoints map[string]routing.EndpointRule
	nodes     map[string]routing.Phase
	token     Secret
	gate      Gate
	canary    routing.Canary
	cmp       compareParse
	problems  []Problem
	warnings  []Problem
}

func (p *parser) problem(key, value, msg string) {
	p.problems = append(p.problems, Problem{File: p.file, Key: key, Value: value, Msg: msg})
}

func (p *parser) envProblem(name, value, msg string, err error) {
	p.problems = append(p.problems, Problem{File: envFile, Key: name, Value: value, Msg: msg, Err: err})
}

func (p *parser) syntax(err error) {
	pr := Problem{File: p.file, Msg: err.Error(), Err: err}
	var de *gotoml.DecodeError
	if errors.As(err, &de) {
		pr.Line, pr.Column = de.Position()
		pr.Msg = "TOML syntax error: " + strings.TrimPrefix(de.Error(), "toml: ")
	}
	p.problems = append(p.problems, pr)
}

// fileTables validates the decoded file. Keys are visited in sorted order so the
// problem list is stable.
func (p *parser) fileTables(raw map[string]any) {
	for _, key := range sortedKeys(raw) {
		v := raw[key]
		switch key {
		case "phase":
			s, ok := v.(string)
			if !ok {
				p.problem(key, valueText(v), "expected a string, got "+describe(v))
				continue
			}
			ph, err := routing.ParsePhase(s)
			if err != nil {
				p.problem(key, valueText(v), err.Error())
				continue
			}
			p.fileLayer[key] = ph
		case "fallback_enabled", "log_migration_decisions", "metrics_enabled":
			if b, ok := p.boolean(key, v); ok {
				p.fileLayer[key] = b
			}
		case "fallback_timeout", "perl_api_timeout":
			if d, ok := p.seconds(key, v); ok {
				p.fileLayer[key] = d
			}
		case "perl_api_base_url":
			s, ok := v.(string)
			if !ok {
				p.problem(key, valueText(v), "expected a string, got "+describe(v))
				continue
			}
			if shown, msg := checkURL(s); msg != "" {
				p.problem(key, shown, msg)
				continue
			}
			p.fileLayer[key] = s
		case "features":
			p.features(v)
		case "endpoints":
			p.endpointTables(v)
		case "nodes":
			p.nodeTables(v)
		case "gate":
			p.gateTable(v)
		case "canary":
			p.canaryTable(v)
		case "compare":
			p.compareTable(v)
		default:
			p.problem(key, valueText(v), unknownKey(key, "", topKeys))
		}
	}
}

func (p *parser) boolean(key string, v any) (bool, bool) {
	b, ok := v.(bool)
	if !ok {
		p.problem(key, valueText(v), "expected a boolean (true or false), got "+describe(v))
	}
	return b, ok
}

// maxSeconds keeps a time.Duration from overflowing.
const maxSeconds = math.MaxInt64 / int64(time.Second)

// seconds accepts an integer or float number of seconds greater than zero,
// as the seed's files write them ("fallback_timeout = 30").
func (p *parser) seconds(key string, v any) (time.Duration, bool) {
	const want = "expected a positive number of seconds, got "
	var d time.Duration
	switch x := v.(type) {
	case int64:
		if x > maxSeconds {
			p.problem(key, valueText(v), fmt.Sprintf("%d seconds is too long (at most %d)", x, maxSeconds))
			return 0, false
		}
		d = time.Duration(x) * time.Second
	case float64:
		if math.IsNaN(x) || x <= 0 {
			p.problem(key, valueText(v), want+describe(v))
			return 0, false
		}
		if x > float64(maxSeconds) {
			p.problem(key, valueText(v), fmt.Sprintf("%s seconds is too long (at most %d)", valueText(v), maxSeconds))
			return 0, false
		}
		d = time.Duration(math.Round(x * float64(time.Second)))
	default:
		p.problem(key, valueText(v), want+describe(v))
		return 0, false
	}
	if d <= 0 {
		p.problem(key, valueText(v), want+describe(v))
		return 0, false
	}
	return d, true
}

func (p *parser) features(v any) {
	m, ok := v.(map[string]any)
	if !ok {
		p.problem("features", valueText(v), "expected a table ([features]), got "+describe(v))
		return
	}
	out := map[string]any{}
	for _, key := range sortedKeys(m) {
		full := "features." + key
		switch key {
		case "enable_sdn_migration", "enable_advanced_networking":
			if b, ok := p.boolean(full, m[key]); ok {
				out[key] = b
			}
		default:
			p.problem(full, valueText(m[key]), unknownKey(key, "features", featureKeys))
		}
	}
	if len(out) > 0 {
		p.fileLayer["features"] = out
	}
}

// endpointTables validates every [endpoints."TEMPLATE"] table. A key names
// a catalogue template with or without format prefix; the json and extjs
// spellings of one template are the same entry, so naming both is a
// conflict the operator must resolve.
func (p *parser) endpointTables(v any) {
	m, ok := v.(map[string]any)
	if !ok {
		p.problem("endpoints", valueText(v), `expected tables [endpoints."TEMPLATE"], got `+describe(v))
		return
	}
	seen := map[string]string{} // template → first key path naming it
	rules := map[string]routing.EndpointRule{}
	for _, key := range sortedKeys(m) {
		path := "endpoints." + strconv.Quote(key)
		tmpl, known := routing.TemplateKey(key)
		switch {
		case !known:
			msg := fmt.Sprintf("unknown endpoint template %q", key)
			if s := suggestTemplate(key); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			p.problem(path, "", msg)
		case seen[tmpl] != "":
			p.problem(path, "", fmt.Sprintf("duplicate of %s (both are %s)", seen[tmpl], tmpl))
			known = false
		default:
			seen[tmpl] = path
		}
		body, ok := m[key].(map[string]any)
		if !ok {
			p.problem(path, valueText(m[key]), `expected a table [endpoints."TEMPLATE"], got `+describe(m[key]))
			continue
		}
		rule := p.endpointRule(path, tmpl, body)
		if known {
			rules[tmpl] = rule
		}
	}
	p.endpoints = rules
}

func (p *parser) endpointRule(path, tmpl string, body map[string]any) routing.EndpointRule {
	var r routing.EndpointRule
	for _, key := range sortedKeys(body) {
		full := path + "." + key
		v := body[key]
		switch key {
		case "use_rust":
			if b, ok := p.boolean(full, v); ok {
				r.UseRust = &b
			}
		case "fallback_on_error":
			if b, ok := p.boolean(full, v); ok {
				r.FallbackOnError = &b
			}
		case "rust_timeout":
			if d, ok := p.seconds(full, v); ok {
				r.RustTimeout = d
			}
		case "rust_methods":
			r.RustMethods = p.methods(full, v)
		case "compare_ignore":
			p.compareIgnore(full, tmpl, v)
		default:
			p.problem(full, valueText(v), unknownKey(key, "endpoint", endpointKeys))
		}
	}
	if r.RustMethods != nil {
		if r.UseRust == nil || !*r.UseRust {
			p.warnings = append(p.warnings, Problem{File: p.file, Key: path + ".rust_methods",
				Msg: "has no effect unless use_rust = true"})
		}
		if defined := routing.TemplateMethods(tmpl); defined != nil {
			for _, m := range r.RustMethods {
				if !slices.Contains(defined, m) {
					p.warnings = append(p.warnings, Problem{File: p.file, Key: path + ".rust_methods", Value: strconv.Quote(m),
						Msg: fmt.Sprintf("PVE defines no %s for %s (it has %s)", m, tmpl, strings.Join(defined, ", "))})
				}
			}
		}
	}
	return r
}

// methods validates rust_methods: strings naming PVE's four methods in
// any case, stored upper-case and without repeats because routing compares
// them with the request's method as sent (always upper-case in HTTP/2).
// An empty array is kept as an empty, non-nil list: no method goes to Rust.
func (p *parser) methods(key string, v any) []string {
	arr, ok := v.([]any)
	if !ok {
		p.problem(key, valueText(v), `expected an array of methods (["GET", ...]), got `+describe(v))
		return nil
	}
	out := []string{}
	for _, e := range arr {
		s, ok := e.(string)
		if !ok {
			p.problem(key, valueText(e), "expected method names as strings, got "+describe(e))
			continue
		}
		m := strings.ToUpper(strings.TrimSpace(s))
		if !routing.ValidMethod(m) {
			msg := fmt.Sprintf("unknown method %q (valid: %s)", s, strings.Join(methodNames, ", "))
			if best := routing.Suggest(m, methodNames); best != "" {
				msg += fmt.Sprintf("; did you mean %q?", best)
			}
			p.problem(key, strconv.Quote(s), msg)
			continue
		}
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

// environment applies the contract's overrides. An empty variable counts
// as unset, as a shell's `VAR=` usually means.
func (p *parser) environment(env func(string) string) {
	if v := strings.TrimSpace(env(EnvPhase)); v != "" {
		if ph, err := routing.ParsePhase(v); err != nil {
			p.envProblem(EnvPhase, strconv.Quote(v), err.Error(), err)
		} else {
			p.envLayer["phase"] = ph
		}
	}
	if v := strings.TrimSpace(env(EnvFallback)); v != "" {
		if b, ok := parseEnvBool(v); !ok {
			p.envProblem(EnvFallback, strconv.Quote(v), fmt.Sprintf("expected true/false, 1/0, yes/no or on/off, got %q", v), nil)
		} else {
			p.envLayer["fallback_enabled"] = b
		}
	}
	if v := strings.TrimSpace(env(EnvPerlAPIURL)); v != "" {
		if shown, msg := checkURL(v); msg != "" {
			p.envProblem(EnvPerlAPIURL, shown, msg, nil)
		} else {
			p.envLayer["perl_api_base_url"] = v
		}
	}
	if v := strings.TrimSpace(env(EnvPerlAPIToken)); v != "" {
		if err := checkToken(v); err != nil {
			p.envProblem(EnvPerlAPIToken, redacted, err.Error(), err)
		} else {
			p.token = Secret(v)
		}
	}
}

func parseEnvBool(v string) (bool, bool) {
	switch strings.ToLower(v) {
	case "true", "1", "yes", "on":
		return true, true
	case "false", "0", "no", "off":
		return false, true
	}
	return false, false
}

// checkURL returns "" when s is a usable pveproxy base URL, else a message
// and the value as it may be shown (credentials in a URL are redacted:
// they must never reach a log, and the token belongs in PERL_API_TOKEN).
func checkURL(s string) (shown, msg string) {
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", fmt.Sprintf("invalid URL: %v", err)
	}
	shown = strconv.Quote(u.Redacted())
	switch {
	case u.User != nil:
		return shown, fmt.Sprintf("invalid URL %s: must not contain credentials (use %s)", shown, EnvPerlAPIToken)
	case u.Scheme != "http" && u.Scheme != "https":
		return shown, fmt.Sprintf("invalid URL %s: scheme must be http or https", shown)
	case u.Hostname() == "":
		return shown, fmt.Sprintf("invalid URL %s: missing host", shown)
	}
	return "", ""
}

// unknownKey names the key, lists the valid ones and, if one is close or
// the key belongs to another table, says so.
func unknownKey(key, table string, valid []string) string {
	msg := fmt.Sprintf("unknown key %q (valid: %s)", key, strings.Join(valid, ", "))
	if best := routing.Suggest(key, valid); best != "" {
		return msg + fmt.Sprintf("; did you mean %q?", best)
	}
	switch {
	case table != "" && slices.Contains(topKeys, key):
		return msg + "; it is a top-level key: move it above the first [table]"
	case table != "features" && slices.Contains(featureKeys, key):
		return msg + "; it belongs in [features]"
	case table != "endpoint" && slices.Contains(endpointKeys, key):
		return msg + `; it belongs in an [endpoints."TEMPLATE"] table`
	}
	return msg
}

// suggestTemplate proposes a catalogue template for a mistyped key,
// keeping the operator's format prefix (or repairing a mistyped one).
func suggestTemplate(key string) string {
	prefix, rest := "", strings.TrimSpace(key)
	if strings.HasPrefix(rest, "/api2/") {
		seg := rest[len("/api2/"):]
		if i := strings.IndexByte(seg, '/'); i >= 0 {
			prefix, rest = "/api2/json", seg[i:]
			if seg[:i] == "extjs" {
				prefix = "/api2/extjs"
			}
		}
	}
	best := routing.Suggest(rest, routing.Templates())
	if best == "" {
		return ""
	}
	return prefix + best
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// describe names a decoded TOML value's type and shows scalars, for
// "expected X, got Y" messages.
func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("string %q", x)
	case bool:
		return fmt.Sprintf("boolean %t", x)
	case int64:
		return fmt.Sprintf("integer %d", x)
	case float64:
		return "float " + strconv.FormatFloat(x, 'g', -1, 64)
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	case time.Time, gotoml.LocalDate, gotoml.LocalTime, gotoml.LocalDateTime:
		return fmt.Sprintf("datetime %v", x)
	}
	return fmt.Sprintf("%T", v)
}

// valueText is a value as Problem.Value shows it: strings quoted, scalars
// as written, "" for tables and arrays.
func valueText(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case map[string]any, []any:
		return ""
	}
	return fmt.Sprint(v)
}
