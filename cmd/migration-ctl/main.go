// Command migration-ctl is the operator's tool for the PVE network API
// migration; see internal/ctl for the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/pve-migration/router/internal/ctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := ctl.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
