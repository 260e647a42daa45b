// Package cli implements labgate's subcommands. Each is a function of its
// arguments and output streams that returns an error; Main turns that error
// into an exit code.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"strings"

	"github.com/labgate/labgate/examples"
	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/daemon"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

type command struct {
	name, usage, summary string
	run                  func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "serve [-c FILE]", "run the gateway (without -c: the embedded quickstart)", serve},
		{"relay", "relay -c FILE", "run the relay on the VPS (or: relay -gateway IP -forward tcp:443=10443 …)", relayCmd},
		{"check", "check -c FILE", "validate a config file and report every problem", check},
		{"plan", "plan -c FILE", "print the DNS changes, certificates and listeners serve would make, changing nothing", plan},
		{"render", "render k8s -c FILE", "print the lab as Kubernetes manifests (-output ingress|gateway-api, -namespace NS)", renderCmd},
		{"schema", "schema", "print the JSON Schema of the config file (for editors)", schema},
		{"docs", "docs config", "print the config reference as Markdown (docs/config.md)", docs},
		{"version", "version", "print labgate's version", version},
	}
}

// usageError is a mistake in the command line: usage is printed with it.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// silentError has already been reported on stderr.
type silentError struct{}

func (silentError) Error() string { return "failed" }

// Main runs the subcommand named by args[0] and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || isHelp(args[0]) {
		printUsage(stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		var ue usageError
		var hr helpRequest
		switch {
		case err == nil:
			return exitOK
		case errors.As(err, &hr):
			printHelp(stderr, c, hr.flags)
			return exitOK
		case errors.Is(err, flag.ErrHelp):
			return exitOK
		case errors.As(err, &ue):
			fmt.Fprintf(stderr, "labgate %s: %s\nusage: labgate %s\n", c.name, ue.msg, c.usage)
			return exitUsage
		case errors.Is(err, silentError{}):
			return exitFailure
		default:
			fmt.Fprintf(stderr, "labgate %s: %s\n", c.name, err)
			return exitFailure
		}
	}
	fmt.Fprintf(stderr, "labgate: unknown command %q\n", args[0])
	printUsage(stderr)
	return exitUsage
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "labgate: the front door of a homelab, from one YAML file.")
	fmt.Fprintln(w, "\nusage:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  labgate %-18s %s\n", c.usage, c.summary)
	}
	fmt.Fprintln(w, "\n`labgate COMMAND -h` lists a command's flags.")
}

// isHelp reports whether arg asks for help, as the flag package reads it.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "--h"
}

// newFlags returns a command's flag set. It prints nothing itself: Main
// prints a mistake once, and the help for -h (helpRequest).
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("labgate "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// helpRequest is -h given to a command: Main prints its usage and flags.
type helpRequest struct{ flags *flag.FlagSet }

func (helpRequest) Error() string        { return flag.ErrHelp.Error() }
func (helpRequest) Is(target error) bool { return target == flag.ErrHelp }

func printHelp(w io.Writer, c command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: labgate %s\n  %s\n", c.usage, c.summary)
	if fs == nil {
		return
	}
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "\nflags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return helpRequest{fs}
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

// loader returns how serve and check read the config: the file, or the
// embedded quickstart when path is empty.
func loader(path string) func() (*config.Config, error) {
	if path == "" {
		return func() (*config.Config, error) {
			return config.Parse("quickstart.yaml", examples.Quickstart, config.Options{})
		}
	}
	return func() (*config.Config, error) { return loadConfig(path) }
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	path := fs.String("c", "", "config `file` (followed: saving it reloads; without -c the embedded quickstart runs)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		fmt.Fprintln(stderr, "labgate: no -c FILE given, running the embedded quickstart (examples/quickstart.yaml); state goes to ./labgate-state")
	}
	d := daemon.New(daemon.Options{Load: loader(*path), Watch: *path, Stderr: stderr, Version: buildVersion()})
	return reportConfigError("serve", d.Run(ctx), stderr)
}

// reportConfigError prints every problem of a refused config on stderr.
func reportConfigError(cmd string, err error, stderr io.Writer) error {
	var errs config.Errors
	if errors.As(err, &errs) {
		fmt.Fprintln(stderr, errs.Error())
		fmt.Fprintf(stderr, "labgate %s: %d problem(s) in the config, nothing started\n", cmd, len(errs))
		return silentError{}
	}
	return err
}

func check(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check", stderr)
	path := fs.String("c", "", "config `file` to check")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return usageError{"-c FILE is required"}
	}
	cfg, err := loadConfig(*path)
	var errs config.Errors
	if errors.As(err, &errs) {
		fmt.Fprintln(stderr, errs.Error())
		fmt.Fprintf(stderr, "%s: %d problem(s)\n", *path, len(errs))
		return silentError{}
	}
	if err != nil {
		return err
	}
	if g := cfg.Git; g != nil {
		fmt.Fprintf(stdout, "%s: ok, follows %s (branch %s, file %s)\n", *path, g.URL, g.Branch, g.Path)
		return nil
	}
	if err := daemon.Check(cfg); err != nil {
		if errors.As(err, &errs) {
			fmt.Fprintln(stderr, errs.Error())
			fmt.Fprintf(stderr, "%s: %d problem(s)\n", *path, len(errs))
			return silentError{}
		}
		return fmt.Errorf("%s: %w", *path, err)
	}
	var pub, priv []string
	for _, s := range cfg.Services {
		if s.Expose == config.Public {
			pub = append(pub, s.Name)
		} else {
			priv = append(priv, s.Name)
		}
	}
	fmt.Fprintf(stdout, "%s: ok, %d service(s)\n", *path, len(cfg.Services))
	fmt.Fprintf(stdout, "  public:  %s\n  private: %s\n", list(pub), list(priv))
	return nil
}

func list(ss []string) string {
	if len(ss) == 0 {
		return "-"
	}
	return strings.Join(ss, ", ")
}

func schema(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if err := parseFlags(newFlags("schema", stderr), args); err != nil {
		return err
	}
	_, err := stdout.Write(config.Schema())
	return err
}

func docs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && isHelp(args[len(args)-1]) {
		return helpRequest{}
	}
	if len(args) != 1 || args[0] != "config" {
		return usageError{"the only document is: config"}
	}
	_, err := stdout.Write(config.Reference())
	return err
}

func version(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if err := parseFlags(newFlags("version", stderr), args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "labgate", buildVersion())
	return nil
}

// buildVersion is the module version, or the VCS revision of a local build.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "devel-" + rev
}
