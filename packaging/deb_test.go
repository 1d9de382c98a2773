package packaging

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const pkgName = "pve-migration-router"

// debPath is the package under test: PVE_MIGRATION_DEB, which `make
// test-deb` (scripts/deb.sh test) sets after building and linting it.
func debPath(t *testing.T) string {
	t.Helper()
	deb := os.Getenv("PVE_MIGRATION_DEB")
	if deb == "" {
		t.Skip("PVE_MIGRATION_DEB is not set: `make test-deb` builds the package, runs lintian and this test")
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not on PATH (Debian's dpkg); scripts/deb.sh deps installs what the test needs")
	}
	abs, err := filepath.Abs(deb)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Fatalf("PVE_MIGRATION_DEB: %v", err)
	}
	return abs
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := runErr(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// entry is one line of dpkg-deb --contents.
type entry struct {
	mode, owner, path string
}

func contents(t *testing.T, deb string) map[string]entry {
	t.Helper()
	m := map[string]entry{}
	for _, line := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "--contents", deb)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb --contents: unexpected line %q", line)
		}
		p := strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")
		if p == "" {
			p = "/"
		}
		m[p] = entry{mode: f[0], owner: f[1], path: p}
	}
	return m
}

// TestDebPackage checks a built package the way an operator meets it: the
// control fields and file name of the contract, every file it must ship and
// none under /etc/pve, an install with dpkg into a throwaway root (maintainer
// scripts included), the installed binaries working on the shipped example
// config, a reinstall, removal and purge.
func TestDebPackage(t *testing.T) {
	deb := debPath(t)

	field := func(name string) string {
		return strings.TrimSpace(run(t, "dpkg-deb", "--field", deb, name))
	}
	version := field("Version")
	t.Run("control", func(t *testing.T) {
		if got := field("Package"); got != pkgName {
			t.Errorf("Package %q, want %q", got, pkgName)
		}
		if got := field("Architecture"); got != "amd64" {
			t.Errorf("Architecture %q, want amd64", got)
		}
		if want := pkgName + "_" + version + "_amd64.deb"; filepath.Base(deb) != want {
			t.Errorf("file name %q, want %q (dist/%s_VERSION_amd64.deb)", filepath.Base(deb), want, pkgName)
		}
		if filepath.Base(filepath.Dir(deb)) != "dist" {
			t.Errorf("package %s is not in dist/", deb)
		}
		// An empty root has no packages: the package must install without
		// dependencies (the binaries need no shared library).
		if got := field("Depends") + field("Pre-Depends"); got != "" {
			t.Errorf("Depends %q: the binaries are self-contained", got)
		}
	})

	files := contents(t, deb)
	t.Run("contents", func(t *testing.T) {
		want := []struct {
			path, mode string
		}{
			{"/usr/bin/migration-router", "-rwxr-xr-x"},
			{"/usr/bin/migration-ctl", "-rwxr-xr-x"},
			{"/lib/systemd/system/pve-migration-router.service", "-rw-r--r--"},
			{"/etc/default/pve-migration-router", "-rw-r--r--"},
			{"/usr/share/bash-completion/completions/migration-ctl", "-rw-r--r--"},
			{"/usr/share/zsh/vendor-completions/_migration-ctl", "-rw-r--r--"},
			{"/usr/share/man/man1/migration-router.1.gz", "-rw-r--r--"},
			{"/usr/share/man/man1/migration-ctl.1.gz", "-rw-r--r--"},
			{"/usr/share/doc/pve-migration-router/copyright", "-rw-r--r--"},
			{"/usr/share/doc/pve-migration-router/changelog.gz", "-rw-r--r--"},
			{"/usr/share/doc/pve-migration-router/README.md.gz", "-rw-r--r--"},
			{"/usr/share/doc/pve-migration-router/runbook.md.gz", "-rw-r--r--"},
			{"/usr/share/doc/pve-migration-router/examples/network-migration.conf", "-rw-r--r--"},
			{"/usr/share/doc/pve-migration-router/examples/phase-perl-only.conf", "-rw-r--r--"},
			{"/usr/share/doc/pve-migration-router/examples/envoy/envoy-pve-host.yaml", "-rw-r--r--"},
			{"/usr/share/doc/pve-migration-router/examples/prometheus/rules.yml", "-rw-r--r--"},
			{"/usr/share/doc/pve-migration-router/examples/prometheus/prometheus.yml", "-rw-r--r--"},
			{"/usr/share/doc/pve-migration-router/examples/grafana/pve-migration-dashboard.json", "-rw-r--r--"},
			{"/usr/share/doc/pve-migration-router/examples/grafana/provisioning/datasources/prometheus.yaml", "-rw-r--r--"},
			{"/usr/share/doc/pve-migration-router/examples/grafana/provisioning/dashboards/pve-migration.yaml", "-rw-r--r--"},
		}
		for _, w := range want {
			t.Run(w.path, func(t *testing.T) {
				e, ok := files[w.path]
				if !ok {
					t.Fatalf("the package does not ship %s", w.path)
				}
				if e.mode != w.mode || e.owner != "root/root" {
					t.Errorf("%s is %s %s, want %s root/root", w.path, e.mode, e.owner, w.mode)
				}
			})
		}
		for p := range files {
			// pmxcfs belongs to the cluster: the package never ships,
			// and so never overwrites, anything there.
			if p == "/etc/pve" || strings.HasPrefix(p, "/etc/pve/") {
				t.Errorf("the package ships %s, under /etc/pve", p)
			}
		}
	})

	ctrl := t.TempDir()
	run(t, "dpkg-deb", "--control", deb, ctrl)
	t.Run("maintainer scripts", func(t *testing.T) {
		conffiles, err := os.ReadFile(filepath.Join(ctrl, "conffiles"))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Fields(string(conffiles)); !slices.Equal(got, []string{"/etc/default/pve-migration-router"}) {
			t.Errorf("conffiles %q", got)
		}
		for _, s := range []string{"postinst", "prerm", "postrm"} {
			body, err := os.ReadFile(filepath.Join(ctrl, s))
			if err != nil {
				t.Fatal(err)
			}
			if out, err := runErr("sh", "-n", filepath.Join(ctrl, s)); err != nil {
				t.Errorf("%s: sh -n: %v\n%s", s, err, out)
			}
			for _, line := range strings.Split(string(body), "\n") {
				if code, _, _ := strings.Cut(line, "#"); strings.Contains(code, "/etc/pve") {
					t.Errorf("%s touches /etc/pve: %q", s, line)
				}
			}
		}
		testPostinstNeverStarts(t, filepath.Join(ctrl, "postinst"))
	})

	root := t.TempDir()
	run(t, "dpkg-deb", "--extract", deb, root)
	t.Run("systemd unit", func(t *testing.T) {
		unit, err := os.ReadFile(filepath.Join(root, "lib/systemd/system/pve-migration-router.service"))
		if err != nil {
			t.Fatal(err)
		}
		keys := unitKeys(string(unit))
		for _, want := range []struct{ key, prefix string }{
			{"ExecStart", "/usr/bin/migration-router "},
			{"ProtectSystem", "strict"},
			{"NoNewPrivileges", "yes"},
			{"RuntimeDirectory", "pve-migration"},
			{"Restart", "on-failure"},
			{"ConditionPathExists", "/etc/pve/network-migration.conf"},
			{"ReadOnlyPaths", "/etc/pve"},
			{"ReadWritePaths", "-/etc/pve/nodes"},
			{"CapabilityBoundingSet", ""},
			{"WantedBy", "multi-user.target"},
		} {
			if !slices.ContainsFunc(keys[want.key], func(v string) bool { return strings.HasPrefix(v, want.prefix) }) {
				t.Errorf("unit: %s=%q, want a value starting %q", want.key, keys[want.key], want.prefix)
			}
		}
		// The flags the unit passes must be the router's: run it with them
		// (and --version) so that a renamed flag fails here, not on a node.
		def, err := os.ReadFile(filepath.Join(root, "etc/default/pve-migration-router"))
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^MIGRATION_ROUTER_ARGS="([^"]*)"`).FindSubmatch(def)
		if m == nil {
			t.Fatal("/etc/default/pve-migration-router sets no MIGRATION_ROUTER_ARGS")
		}
		args := append(strings.Fields(strings.TrimPrefix(keys["ExecStart"][0], "/usr/bin/migration-router ")), strings.Fields(string(m[1]))...)
		args = slices.DeleteFunc(args, func(a string) bool { return a == "$MIGRATION_ROUTER_ARGS" })
		out := run(t, filepath.Join(root, "usr/bin/migration-router"), append(args, "--version")...)
		if strings.TrimSpace(out) != "migration-router "+version {
			t.Errorf("migration-router %s --version = %q, want the package version %s", strings.Join(args, " "), out, version)
		}
		// systemd's own parser: an unknown or misspelt directive is only a
		// warning at boot, and then the hardening silently is not there.
		if sa, err := exec.LookPath("systemd-analyze"); err == nil {
			copyDir := t.TempDir()
			// verify checks that ExecStart exists: point it into the extracted tree.
			body := strings.ReplaceAll(string(unit), "ExecStart=/usr/bin/", "ExecStart="+filepath.Join(root, "usr/bin")+"/")
			copyPath := filepath.Join(copyDir, "pve-migration-router.service")
			if err := os.WriteFile(copyPath, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := runErr(sa, "verify", "--man=no", copyPath)
			if err != nil || strings.Contains(out, "Unknown") || strings.Contains(out, "Failed") || strings.Contains(out, "Invalid") {
				t.Errorf("systemd-analyze verify: %v\n%s", err, out)
			}
		}
	})

	t.Run("bash completion", func(t *testing.T) {
		bash, err := exec.LookPath("bash")
		if err != nil {
			t.Skip("bash not on PATH")
		}
		out := run(t, bash, "-c", "source "+filepath.Join(root, "usr/share/bash-completion/completions/migration-ctl")+" && complete -p migration-ctl")
		if !strings.Contains(out, "migration-ctl") {
			t.Errorf("the completion file registers nothing for migration-ctl: %q", out)
		}
	})

	t.Run("dpkg install, reinstall, remove, purge", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("dpkg --root needs root here; the contents checks above ran")
		}
		inst := t.TempDir()
		for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "etc/pve"} {
			if err := os.MkdirAll(filepath.Join(inst, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, f := range []string{"var/lib/dpkg/status", "var/lib/dpkg/available"} {
			if err := os.WriteFile(filepath.Join(inst, f), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		// A cluster file that the package must leave alone.
		pveConf := filepath.Join(inst, "etc/pve/network-migration.conf")
		if err := os.WriteFile(pveConf, []byte("phase = \"perl-only\"\n"), 0o640); err != nil {
			t.Fatal(err)
		}
		// Maintainer scripts run without chroot, with DPKG_ROOT set: they must
		// then leave the host (its systemd) alone.
		dpkg := func(args ...string) string {
			t.Helper()
			return run(t, "dpkg", append([]string{"--root=" + inst, "--force-script-chrootless", "--log=/dev/null"}, args...)...)
		}
		dpkg("--install", deb)
		if st := run(t, "dpkg", "--root="+inst, "--status", pkgName); !strings.Contains(st, "Status: install ok installed") {
			t.Fatalf("after dpkg -i:\n%s", st)
		}

		bin := filepath.Join(inst, "usr/bin")
		if out := run(t, filepath.Join(bin, "migration-router"), "--version"); strings.TrimSpace(out) != "migration-router "+version {
			t.Errorf("installed migration-router --version = %q, want %s", out, version)
		}
		if out := run(t, filepath.Join(bin, "migration-router"), "--help"); !strings.Contains(out, "-grpc-listen") {
			t.Errorf("installed migration-router --help lacks -grpc-listen:\n%s", out)
		}
		if out := run(t, filepath.Join(bin, "migration-ctl"), "--help"); !strings.Contains(out, "set-phase") {
			t.Errorf("installed migration-ctl --help lacks set-phase:\n%s", out)
		}
		examples := filepath.Join(inst, "usr/share/doc/pve-migration-router/examples")
		confs, _ := filepath.Glob(filepath.Join(examples, "*.conf"))
		if len(confs) < 2 {
			t.Fatalf("examples: %d config files", len(confs))
		}
		for _, c := range confs {
			t.Run("validate "+filepath.Base(c), func(t *testing.T) {
				run(t, filepath.Join(bin, "migration-ctl"), "validate", "--config", c)
			})
		}
		// The shipped example config routes as its phase says.
		out := run(t, filepath.Join(bin, "migration-ctl"), "explain", "GET", "/api2/json/nodes/pve1/network",
			"--config", filepath.Join(examples, "network-migration.conf"), "--json")
		var ex struct{ Backend, Category, Phase string }
		if err := json.Unmarshal([]byte(out), &ex); err != nil {
			t.Fatalf("explain --json: %v\n%s", err, out)
		}
		if ex.Backend != "rust" || ex.Category != "node-network-read" || ex.Phase != "rust-read-only" {
			t.Errorf("explain on the shipped example: %+v, want rust / node-network-read / rust-read-only", ex)
		}

		// An operator's edit of the conffile survives a reinstall.
		defaults := filepath.Join(inst, "etc/default/pve-migration-router")
		edited := []byte("MIGRATION_ROUTER_ARGS=\"--admin-listen 127.0.0.1:3999\"\n")
		if err := os.WriteFile(defaults, edited, 0o644); err != nil {
			t.Fatal(err)
		}
		dpkg("--force-confold", "--install", deb)
		if got, _ := os.ReadFile(defaults); !bytes.Equal(got, edited) {
			t.Errorf("reinstall replaced the edited conffile: %q", got)
		}

		dpkg("--remove", pkgName)
		if _, err := os.Stat(filepath.Join(bin, "migration-router")); !os.IsNotExist(err) {
			t.Errorf("after remove, migration-router is still there (%v)", err)
		}
		if _, err := os.Stat(defaults); err != nil {
			t.Errorf("remove deleted the conffile: %v", err)
		}
		dpkg("--purge", pkgName)
		if _, err := os.Stat(defaults); !os.IsNotExist(err) {
			t.Errorf("after purge, %s is still there (%v)", defaults, err)
		}
		if got, err := os.ReadFile(pveConf); err != nil || string(got) != "phase = \"perl-only\"\n" {
			t.Errorf("install/purge changed /etc/pve/network-migration.conf: %q, %v", got, err)
		}
	})
}

// unitKeys reads a systemd unit's Key=Value lines (continuations joined).
func unitKeys(unit string) map[string][]string {
	keys := map[string][]string{}
	var cur string
	for _, line := range strings.Split(unit, "\n") {
		line = strings.TrimSpace(line)
		if cur != "" {
			line = cur + " " + line
			cur = ""
		}
		if strings.HasSuffix(line, "\\") {
			cur = strings.TrimSuffix(line, "\\")
			continue
		}
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok {
			keys[strings.TrimSpace(k)] = append(keys[strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return keys
}

// testPostinstNeverStarts runs postinst as dpkg would on a real system
// (DPKG_ROOT empty), with deb-systemd-helper, deb-systemd-invoke and
// systemctl replaced by recorders, for a fresh install, a second run of the
// same step and an upgrade: it may register and reload, but it never enables
// or starts the router (there may be no config yet).
func testPostinstNeverStarts(t *testing.T, postinst string) {
	t.Helper()
	stubs := t.TempDir()
	calls := filepath.Join(stubs, "calls")
	for _, name := range []string{"deb-systemd-helper", "deb-systemd-invoke", "systemctl"} {
		script := "#!/bin/sh\necho \"" + name + " $*\" >>" + calls + "\n"
		if err := os.WriteFile(filepath.Join(stubs, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"fresh install", []string{"configure", ""}},
		{"configure again", []string{"configure", ""}},
		{"upgrade", []string{"configure", "0.0.1"}},
		{"abort-upgrade", []string{"abort-upgrade", "0.0.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_ = os.Remove(calls)
			cmd := exec.Command("sh", append([]string{postinst}, tc.args...)...)
			cmd.Env = []string{"PATH=" + stubs + ":/usr/sbin:/usr/bin:/sbin:/bin"}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("postinst %q: %v\n%s", tc.args, err, out)
			}
			got, _ := os.ReadFile(calls)
			for _, line := range strings.Split(strings.TrimSpace(string(got)), "\n") {
				f := strings.Fields(line)
				if len(f) < 2 {
					continue
				}
				if slices.Contains(f[1:], "enable") || slices.Contains(f[1:], "start") || slices.Contains(f[1:], "restart") {
					t.Errorf("postinst %q ran %q: it must not enable or start the router", tc.args, line)
				}
			}
			if tc.args[0] == "configure" && !strings.Contains(string(got), "deb-systemd-helper update-state pve-migration-router.service") {
				t.Errorf("postinst %q did not register the unit (calls: %q)", tc.args, got)
			}
		})
	}
	if err := os.WriteFile(calls, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// Into another root (dpkg --root): nothing runs on this system.
	cmd := exec.Command("sh", postinst, "configure", "")
	cmd.Env = []string{"PATH=" + stubs + ":/usr/sbin:/usr/bin:/sbin:/bin", "DPKG_ROOT=/nonexistent"}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("postinst with DPKG_ROOT: %v\n%s", err, out)
	}
	if got, _ := os.ReadFile(calls); len(got) != 0 {
		t.Errorf("postinst with DPKG_ROOT set called %q", got)
	}
}
