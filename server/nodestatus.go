package server

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/pve-migration/router/proto/pvemigration/v1"
)

// NodeStatus is what a router knows about its own node in a PVE cluster:
// its name, the phase in force there, the kill switch and whether its
// state file reaches the cluster file system. A router that cannot write
// its state file (pmxcfs read-only without quorum) keeps serving; this is
// where it says so.
type NodeStatus struct {
	Node                 string     `json:"node"`
	EffectivePhase       string     `json:"effective_phase"`
	EffectivePhaseSource string     `json:"effective_phase_source"`
	KillSwitch           bool       `json:"kill_switch"`
	KillSwitchPath       string     `json:"kill_switch_path"`
	StateFile            string     `json:"state_file,omitempty"`
	StateFileWrittenAt   *time.Time `json:"state_file_written_at,omitempty"`
	StateFileError       string     `json:"state_file_error,omitempty"`
}

// NodeSource supplies NodeStatus; the router program implements it from
// its local state, config store and state file writer.
type NodeSource interface {
	NodeStatus() NodeStatus
}

// nodeProto is NodeStatus for the control API.
func nodeProto(n *NodeStatus) *pb.NodeState {
	if n == nil {
		return nil
	}
	out := &pb.NodeState{
		Node: n.Node, EffectivePhase: n.EffectivePhase, EffectivePhaseSource: n.EffectivePhaseSource,
		KillSwitchPath: n.KillSwitchPath, StateFile: n.StateFile, StateFileError: n.StateFileError,
	}
	if n.StateFileWrittenAt != nil {
		out.StateFileWrittenAt = timestamppb.New(*n.StateFileWrittenAt)
	}
	return out
}
