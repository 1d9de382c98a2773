package server

import (
	"context"
	"errors"
	"fmt"
	"github.com/pve-migration/router/internal/pveschema"
	"net/url"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pve-migration/router/internal/outcome"
	pb "github.com/pve-migration/router/proto/pvemigration/v1"
	"github.com/pve-migration/router/routing"
)

// ControlOptions wires a ControlService; fields as in AdminOptions.
type ControlOptions struct {
	Config  ConfigSource
	Health  *HealthChecker
	Stats   outcome.StatsSource
	Version string
	Ready   *Readiness
	// Node, if set, adds the router's node, kill switch and state file.
	Node NodeSource
	// Schema, if set, adds the schema in force for compared answers.
	Schema SchemaSource
	// Gate supplies the gate's trips; nil shows none.
	Gate GateSource
}

// ControlService is the read-only control API (pvemigration.v1.
// ControlService). It reads the same sources as /status and decides with
// the same routing.Decide as the router and `migration-ctl explain`.
// There is nothing to write: the config file is the only way to change
// routing.
type ControlService struct {
	pb.UnimplementedControlServiceServer
	src statusSources
}

var _ pb.ControlServiceServer = (*ControlService)(nil)

// NewControlService returns a ControlService; register it with
// pb.RegisterControlServiceServer (Serve does).
func NewControlService(opts ControlOptions) *ControlService {
	return &ControlService{src: statusSources{config: opts.Config, health: opts.Health, stats: opts.Stats, version: opts.Version, ready: opts.Ready, node: opts.Node, gate: opts.Gate, schema: opts.Schema}}
}

// GetStatus returns the configuration in force, the last reload, the
// statistics and the backends' health.
func (c *ControlService) GetStatus(context.Context, *pb.GetStatusRequest) (*pb.GetStatusResponse, error) {
	st := c.src.collect()
	if st.Phase == "" {
		return nil, status.Error(codes.Unavailable, "no configuration loaded")
	}
	resp := &pb.GetStatusResponse{
		Phase:           st.Phase,
		PhaseSource:     st.PhaseSource,
		FallbackEnabled: st.Fallback.Enabled,
		FallbackSource:  st.Fallback.Source,
		FallbackTimeout: durationpb.New(st.Fallback.Timeout),
		Features: &pb.Features{
			EnableSdnMigration:       st.Features.EnableSDNMigration,
			EnableAdvancedNetworking: st.Features.EnableAdvancedNetworking,
		},
		ConfigPath:      st.ConfigPath,
		LastReload:      &pb.Reload{Result: st.LastReload.Result, Error: st.LastReload.Error},
		Health:          &pb.Health{Perl: probeProto(st.Health.Perl), Rust: probeProto(st.Health.Rust)},
		Version:         st.Version,
		PerlApiBaseUrl:  st.PerlAPIBaseURL,
		PerlApiTokenSet: st.PerlAPITokenSet,
		LogDecisions:    st.LogDecisions,
		MetricsEnabled:  st.MetricsEnabled,
		KillSwitch:      st.KillSwitch,
		Node:            nodeProto(st.Node),
		GateTripped:     st.Gate.Tripped,
		Schema:          schemaProto(st.Schema),
	}
	if st.LoadedAt != nil {
		resp.LoadedAt = timestamppb.New(*st.LoadedAt)
	}
	if st.LastReload.At != nil {
		resp.LastReload.At = timestamppb.New(*st.LastReload.At)
	}
	for _, e := range st.Endpoints {
		o := &pb.EndpointOverride{Template: e.Template, UseRust: e.UseRust, RustMethods: e.RustMethods, FallbackOnError: e.FallbackOnError}
		if e.RustTimeout > 0 {
			o.RustTimeout = durationpb.New(e.RustTimeout)
		}
		resp.Endpoints = append(resp.Endpoints, o)
	}
	if st.Stats != nil {
		s := &pb.Stats{
			TotalRequests: st.Stats.TotalRequests, ByBackend: map[string]*pb.BackendStats{},
			RustDecisions: st.Stats.RustDecisions, RustSuccesses: st.Stats.RustSuccesses, Fallbacks: st.Stats.Fallbacks,
			RustSuccessRate: st.Stats.RustSuccessRate, FallbackRate: st.Stats.FallbackRate,
		}
		for k, b := range st.Stats.ByBackend {
			s.ByBackend[k] = &pb.BackendStats{
				Requests: b.Requests, Errors: b.Errors, ErrorRate: b.ErrorRate,
				AvgSeconds: b.AvgSeconds, P50Seconds: b.P50Seconds, P99Seconds: b.P99Seconds,
			}
		}
		resp.Stats = s
	}
	return resp, nil
}

// Explain decides a request on the snapshot in force, as the router would
// (for a DELETE or a body write, with the type the caller gives).
func (c *ControlService) Explain(_ context.Context, req *pb.ExplainRequest) (*pb.ExplainResponse, error) {
	method := strings.ToUpper(strings.TrimSpace(req.GetMethod()))
	path, err := explainPath(req.GetPath())
	if method == "" || err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "method and path are required: %v", err)
	}
	if c.src.config == nil {
		return nil, status.Error(codes.Unavailable, "no configuration loaded")
	}
	snap := c.src.config.Current()
	if snap == nil {
		return nil, status.Error(codes.Unavailable, "no configuration loaded")
	}
	r := routing.Request{Method: method, Path: path, IfaceType: req.GetType()}
	pol := snap.Policy
	if c.src.gate != nil {
		// The router would answer a tripped category from perl.
		for _, cat := range c.src.gate.Tripped() {
			pol.Local.Tripped = pol.Local.Tripped.With(cat)
		}
	}
	d := routing.Decide(&pol, r)
	resp := &pb.ExplainResponse{
		Backend:   d.Backend.String(),
		Category:  d.Category.String(),
		Reason:    d.Reason.String(),
		Template:  d.Template,
		Phase:     snap.Policy.Phase.String(),
		Fallback:  d.Fallback,
		NeedsType: routing.Classify(r.Method, r.Path, r.IfaceType).NeedsType,
	}
	if d.RustTimeout > 0 {
		resp.RustTimeout = durationpb.New(d.RustTimeout)
	}
	return resp, nil
}

// explainPath accepts what `migration-ctl explain` accepts: a path, or a
// full URL whose path and query are used.
func explainPath(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if strings.Contains(raw, "://") {
		u, err := url.Parse(raw)
		if err != nil {
			return "", fmt.Errorf("invalid URL: %w", err)
		}
		raw = u.EscapedPath()
		if u.RawQuery != "" {
			raw += "?" + u.RawQuery
		}
	}
	if !strings.HasPrefix(raw, "/") {
		return "", errors.New("path must start with /")
	}
	return raw, nil
}

func probeProto(p ProbeResult) *pb.BackendHealth {
	h := &pb.BackendHealth{Url: p.URL, State: p.State, Reachable: p.Reachable, Error: p.Error, HttpStatus: int32(p.HTTPStatus)}
	if p.CheckedAt != nil {
		h.CheckedAt = timestamppb.New(*p.CheckedAt)
		h.Latency = durationpb.New(p.Latency)
	}
	return h
}

func schemaProto(s *pveschema.Status) *pb.SchemaStatus {
	if s == nil {
		return nil
	}
	return &pb.SchemaStatus{Source: s.Source, Version: s.Version, Methods: int32(s.Methods), Unchecked: s.Unchecked, Error: s.Error}
}
