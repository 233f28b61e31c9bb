package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/engine"
)

// errRejected is returned when check-config found problems, already
// printed one per line.
var errRejected = errors.New("configuration rejected")

func checkConfigCommand() *command {
	return &command{
		name:    "check-config",
		args:    "[FILE]",
		summary: "parse, validate and compile a config file (rules, offers, placements) without starting anything; exit 1 on a problem",
		run: func(_ context.Context, cfg *config.Config, fs *flag.FlagSet, stdout, stderr io.Writer) error {
			file := fs.Arg(0)
			if file == "" {
				file = cfg.Source // --config or TAILOR_CONFIG
			}
			if file == "" || file == "sample" {
				return errors.New("name the config file: tailor check-config FILE")
			}
			doc, err := os.ReadFile(file)
			if err != nil {
				return fmt.Errorf("read %s: %w", file, err)
			}
			// As a reload of the file would: the same environment and flags.
			checked, compiled, err := engine.Check(doc, file, cfg.Reparse)
			if err != nil {
				problems := engine.Problems(err)
				fmt.Fprintf(stderr, "%s: %d problem(s):\n", file, len(problems))
				for _, p := range problems {
					fmt.Fprintf(stderr, "  %s\n", p)
				}
				return errRejected
			}
			fmt.Fprintf(stdout, "%s: valid: %d aggregates, %d segments, %d placements, %d offers\n", file,
				len(checked.Aggregates), len(compiled.Store.Segments.List()), len(compiled.Catalog.Placements()), len(checked.Offers))
			return nil
		},
	}
}
