package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/internal/buildinfo"
)

type command struct {
	name, args, summary string
	run                 func(ctx context.Context, cfg *config.Config, fs *flag.FlagSet, stdout, stderr io.Writer) error
	// flags registers the command's own flags, beside the shared options.
	flags func(fs *flag.FlagSet)
}

func commands() []*command {
	return []*command{
		runCommand(),
		demoCommand(),
		brokerCommand(),
		importCommand(),
		exportCommand(),
		checkConfigCommand(),
		probeCommand(),
		destinationsCommand(),
		benchCommand(),
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run runs the command line args and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	name := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		name, args = args[0], args[1:]
	}
	switch name {
	case "help":
		usage(stdout)
		return 0
	case "version":
		fmt.Fprintln(stdout, buildinfo.Read())
		return 0
	}
	var cmd *command
	for _, c := range commands() {
		if c.name == name {
			cmd = c
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "tailor: unknown command %q\n\n", name)
		usage(stderr)
		return 2
	}
	fs := flag.NewFlagSet("tailor "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	loader := config.NewLoader(fs)
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	fs.Usage = func() {
		if cmd.name == "run" {
			usage(stderr)
			return
		}
		fmt.Fprintf(stderr, "usage: tailor %s [options] %s\n\n%s\n\nCommand options:\n", cmd.name, cmd.args, cmd.summary)
		shared := config.FlagNames()
		fs.VisitAll(func(f *flag.Flag) {
			if slices.Contains(shared, f.Name) {
				return
			}
			fmt.Fprintf(stderr, "  --%s\t%s (default %q)\n", f.Name, f.Usage, f.DefValue)
		})
		fmt.Fprintf(stderr, "\nShared options:\n")
		config.PrintOptions(stderr)
	}
	// Flags may come before and after the arguments ("bench ingest
	// --events 1000"): parse again after each positional argument.
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if err := fs.Parse(append([]string{"--"}, positional...)); err != nil {
		return 2
	}
	cfg, err := loader.Load(getenv)
	if err != nil {
		fmt.Fprintf(stderr, "tailor %s: config: %v\n", cmd.name, err)
		return 2
	}
	if err := cmd.run(ctx, cfg, fs, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "tailor %s: %v\n", cmd.name, err)
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `tailor: real-time personalisation engine

Events arrive over Segment's HTTP tracking API or straight on Kafka; tailor
keeps a profile per customer in per-partition Badger stores and serves it
over HTTP. With no brokers configured it runs an embedded Kafka broker.

Usage:
  tailor [command] [options] [arguments]

Commands:
`)
	fmt.Fprintf(w, "  %-12s %s\n", "help", "show this help")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "  %-12s %s\n", "version", "print the version, VCS revision and Go version of this binary")
	fmt.Fprintf(w, `
Without a command, tailor runs the engine ("run"). "tailor COMMAND --help"
shows a command's own options.

Options (every command; precedence: defaults < config file < environment < flags):
`)
	config.PrintOptions(w)
}
