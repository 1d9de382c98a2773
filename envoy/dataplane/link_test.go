package dataplane

import "testing"

// TestOverInProcessLink runs the data plane's ext_proc tests with the
// decision service behind the in-process link (internal/extproclocal)
// that the router uses without --ext-proc, instead of gRPC: the data
// plane must behave the same on both paths, failures (timeouts, errors,
// spurious answers, fail-open and fail-closed) included.
func TestOverInProcessLink(t *testing.T) {
	for _, c := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"ExtProcMessages", TestExtProcMessages},
		{"HeadersToUpstream", TestHeadersToUpstream},
		{"MutationRules", TestMutationRules},
		{"ExtProcFailures", TestExtProcFailures},
		{"BufferedBody", TestBufferedBody},
		{"ImmediateResponse", TestImmediateResponse},
		{"RetryPolicy", TestRetryPolicy},
		{"PhaseMatrix", TestPhaseMatrixThroughDataPlane},
		{"LivePhaseChangeAndRollback", TestLivePhaseChangeAndRollback},
		{"RustFaults", TestRustFaults},
		{"Rust501WriteServedByPerlOnce", TestRust501WriteServedByPerlOnce},
		{"ClientBackendHeaderNeverReachesRust", TestClientBackendHeaderNeverReachesRust},
		{"WriteNeverReplayedByTransport", TestWriteNeverReplayedByTransport},
		// The second round: the extjs upstream stage (its gRPC metadata
		// must reach the Processor over the link too), writes applied and
		// dropped, PUT typing by the current interface, websockets.
		{"ExtjsFallback", TestExtjsFallback},
		{"WriteNeverReplayedAfterApply", TestWriteNeverReplayedAfterApply},
		{"PutTypedByCurrentInterface", TestPutTypedByCurrentInterface},
		{"WebsocketUpgradeGoesToPerl", TestWebsocketUpgradeGoesToPerl},
	} {
		t.Run(c.name, c.run)
	}
}
