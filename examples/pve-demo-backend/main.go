// Command pve-demo-backend is a demo Proxmox VE network API that plays the
// Perl pveproxy or the Rust daemon behind the migration router. All logic is
// in package pvedemo so tests can run it without a process boundary.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/pve-migration/router/examples/pvedemo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := pvedemo.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, pvedemo.ErrCrashed) {
		fmt.Fprintln(os.Stderr, "pve-demo-backend:", err)
	}
	os.Exit(pvedemo.ExitCode(err))
}
