package server_test

import "testing"

// TestConformanceInProcess runs the ext_proc conformance tests against the
// Processor over the in-process link (internal/extproclocal) that the
// router's embedded data plane uses without --ext-proc. newHarness sees
// the test name and connects its Envoy model through the link, so both
// paths are held to the same expectations: same answers, same order, same
// stream ends and the same Process return values.
func TestConformanceInProcess(t *testing.T) {
	for _, c := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"PhaseMatrix", TestPhaseMatrixOverWire},
		{"BodyModeOverride", TestBodyModeOverride},
		{"BodyOverrideRefused", TestBodyOverrideRefused},
		{"ClientBackendHeaderIgnored", TestClientBackendHeaderIgnored},
		{"OutcomeReporting", TestOutcomeReporting},
		{"ProtocolErrors", TestProtocolErrors},
		{"EarlyClose", TestEarlyClose},
		{"MessageTimeoutFailsOpen", TestMessageTimeoutFailsOpen},
		{"SnapshotPerRequest", TestSnapshotPerRequest},
		{"NilSnapshotIsPerl", TestNilSnapshotIsPerl},
		{"RandomSequencesNeverPanic", TestRandomSequencesNeverPanic},
		{"DeleteLookup", TestDeleteLookupOverWire},
		{"ConcurrentStreams", TestConcurrentStreams},
		{"NoGoroutineLeak", TestNoGoroutineLeak},
	} {
		t.Run(c.name, c.run)
	}
}
