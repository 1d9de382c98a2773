package dataplane

import "testing"

// TestWebsocketUpgradeGoesToPerl is finding 6 of issue 13: envoy.yaml said
// websockets always go to perl, but an upgrade on GET .../network went to
// rust. PVE's websockets are console and terminal proxies, never network
// API: the decision service answers perl for any upgrade and the rust
// routes do not match one, so even a network path goes to perl, in every
// phase that would send its reads to rust.
func TestWebsocketUpgradeGoesToPerl(t *testing.T) {
	for _, phase := range []string{"rust-read-only", "rust-full"} {
		t.Run(phase, func(t *testing.T) {
			e := newEnv(t, envOptions{phase: phase})
			for _, path := range []string{netPath, "/api2/extjs/nodes/pve1/network", "/api2/json/nodes/pve1/qemu/100/vncwebsocket"} {
				r, err := e.try("GET", path, nil, map[string]string{"Upgrade": "websocket", "Connection": "Upgrade",
					"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"})
				if err != nil {
					t.Fatalf("GET %s: %v", path, err)
				}
				if r.servedBy != "perl" {
					t.Errorf("upgrade GET %s: served by %q (%d), want perl", path, r.servedBy, r.status)
				}
				if n := seen(e.rust, "GET", path); n != 0 {
					t.Errorf("rust saw the upgrade GET %s %d times", path, n)
				}
			}
			// The same read without an upgrade is rust's.
			if r := e.do("GET", netPath, nil, nil); r.servedBy != "rust" {
				t.Errorf("plain GET served by %q, want rust", r.servedBy)
			}
		})
	}
}
