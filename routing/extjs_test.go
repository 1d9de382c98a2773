package routing

import "testing"

func TestExtjsFailureStatus(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		status int
		ok     bool
	}{
		{"die", `{"data":null,"message":"boom\n","success":0,"status":500}`, 500, true},
		{"bad gateway", `{"success":0,"status":502}`, 502, true},
		{"status as string", `{"success":0,"status":"503"}`, 503, true},
		{"success false", `{"success":false,"status":500}`, 500, true},
		{"success absent", `{"status":500,"data":null}`, 500, true},
		{"parameter error is an answer", `{"success":0,"status":400,"errors":{"iface":"interface does not exist"}}`, 0, false},
		{"success", `{"success":1,"data":[]}`, 0, false},
		{"success true with status", `{"success":true,"status":500}`, 0, false},
		{"no status", `{"success":0}`, 0, false},
		{"status out of range", `{"success":0,"status":700}`, 0, false},
		{"not json", `<html>500</html>`, 0, false},
		{"array", `[{"success":0,"status":500}]`, 0, false},
		{"truncated", `{"success":0,"status":5`, 0, false},
		{"empty", ``, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, ok := ExtjsFailureStatus([]byte(tt.body))
			if s != tt.status || ok != tt.ok {
				t.Errorf("ExtjsFailureStatus(%s) = %d, %v; want %d, %v", tt.body, s, ok, tt.status, tt.ok)
			}
		})
	}
}

func TestExtjsRetriable(t *testing.T) {
	on := DefaultPolicy()
	off := DefaultPolicy()
	off.FallbackEnabled = false
	no := false
	endpointOff := DefaultPolicy()
	endpointOff.Endpoints = map[string]EndpointRule{"/nodes/{node}/network": {FallbackOnError: &no}}
	tests := []struct {
		name   string
		p      Policy
		method string
		path   string
		want   bool
	}{
		{"extjs GET", on, "GET", "/api2/extjs/nodes/pve1/network", true},
		{"extjs GET of an interface", on, "GET", "/api2/extjs/nodes/pve1/network/eno1", true},
		{"json GET", on, "GET", "/api2/json/nodes/pve1/network", false},
		{"extjs write", on, "PUT", "/api2/extjs/nodes/pve1/network/eno1", false},
		{"extjs HEAD", on, "HEAD", "/api2/extjs/nodes/pve1/network", false},
		{"not network", on, "GET", "/api2/extjs/version", false},
		{"fallback off", off, "GET", "/api2/extjs/nodes/pve1/network", false},
		{"endpoint fallback off", endpointOff, "GET", "/api2/extjs/nodes/pve1/network", false},
		{"other endpoint keeps fallback", endpointOff, "GET", "/api2/extjs/nodes/pve1/network/eno1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ExtjsRetriable(&tt.p, tt.method, tt.path); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
