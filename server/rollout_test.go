package server_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/pve-migration/router/internal/config"
	"github.com/pve-migration/router/internal/gate"
	"github.com/pve-migration/router/internal/localstate"
	pb "github.com/pve-migration/router/proto/pvemigration/v1"
	"github.com/pve-migration/router/routing"
	"github.com/pve-migration/router/server"
)

// TestRolloutAPI: plan, gate reset and the gate in status over real gRPC
// and the admin HTTP handler, with a real gate and local state.
func TestRolloutAPI(t *testing.T) {
	snap := snapshot(routing.RustReadOnly, func(s *config.Snapshot) { s.Gate = config.DefaultGate(); s.Gate.Enabled = true })
	store := config.NewStore(snap)
	state := localstate.New("")
	g := gate.New(gate.Options{Config: store.Current, State: state})
	for i := 0; i < 25; i++ {
		g.Record(gate.Outcome{At: time.Now(), Category: routing.NodeNetworkRead, Backend: routing.Rust, Reason: routing.ReasonPhase, ServedBy: "rust", Status: 500, Duration: time.Millisecond})
		g.Record(gate.Outcome{At: time.Now(), Category: routing.NodeNetworkBasicWrite, Backend: routing.Perl, Reason: routing.ReasonPhase, ServedBy: "perl", Status: 200, Duration: time.Millisecond})
	}
	if !state.Local().Tripped.Has(routing.NodeNetworkRead) {
		t.Fatal("setup: not tripped")
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- server.Serve(ctx, server.ServeConfig{Listener: ln, Processor: server.NewProcessor(server.Options{Config: store.Current}),
			Control: server.NewControlService(server.ControlOptions{Config: store, Gate: g}), Rollout: server.NewRolloutService(g, store)})
	}()
	defer func() { cancel(); <-done }()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rc, cc := pb.NewRolloutServiceClient(conn), pb.NewControlServiceClient(conn)

	st, err := cc.GetStatus(ctx, &pb.GetStatusRequest{})
	if err != nil || strings.Join(st.GetGateTripped(), ",") != "node-network-read" {
		t.Fatalf("GetStatus gate %v, %v", st.GetGateTripped(), err)
	}
	rec := httptest.NewRecorder()
	server.NewAdminHandler(server.AdminOptions{Config: store, Gate: g}).ServeHTTP(rec, httptest.NewRequest("GET", "/status", nil))
	var view struct {
		Gate struct{ Tripped []string } `json:"gate"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &view); err != nil || rec.Code != http.StatusOK || len(view.Gate.Tripped) != 1 {
		t.Fatalf("/status gate %+v %v %d", view, err, rec.Code)
	}

	ex, err := cc.Explain(ctx, &pb.ExplainRequest{Method: "GET", Path: "/api2/json/nodes/pve1/network"})
	if err != nil || ex.GetBackend() != "perl" || ex.GetReason() != "gate-tripped" {
		t.Fatalf("Explain of a tripped read: %v, %v", ex, err)
	}

	plan, err := rc.Plan(ctx, &pb.PlanRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if plan.GetPhase() != "rust-read-only" || plan.GetNext() != "rust-basic-write" || len(plan.GetCategories()) != 5 || !plan.GetGateEnabled() {
		t.Fatalf("plan %v", plan)
	}
	basic := plan.GetCategories()[1]
	if basic.GetCategory() != "node-network-basic-write" || !basic.GetMoves() || basic.GetWouldMove() != 25 || basic.GetEvidence().GetOk() || basic.GetEvidence().GetKind() != "canary" {
		t.Fatalf("basic-write plan %v", basic)
	}
	if read := plan.GetCategories()[0]; !read.GetTripped() || read.GetEvidence().GetRustErrors() != 25 {
		t.Fatalf("read plan %v", read)
	}

	_, err = rc.GateReset(ctx, &pb.GateResetRequest{Categories: []string{"node-network-raed"}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `did you mean "node-network-read"`) {
		t.Fatalf("bad category: %v", err)
	}
	if !state.Local().Tripped.Has(routing.NodeNetworkRead) {
		t.Fatal("a rejected reset reset something")
	}
	resp, err := rc.GateReset(ctx, &pb.GateResetRequest{Categories: []string{"node-network-read"}})
	if err != nil || strings.Join(resp.GetResetCategories(), ",") != "node-network-read" || len(resp.GetTripped()) != 0 {
		t.Fatalf("reset %v, %v", resp, err)
	}
	if state.Local().Tripped != 0 {
		t.Fatal("still tripped")
	}
}
