// Package ctl is migration-ctl, the operator's tool for the PVE network
// API migration: it shows where traffic goes (status, explain), changes the
// phase and the fallback switch in the cluster-wide config file (set-phase,
// fallback), checks the file with the router's own loader (validate) and
// checks that both APIs answer (test-perl, test-rust).
//
// Everything runs through Run so that tests drive the real command lines,
// exit codes and outputs without a process boundary; cmd/migration-ctl only
// wires signals and os.Exit.
package ctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/pve-migration/router/internal/config"
	pb "github.com/pve-migration/router/proto/pvemigration/v1"
	"github.com/pve-migration/router/routing"
)

// Exit statuses of the contract. Scripts tell "the check failed" (1) from
// "you called me wrong" (2).
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

const prog = "migration-ctl"

// app is one invocation: its I/O and environment, injected so that tests
// never touch the real ones.
type app struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	// style colours stdout; it is off unless stdout is a terminal.
	style style
	// killSwitch is status's --kill-switch, read when the router is not
	// reachable.
	killSwitch string
	// target is an edit command's check of the file it writes.
	target editTarget
	// routerSeen is the running router's status as checkTarget found it
	// (nil: not asked or not reachable); see envpin.go.
	routerSeen *pb.GetStatusResponse
}

// command is one subcommand. define registers the command's own flags and
// returns the function that runs with them; help and completion call define
// without running anything, so flags are declared in exactly one place.
type command struct {
	name     string
	args     string // positional arguments for the synopsis
	summary  string
	details  string
	examples []string
	minArgs  int
	maxArgs  int
	define   func(fs *flag.FlagSet) runFunc
}

// runFunc runs a command with its parsed flags, the resolved --config and
// the positional arguments.
type runFunc func(a *app, cfg configFlag, args []string) int

// configFlag is --config as given, resolved the way the router resolves it.
type configFlag struct {
	value string
}

// resolve returns the file and whether the operator named it (so it must
// exist), exactly as the router decides.
func (c configFlag) resolve(env func(string) string) (string, bool) {
	return config.ResolvePath(c.value, env)
}

// commands in the order the help lists them: the daily ones first.
var commands []*command

func init() {
	commands = []*command{
		statusCommand(), explainCommand(), validateCommand(), setPhaseCommand(), fallbackCommand(), killSwitchCommand(),
		testPerlCommand(), testRustCommand(), generateConfigCommand(), completionCommand(),
		planCommand(), advanceCommand(), gateCommand(),
		compareCommand(),
	}
}

func lookupCommand(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func commandNames() []string {
	names := make([]string, len(commands))
	for i, c := range commands {
		names[i] = c.name
	}
	return names
}

// Run executes migration-ctl with args (without the program name) and
// returns the exit status: 0 success, 1 failure, 2 usage error. env is
// os.Getenv in production; tests pass a map so the caller's environment
// (a PVE_NETWORK_MIGRATION_PHASE left over in a shell) never leaks in.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, env func(string) string) int {
	if env == nil {
		env = func(string) string { return "" }
	}
	a := &app{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr, getenv: env}
	a.style = newStyle(stdout, env)

	// Flags may come before the command too ("migration-ctl --config f
	// status"); they are handed to the command, which parses them.
	valued := describeCommands().valued
	var lead []string
	i := 0
	for ; i < len(args) && strings.HasPrefix(args[i], "-") && args[i] != "-"; i++ {
		switch name, _, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "="); {
		case name == "h" || name == "help":
			a.topUsage(a.stdout)
			return ExitOK
		case valued["--"+name] && !hasValue && i+1 < len(args):
			lead = append(lead, args[i], args[i+1])
			i++
		default:
			lead = append(lead, args[i])
		}
	}
	if i >= len(args) {
		if len(lead) > 0 {
			return a.usageError("", "no command given")
		}
		a.topUsage(a.stderr)
		return ExitUsage
	}
	name, rest := args[i], args[i+1:]
	if name == "help" {
		if len(rest) == 0 {
			a.topUsage(a.stdout)
			return ExitOK
		}
		name, rest = rest[0], []string{"--help"}
	}
	cmd := lookupCommand(name)
	if cmd == nil {
		msg := fmt.Sprintf("unknown command %q", name)
		if s := routing.Suggest(name, commandNames()); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		}
		return a.usageError("", msg)
	}
	return a.runCommand(cmd, append(lead, rest...))
}

func (a *app) runCommand(cmd *command, args []string) int {
	fs := flag.NewFlagSet(prog+" "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors and usage are printed by us, in our words
	var cfg configFlag
	fs.StringVar(&cfg.value, "config", "", "the config file `PATH` (default: $"+config.EnvConfig+", else "+config.DefaultPath+")")
	run := cmd.define(fs)
	pos, err := parseInterspersed(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		a.commandUsage(a.stdout, cmd, fs)
		return ExitOK
	case err != nil:
		return a.usageError(cmd.name, err.Error())
	case len(pos) < cmd.minArgs:
		return a.usageError(cmd.name, "missing argument: usage: "+synopsis(cmd))
	case cmd.maxArgs >= 0 && len(pos) > cmd.maxArgs:
		return a.usageError(cmd.name, fmt.Sprintf("unexpected argument %q: usage: %s", pos[cmd.maxArgs], synopsis(cmd)))
	}
	return run(a, cfg, pos)
}

// usageError reports a wrong call and points at the help, exit status 2.
func (a *app) usageError(cmd, msg string) int {
	where, help := prog, prog+" --help"
	if cmd != "" {
		where, help = prog+" "+cmd, prog+" "+cmd+" --help"
	}
	fmt.Fprintf(a.stderr, "%s: %s\nRun '%s' for usage.\n", where, msg, help)
	return ExitUsage
}

// failf prints an error and any hints (what to do next) to stderr and
// returns exit status 1.
func (a *app) failf(hints []string, format string, args ...any) int {
	fmt.Fprintf(a.stderr, "error: "+format+"\n", args...)
	for _, h := range hints {
		fmt.Fprintf(a.stderr, "hint: %s\n", h)
	}
	return ExitFailure
}

func (a *app) warnf(format string, args ...any) {
	fmt.Fprintf(a.stderr, "warning: "+format+"\n", args...)
}

func (a *app) topUsage(w io.Writer) {
	var b strings.Builder
	b.WriteString(prog + " moves the PVE network API from Perl (pveproxy) to the Rust daemon,\n")
	b.WriteString("one migration phase at a time, and shows where every request goes.\n\n")
	b.WriteString("Usage: " + prog + " COMMAND [ARGUMENTS] [FLAGS]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-16s %s\n", c.name, c.summary)
	}
	b.WriteString("\nEvery command takes --config PATH (default: $" + config.EnvConfig + ", else\n")
	b.WriteString(config.DefaultPath + ") and --help. Flags may stand before or after arguments.\n")
	b.WriteString("Exit status: 0 success, 1 failure, 2 usage error.\n\n")
	b.WriteString("Roll back at any time with:  " + prog + " set-phase perl-only\n")
	b.WriteString("Run '" + prog + " COMMAND --help' for a command's flags and examples.\n")
	_, _ = io.WriteString(w, b.String())
}

func synopsis(c *command) string {
	s := prog + " " + c.name
	if c.args != "" {
		s += " " + c.args
	}
	return s + " [flags]"
}

func (a *app) commandUsage(w io.Writer, c *command, fs *flag.FlagSet) {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: %s\n\n%s\n", synopsis(c), strings.TrimSpace(c.details))
	b.WriteString("\nFlags:\n")
	b.WriteString(flagHelp(fs))
	if len(c.examples) > 0 {
		b.WriteString("\nExamples:\n")
		for _, e := range c.examples {
			b.WriteString("  " + e + "\n")
		}
	}
	_, _ = io.WriteString(w, b.String())
}

// isTerminal reports whether w is a character device (a terminal), the only
// place colour belongs.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
