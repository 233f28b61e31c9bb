package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/engine"
	"github.com/tailorcdp/tailor/stream"
)

func runCommand() *command {
	return &command{
		name:    "run",
		summary: "run the engine: collect API, consumer, profile API (default command)",
		run: func(ctx context.Context, cfg *config.Config, _ *flag.FlagSet, _, _ io.Writer) error {
			log := engine.NewLogger(cfg)
			if cfg.Source == "sample" {
				log.Warn("running with the sample config and its development keys (dev-write-key, dev-read-key); pass --config for anything else")
			}
			e, err := engine.Start(ctx, cfg, log)
			if err != nil {
				return err
			}
			return e.Run(ctx)
		},
	}
}

func brokerCommand() *command {
	return &command{
		name:    "broker",
		summary: "run only the embedded Kafka-protocol broker (for separate engine processes and tests)",
		run: func(ctx context.Context, cfg *config.Config, _ *flag.FlagSet, stdout, _ io.Writer) error {
			log := engine.NewLogger(cfg)
			dir := cfg.DataDir + "/broker"
			b, err := stream.StartEmbedded(dir, cfg.Embedded.Port, log)
			if err != nil {
				return err
			}
			defer b.Close()
			// The address line is for scripts that start the broker on port 0.
			fmt.Fprintf(stdout, "broker listening on %s\n", strings.Join(b.Addrs(), ","))
			log.Info("embedded broker running", "addr", strings.Join(b.Addrs(), ","), "data", dir)
			<-ctx.Done()
			return nil
		},
	}
}
