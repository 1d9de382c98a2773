package envoy

import (
	"slices"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	ext_procv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// TestExtjsFallbackConfig checks, in both bootstraps, what the contract's
// "Extjs (web UI) fallback" needs from Envoy (envoy-facts §9): web UI GETs
// to rust go through a cluster whose upstream ext_proc stage may only set
// :status, fails open, reads only the response side and asks for bodies
// per request; reads retry on x-pve-fallback, writes never do; the marker
// never reaches a client.
func TestExtjsFallbackConfig(t *testing.T) {
	for _, c := range configs() {
		t.Run(c.name, func(t *testing.T) {
			b := load(t, c.data)
			rt, err := NewRouteTable(b)
			if err != nil {
				t.Fatal(err)
			}
			h := map[string]string{"x-pve-backend": "rust"}
			extjs, _ := rt.Match("GET", "/api2/extjs/nodes/pve1/network", h)
			if extjs.Cluster != "rust_then_perl_extjs" || !slices.Contains(extjs.RetryOn, "5xx") || !slices.Contains(extjs.RetriableHeaders, "x-pve-fallback") {
				t.Errorf("extjs GET plan %+v", extjs)
			}
			for _, m := range []string{"POST", "PUT", "DELETE"} {
				w, _ := rt.Match(m, "/api2/extjs/nodes/pve1/network", h)
				if w.Cluster == "rust_then_perl_extjs" || slices.Contains(w.RetryOn, "retriable-headers") || slices.Contains(w.RetryOn, "5xx") {
					t.Errorf("extjs %s plan %+v: a write must never be retried on its answer", m, w)
				}
			}
			vh := hcmOf(t, b).GetRouteConfig().GetVirtualHosts()[0]
			if !slices.Contains(vh.GetResponseHeadersToRemove(), "x-pve-fallback") {
				t.Errorf("the virtual host does not remove x-pve-fallback: %v", vh.GetResponseHeadersToRemove())
			}
			var cl *clusterv3.Cluster
			for _, x := range b.GetStaticResources().GetClusters() {
				if x.GetName() == "rust_then_perl_extjs" {
					cl = x
				}
			}
			if cl == nil {
				t.Fatal("no cluster rust_then_perl_extjs")
			}
			po, err := unpack[*upstreamhttpv3.HttpProtocolOptions]("http options", cl.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"])
			if err != nil {
				t.Fatal(err)
			}
			ep, err := unpack[*ext_procv3.ExternalProcessor]("upstream ext_proc", po.GetHttpFilters()[0].GetTypedConfig())
			if err != nil {
				t.Fatal(err)
			}
			pm := ep.GetProcessingMode()
			switch {
			case !ep.GetFailureModeAllow():
				t.Error("the upstream stage must fail open")
			case ep.GetMessageTimeout().AsDuration() > 500*time.Millisecond:
				t.Errorf("message_timeout %v: too long for a stage that can only help", ep.GetMessageTimeout().AsDuration())
			case pm.GetRequestHeaderMode() != ext_procv3.ProcessingMode_SKIP || pm.GetResponseBodyMode() != ext_procv3.ProcessingMode_NONE:
				t.Errorf("processing mode %v: want request headers SKIP and no body unless overridden", pm)
			case !ep.GetAllowModeOverride() || len(ep.GetAllowedOverrideModes()) != 1 || ep.GetAllowedOverrideModes()[0].GetResponseBodyMode() != ext_procv3.ProcessingMode_BUFFERED:
				t.Errorf("overrides %v: want exactly response BUFFERED", ep.GetAllowedOverrideModes())
			case !ep.GetMutationRules().GetDisallowAll().GetValue() || ep.GetMutationRules().GetAllowExpression().GetRegex() != "^:status$":
				t.Errorf("mutation rules %v: the stage may set :status only", ep.GetMutationRules())
			case !slices.Contains(ep.GetResponseAttributes(), "xds.upstream_host_metadata"):
				t.Error("the stage cannot tell rust's attempt from perl's")
			}
			var stage bool
			for _, md := range ep.GetGrpcService().GetInitialMetadata() {
				stage = stage || md.GetKey() == "x-pve-ext-proc-stage" && md.GetValue() == "upstream-extjs"
			}
			if !stage {
				t.Error("the stage's streams do not carry x-pve-ext-proc-stage: upstream-extjs")
			}
		})
	}
}

// TestWebsocketsNeverMatchRust: a request with an upgrade header takes the
// perl route whatever x-pve-backend says (issue 13, finding 6).
func TestWebsocketsNeverMatchRust(t *testing.T) {
	for _, c := range configs() {
		t.Run(c.name, func(t *testing.T) {
			rt, err := NewRouteTable(load(t, c.data))
			if err != nil {
				t.Fatal(err)
			}
			for _, path := range []string{"/api2/json/nodes/pve1/network", "/api2/extjs/nodes/pve1/network", "/api2/json/nodes/pve1/qemu/100/vncwebsocket"} {
				for _, m := range []string{"GET", "POST"} {
					p, _ := rt.Match(m, path, map[string]string{"x-pve-backend": "rust", "upgrade": "websocket", "connection": "Upgrade"})
					if p.Name != "perl_default" {
						t.Errorf("%s %s upgrade: route %s, want perl_default", m, path, p.Name)
					}
				}
			}
		})
	}
}
