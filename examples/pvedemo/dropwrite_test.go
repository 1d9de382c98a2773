package pvedemo

import (
	"net/http"
	"strings"
	"testing"
)

// TestDropAfterWrite: the drop_after_write fault applies a write and then
// closes only that connection: the client gets no answer, the write is
// counted as applied, reads are still answered and the listener stays open.
func TestDropAfterWrite(t *testing.T) {
	b := startBackend(t, Options{Flavor: FlavorRust})
	postFaults(t, b, `{"drop_after_write":true}`)
	var f Faults
	b.debugJSON(t, "/debug/faults", &f)
	if !f.DropAfterWrite {
		t.Fatalf("GET /debug/faults after setting drop_after_write: %+v", f)
	}
	req, err := http.NewRequest("POST", b.url+netPath, strings.NewReader(form("iface", "eth9", "type", "eth").Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("the write was answered (%d), want a dropped connection", resp.StatusCode)
	}
	if n := b.srv.Applied()["POST /nodes/{node}/network"]; n != 1 {
		t.Errorf("applied %d, want 1", n)
	}
	if r := b.do(t, "GET", netPath+"/eth9", nil); r.status != 200 {
		t.Errorf("GET of the written interface after the drop: %d %s", r.status, r.raw)
	}
	postFaults(t, b, `{"drop_after_write":false}`)
	if r := b.do(t, "PUT", netPath+"/eth9", form("type", "eth", "comments", "x")); r.status != 200 {
		t.Errorf("PUT with the fault off: %d %s", r.status, r.raw)
	}
}
