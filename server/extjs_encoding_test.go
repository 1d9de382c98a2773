package server_test

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"context"
	"io"
	"testing"
	"time"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/metadata"

	"github.com/pve-migration/router/routing"
	"github.com/pve-migration/router/server"
)

func compress(t *testing.T, enc string, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	var w io.WriteCloser
	switch enc {
	case "gzip":
		w = gzip.NewWriter(&b)
	case "deflate":
		w = zlib.NewWriter(&b)
	case "raw-deflate":
		w, _ = flate.NewWriter(&b, flate.DefaultCompression)
	default:
		return []byte(s)
	}
	if _, err := io.WriteString(w, s); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestUpstreamExtjsStageEncodings: the web UI always sends
// Accept-Encoding, so rust may answer compressed. A compressed extjs
// failure must still turn into its :status (and so fall back to perl); an
// encoding the stage cannot read is not asked for; a body that does not
// decode, or inflates past the limit, leaves the answer as it is.
func TestUpstreamExtjsStageEncodings(t *testing.T) {
	const failure = `{"data":null,"success":0,"status":500,"message":"boom"}`
	bomb := `{"success":0,"status":500,"pad":"` + string(bytes.Repeat([]byte("a"), 2<<20)) + `"}`
	cases := []struct {
		name       string
		header     string // Content-Encoding sent
		body       []byte
		wantBuffer bool
		wantStatus string
	}{
		{"gzip failure", "gzip", compress(t, "gzip", failure), true, "500"},
		{"x-gzip failure", "x-gzip", compress(t, "gzip", failure), true, "500"},
		{"GZIP in capitals", "GZIP", compress(t, "gzip", failure), true, "500"},
		{"deflate (zlib) failure", "deflate", compress(t, "deflate", failure), true, "500"},
		{"raw deflate failure", "deflate", compress(t, "raw-deflate", failure), true, "500"},
		{"identity failure", "identity", []byte(failure), true, "500"},
		{"gzip success", "gzip", compress(t, "gzip", `{"data":[],"success":1}`), true, ""},
		{"gzip that is not gzip", "gzip", []byte(failure), true, ""},
		{"gzip bomb over the limit", "gzip", compress(t, "gzip", bomb), true, ""},
		{"br is not read", "br", nil, false, ""},
		{"two codings are not read", "gzip, br", nil, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, snapshot(routing.RustReadOnly), harnessOpts{})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ctx = metadata.AppendToOutgoingContext(ctx, server.StageMetadataKey, server.StageUpstreamExtjs)
			st, err := extprocv3.NewExternalProcessorClient(h.conn).Process(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Send(upstreamHeaders("GET", "/api2/extjs/nodes/pve1/network", rustHost, "200", "content-encoding", tc.header)); err != nil {
				t.Fatal(err)
			}
			ans, err := st.Recv()
			if err != nil {
				t.Fatal(err)
			}
			buffered := ans.GetModeOverride().GetResponseBodyMode() == extprocfilterv3.ProcessingMode_BUFFERED
			if buffered != tc.wantBuffer {
				t.Fatalf("asks for the body: %v, want %v", buffered, tc.wantBuffer)
			}
			if !buffered {
				return
			}
			if err := st.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: tc.body, EndOfStream: true}}}); err != nil {
				t.Fatal(err)
			}
			ans, err = st.Recv()
			if err != nil {
				t.Fatal(err)
			}
			var got string
			for _, sh := range ans.GetResponseBody().GetResponse().GetHeaderMutation().GetSetHeaders() {
				if sh.GetHeader().GetKey() == ":status" {
					got = string(sh.GetHeader().GetRawValue())
				}
			}
			if got != tc.wantStatus {
				t.Errorf(":status %q, want %q", got, tc.wantStatus)
			}
			if ans.GetResponseBody().GetResponse().GetBodyMutation() != nil {
				t.Errorf("the stage changed the body")
			}
			_ = st.CloseSend()
		})
	}
}
