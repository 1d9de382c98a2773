package telemetry

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// The OpenTelemetry environment variables Setup reads through Options.Env.
// They are named here so that help texts and error messages spell them
// exactly as operators must.
const (
	EnvServiceName        = "OTEL_SERVICE_NAME"
	EnvResourceAttributes = "OTEL_RESOURCE_ATTRIBUTES"
	EnvTracesExporter     = "OTEL_TRACES_EXPORTER"
	EnvTracesSampler      = "OTEL_TRACES_SAMPLER"
	EnvTracesSamplerArg   = "OTEL_TRACES_SAMPLER_ARG"
	EnvOTLPEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvOTLPTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvOTLPProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvOTLPTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
)

// DefaultServiceName is the service.name when OTEL_SERVICE_NAME is unset;
// the Jaeger service list shows the router under it.
const DefaultServiceName = "pve-migration-router"

// OTLP protocols, as OTEL_EXPORTER_OTLP_PROTOCOL spells them.
const (
	ProtocolGRPC         = "grpc"
	ProtocolHTTPProtobuf = "http/protobuf"
)

// exportConfig is the trace exporter configuration read from the
// environment. It is a plain value so that env parsing is tested without
// creating an exporter.
type exportConfig struct {
	enabled  bool
	protocol string
	// endpoint is a full URL (scheme, host, and for HTTP the path).
	endpoint    string
	headers     map[string]string
	timeout     time.Duration
	compression string
}

// signalVar returns the traces-specific variable if set, else the generic
// one, as the OTLP exporter specification orders them; name is the one
// that was used, for error messages.
func signalVar(env func(string) string, specific, generic string) (value, name string) {
	if v := strings.TrimSpace(env(specific)); v != "" {
		return v, specific
	}
	return strings.TrimSpace(env(generic)), generic
}

// parseExport reads the OTLP trace exporter settings. The exporter is on
// when an endpoint is set or OTEL_TRACES_EXPORTER=otlp, and off when
// neither is set or OTEL_TRACES_EXPORTER=none: a router started without
// any OTEL_* variable must not try to reach a collector that is not there.
func parseExport(env func(string) string) (exportConfig, error) {
	var errs []error
	var c exportConfig

	genericEndpoint := strings.TrimSpace(env(EnvOTLPEndpoint))
	tracesEndpoint := strings.TrimSpace(env(EnvOTLPTracesEndpoint))
	switch exp := strings.TrimSpace(env(EnvTracesExporter)); exp {
	case "":
		c.enabled = genericEndpoint != "" || tracesEndpoint != ""
	case "none":
		return exportConfig{}, nil
	case "otlp":
		c.enabled = true
	default:
		return exportConfig{}, fmt.Errorf("%s=%q: only \"otlp\" and \"none\" are supported", EnvTracesExporter, exp)
	}
	if !c.enabled {
		return c, nil
	}

	proto, protoVar := signalVar(env, EnvOTLPTracesProtocol, EnvOTLPProtocol)
	switch proto {
	case "":
		c.protocol = defaultProtocol(tracesEndpoint, genericEndpoint)
	case ProtocolGRPC, ProtocolHTTPProtobuf:
		c.protocol = proto
	default:
		errs = append(errs, fmt.Errorf("%s=%q: supported protocols are %q and %q", protoVar, proto, ProtocolGRPC, ProtocolHTTPProtobuf))
		c.protocol = ProtocolHTTPProtobuf
	}

	insecure, insecureVar := signalVar(env, "OTEL_EXPORTER_OTLP_TRACES_INSECURE", "OTEL_EXPORTER_OTLP_INSECURE")
	plain := false
	if insecure != "" {
		b, err := strconv.ParseBool(insecure)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: not a boolean", insecureVar, insecure))
		}
		plain = b
	}

	switch {
	case tracesEndpoint != "":
		// The signal-specific variable is used as is, path included.
		u, err := endpointURL(tracesEndpoint, plain)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", EnvOTLPTracesEndpoint, err))
		}
		c.endpoint = u
	case genericEndpoint != "":
		u, err := endpointURL(genericEndpoint, plain)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", EnvOTLPEndpoint, err))
		} else if c.protocol == ProtocolHTTPProtobuf {
			// The generic variable is a base URL: HTTP appends the
			// signal path, gRPC ignores paths.
			u = strings.TrimSuffix(u, "/") + "/v1/traces"
		}
		c.endpoint = u
	case c.protocol == ProtocolGRPC:
		c.endpoint = "http://localhost:4317"
	default:
		c.endpoint = "http://localhost:4318/v1/traces"
	}

	if h, hVar := signalVar(env, "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"); h != "" {
		m, err := parseKeyValues(h)
		if err != nil {
			// Header values are often credentials: the error names the
			// variable but never echoes its value.
			errs = append(errs, fmt.Errorf("%s: %w", hVar, err))
		}
		c.headers = m
	}
	if t, tVar := signalVar(env, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"); t != "" {
		ms, err := strconv.Atoi(t)
		if err != nil || ms <= 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a positive number of milliseconds", tVar, t))
		} else {
			c.timeout = time.Duration(ms) * time.Millisecond
		}
	}
	if z, zVar := signalVar(env, "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"); z != "" {
		if z != "gzip" && z != "none" {
			errs = append(errs, fmt.Errorf("%s=%q: want \"gzip\" or \"none\"", zVar, z))
		} else {
			c.compression = z
		}
	}
	return c, errors.Join(errs...)
}

// defaultProtocol picks the protocol when no variable names one. The
// specification's default is http/protobuf, but an endpoint on port 4317,
// OTLP/gRPC's registered port (Jaeger's and the collector's), would then
// certainly fail: "OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4317" alone
// means gRPC, so it is taken as gRPC. Every other endpoint gets the
// specification's default.
func defaultProtocol(endpoints ...string) string {
	for _, e := range endpoints {
		if e == "" {
			continue
		}
		s := e
		if !strings.Contains(s, "://") {
			s = "http://" + s
		}
		if u, err := url.Parse(s); err == nil && u.Port() == "4317" {
			return ProtocolGRPC
		}
		break // the first endpoint set is the one in use
	}
	return ProtocolHTTPProtobuf
}

// endpointURL checks an endpoint and gives it a scheme. The specification
// wants a URL; a bare host:port, which older SDKs accepted, is taken as
// https unless the INSECURE variable says otherwise.
func endpointURL(s string, insecure bool) (string, error) {
	if !strings.Contains(s, "://") {
		if insecure {
			s = "http://" + s
		} else {
			s = "https://" + s
		}
	}
	u, err := url.Parse(s)
	if err != nil {
		// url's error repeats the whole input, which may hold a password.
		return "", errors.New("not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("scheme %q: want http or https", u.Scheme)
	}
	if u.Host == "" {
		return "", errors.New("URL has no host")
	}
	return u.String(), nil
}

// redactURL hides userinfo so that an endpoint can be logged.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(invalid)"
	}
	if u.User != nil {
		u.User = url.User("REDACTED")
	}
	return u.String()
}

// parseKeyValues parses the W3C-baggage-like "k1=v1,k2=v2" lists of
// OTEL_RESOURCE_ATTRIBUTES and OTEL_EXPORTER_OTLP_HEADERS; values are
// percent-decoded. Errors never contain a value.
func parseKeyValues(s string) (map[string]string, error) {
	out := map[string]string{}
	for i, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		k, v, ok := strings.Cut(item, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("item %d is not key=value", i+1)
		}
		dv, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("item %d (%s): bad percent-encoding", i+1, k)
		}
		out[k] = dv
	}
	return out, nil
}

// resourceAttrs returns the attributes of OTEL_RESOURCE_ATTRIBUTES with
// service.name and service.version applied on top, in the specification's
// precedence: OTEL_SERVICE_NAME beats a service.name in the list, which
// beats the default.
func resourceAttrs(env func(string) string, version string) ([]attribute.KeyValue, string, error) {
	var errs []error
	m := map[string]string{}
	if s := env(EnvResourceAttributes); strings.TrimSpace(s) != "" {
		kv, err := parseKeyValues(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", EnvResourceAttributes, err))
		}
		m = kv
		if m == nil {
			m = map[string]string{}
		}
	}
	name := strings.TrimSpace(env(EnvServiceName))
	if name == "" {
		name = m["service.name"]
	}
	if name == "" {
		name = DefaultServiceName
	}
	m["service.name"] = name
	if version != "" {
		m["service.version"] = version
	}
	attrs := make([]attribute.KeyValue, 0, len(m))
	for k, v := range m {
		attrs = append(attrs, attribute.String(k, v))
	}
	return attrs, name, errors.Join(errs...)
}

// parseSampler maps OTEL_TRACES_SAMPLER to a Sampler. The default,
// parentbased_always_on, follows Envoy's decision when its span is in the
// gRPC metadata and samples everything else.
func parseSampler(env func(string) string) (sdktrace.Sampler, string, error) {
	name := strings.TrimSpace(env(EnvTracesSampler))
	arg := strings.TrimSpace(env(EnvTracesSamplerArg))
	ratio := func() (float64, error) {
		if arg == "" {
			return 1, nil
		}
		f, err := strconv.ParseFloat(arg, 64)
		if err != nil || f < 0 || f > 1 {
			return 1, fmt.Errorf("%s=%q: want a ratio between 0 and 1", EnvTracesSamplerArg, arg)
		}
		return f, nil
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), "parentbased_always_on", nil
	case "always_on":
		return sdktrace.AlwaysSample(), name, nil
	case "always_off":
		return sdktrace.NeverSample(), name, nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), name, nil
	case "traceidratio":
		r, err := ratio()
		return sdktrace.TraceIDRatioBased(r), name, err
	case "parentbased_traceidratio":
		r, err := ratio()
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), name, err
	default:
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), "parentbased_always_on",
			fmt.Errorf("%s=%q: supported samplers are always_on, always_off, traceidratio and their parentbased_ forms", EnvTracesSampler, name)
	}
}
