package ctl

import (
	"flag"
	"fmt"
	"sort"
	"strings"

	"github.com/pve-migration/router/routing"
)

// parseInterspersed parses flags that stand anywhere among the positional
// arguments, as operators type them ("explain GET /path --json"); the
// standard flag package stops at the first argument. "--" ends the flags.
// Both -name and --name are accepted, with "=value" or the value as the
// next argument. An unknown flag is reported with the closest known one.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(arg) < 2 || arg[0] != '-' {
			pos = append(pos, arg)
			continue
		}
		body := strings.TrimPrefix(arg[1:], "-")
		name, _, hasValue := strings.Cut(body, "=")
		if name == "" || strings.HasPrefix(name, "-") {
			return nil, fmt.Errorf("bad flag syntax: %s", arg)
		}
		f := fs.Lookup(name)
		if f == nil {
			if name == "h" || name == "help" {
				return nil, flag.ErrHelp
			}
			msg := "unknown flag --" + name
			if s := routing.Suggest(name, flagNames(fs)); s != "" {
				msg += fmt.Sprintf("; did you mean --%s?", s)
			}
			return nil, fmt.Errorf("%s", msg)
		}
		flags = append(flags, arg)
		if !hasValue && !isBoolFlag(f) {
			if i+1 >= len(args) {
				return nil, fmt.Errorf("flag --%s needs a value", name)
			}
			i++
			flags = append(flags, args[i])
		}
	}
	if err := fs.Parse(flags); err != nil {
		// The flag package names flags with one dash; operators read ours
		// with two.
		return nil, fmt.Errorf("%s", strings.ReplaceAll(err.Error(), " -", " --"))
	}
	return pos, nil
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func flagNames(fs *flag.FlagSet) []string {
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	return names
}

// flagHelp lists a FlagSet's flags with two dashes, their value name and
// default, sorted, plus --help.
func flagHelp(fs *flag.FlagSet) string {
	type row struct{ left, usage string }
	var rows []row
	width := len("--help")
	fs.VisitAll(func(f *flag.Flag) {
		valueName, usage := flag.UnquoteUsage(f)
		left := "--" + f.Name
		if !isBoolFlag(f) {
			if valueName == "" {
				valueName = "VALUE"
			}
			left += " " + strings.ToUpper(valueName)
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
			usage += " (default " + f.DefValue + ")"
		}
		rows = append(rows, row{left, usage})
		width = max(width, len(left))
	})
	rows = append(rows, row{"--help", "show this help"})
	sort.Slice(rows, func(i, j int) bool { return rows[i].left < rows[j].left })
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "  %-*s  %s\n", width, r.left, r.usage)
	}
	return b.String()
}
