package server

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/pve-migration/router/internal/gate"
	pb "github.com/pve-migration/router/proto/pvemigration/v1"
	"github.com/pve-migration/router/routing"
)

// GateSource is the gate as the control API and /status see it
// (*gate.Gate).
type GateSource interface {
	// Tripped lists the categories tripped on this node.
	Tripped() []routing.Category
	// Reset clears trips (all when cs is empty) and returns those reset.
	Reset(by string, cs ...routing.Category) []routing.Category
	// Plan is what the next phase would move, with the evidence.
	Plan() gate.Plan
}

var _ GateSource = (*gate.Gate)(nil)

// RolloutService is pvemigration.v1.RolloutService: plan, evidence and
// gate reset for `migration-ctl plan`, `advance` and `gate reset`.
type RolloutService struct {
	pb.UnimplementedRolloutServiceServer
	gate   GateSource
	config ConfigSource
}

var _ pb.RolloutServiceServer = (*RolloutService)(nil)

// NewRolloutService returns the service; register it with ServeConfig.Rollout.
func NewRolloutService(g GateSource, cfg ConfigSource) *RolloutService {
	return &RolloutService{gate: g, config: cfg}
}

// Plan returns the gate's plan in protobuf.
func (r *RolloutService) Plan(context.Context, *pb.PlanRequest) (*pb.PlanResponse, error) {
	if r.gate == nil || r.config == nil || r.config.Current() == nil {
		return nil, status.Error(codes.Unavailable, "no configuration loaded")
	}
	p := r.gate.Plan()
	resp := &pb.PlanResponse{Phase: p.Phase.String(), Window: durationpb.New(p.Window), MinRequests: int32(p.MinRequests),
		GateEnabled: r.config.Current().Gate.Enabled}
	if p.HasNext {
		resp.Next = p.Next.String()
	}
	for _, c := range p.Categories {
		e := c.Evidence
		resp.Categories = append(resp.Categories, &pb.CategoryPlan{
			Category: c.Category.String(), Requests: c.Requests, WouldMove: c.WouldMove, Moves: c.Moves, Tripped: c.Tripped,
			Evidence: &pb.Evidence{
				Kind: e.Kind, Ok: e.OK, Missing: e.Missing, Compared: int64(e.Compared), Mismatched: int64(e.Mismatched),
				MismatchRate: e.MismatchRate, RustAttempts: e.RustAttempts, RustErrors: e.RustErrors, Canary: e.Canary,
				ErrorRate: e.ErrorRate, RustP99: durationpb.New(e.RustP99), PerlP99: durationpb.New(e.PerlP99), LatencyRatio: e.LatencyRatio,
			},
		})
	}
	return resp, nil
}

// GateReset clears trips. An unknown category name is InvalidArgument
// with a suggestion, and nothing is reset.
func (r *RolloutService) GateReset(_ context.Context, req *pb.GateResetRequest) (*pb.GateResetResponse, error) {
	if r.gate == nil {
		return nil, status.Error(codes.Unavailable, "the gate is not running")
	}
	var cs []routing.Category
	for _, name := range req.GetCategories() {
		c, err := ParseNetworkCategory(name)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		cs = append(cs, c)
	}
	resp := &pb.GateResetResponse{ResetCategories: []string{}, Tripped: []string{}}
	for _, c := range r.gate.Reset("migration-ctl gate reset", cs...) {
		resp.ResetCategories = append(resp.ResetCategories, c.String())
	}
	for _, c := range r.gate.Tripped() {
		resp.Tripped = append(resp.Tripped, c.String())
	}
	return resp, nil
}

// ParseNetworkCategory reads a category name the gate can trip (every one
// but not-network); an unknown one is an error listing the valid names
// and suggesting the closest.
func ParseNetworkCategory(name string) (routing.Category, error) {
	var names []string
	for _, c := range routing.Categories() {
		if c == routing.NotNetwork {
			continue
		}
		if strings.EqualFold(strings.TrimSpace(name), c.String()) {
			return c, nil
		}
		names = append(names, c.String())
	}
	msg := fmt.Sprintf("unknown category %q (valid: %s)", name, strings.Join(names, ", "))
	if s := routing.Suggest(name, names); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	return routing.NotNetwork, fmt.Errorf("%s", msg)
}

// GateView is the gate's part of /status and `status --json`.
type GateView struct {
	Tripped []string `json:"tripped"`
}

func gateView(g GateSource) GateView {
	v := GateView{Tripped: []string{}}
	if g != nil {
		for _, c := range g.Tripped() {
			v.Tripped = append(v.Tripped, c.String())
		}
	}
	return v
}
