package ctl

import (
	"io/fs"
	"os"
)

// PackagedRouterSocket is where the Debian package's router listens
// (/etc/default/pve-migration-router: --grpc-listen
// unix:/run/pve-migration/extproc.sock, the socket envoy-pve-host.yaml
// expects). systemd removes its directory when the unit stops, so the
// socket exists only while that router runs.
const PackagedRouterSocket = "/run/pve-migration/extproc.sock"

// packagedSocket is PackagedRouterSocket; tests point it elsewhere.
var packagedSocket = PackagedRouterSocket

// defaultRouter is --router's default: the packaged router's socket when
// it is there, else DefaultRouterAddr. Without it, every --router command
// on a node installed from the package (status above all, the check an
// operator runs after a rollback) asked 127.0.0.1:50051, found nobody,
// and reported "router not reachable" while the router ran.
func defaultRouter() string {
	if fi, err := os.Stat(packagedSocket); err == nil && fi.Mode().Type() == fs.ModeSocket {
		return "unix:" + packagedSocket
	}
	return DefaultRouterAddr
}
