package pveschema_test

import (
	"strings"
	"testing"

	"github.com/pve-migration/router/internal/pveschema"
	"github.com/pve-migration/router/routing"
)

// Every method the router can compare or route has a schema in PVE 9.1,
// except the SDN prefix-list and route-map endpoints, which are newer
// than 9.1.3's schema (pve-api/README.md).
func TestRouterTemplatesHaveSchema(t *testing.T) {
	c, err := pveschema.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, tmpl := range routing.Templates() {
		for _, m := range routing.TemplateMethods(tmpl) {
			newer := strings.Contains(tmpl, "/prefix-lists") || strings.Contains(tmpl, "/route-maps")
			if got := c.Has(tmpl, m); got == newer {
				t.Errorf("Has(%q, %s) = %v", tmpl, m, got)
			}
			if !newer {
				checked++
			}
		}
	}
	if checked < 80 {
		t.Fatalf("only %d methods checked", checked)
	}
}
