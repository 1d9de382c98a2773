// Command migration-router is the PVE network migration decision service:
// Envoy's ext_proc, gRPC health, the control API and admin HTTP, and
// optionally the embedded data plane. See internal/routerapp.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/pve-migration/router/internal/routerapp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := routerapp.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
