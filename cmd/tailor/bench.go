package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tailorcdp/tailor/bench"
	"github.com/tailorcdp/tailor/bench/dataset"
	"github.com/tailorcdp/tailor/bench/workload"
	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/engine"
	"github.com/tailorcdp/tailor/stream"
)

func benchCommand() *command {
	var (
		events    int
		profile   string
		asJSON    bool
		seed      uint64
		customers int
		dec       decideBench
	)
	return &command{
		name: "bench",
		args: "ingest | decide | retail-events CSV",
		summary: "benchmarks and data sets: \"bench ingest\" measures applied events/s against a raw consumer " +
			"in the same run; \"bench decide\" measures decide latency (open loop) and throughput against a fixed-body fasthttp baseline; \"bench retail-events CSV\" converts the Online Retail CSV(.gz) to NDJSON events on stdout",
		flags: func(fs *flag.FlagSet) {
			fs.IntVar(&events, "events", 200_000, "ingest: events to produce and apply")
			fs.BoolVar(&asJSON, "json", false, "ingest, decide: print the result as JSON")
			fs.StringVar(&profile, "cpuprofile", "", "ingest: write a CPU profile of the run to this file (go tool pprof)")
			fs.Uint64Var(&seed, "seed", 1, "ingest: workload seed")
			fs.IntVar(&customers, "customers", 100_000, "ingest, decide: distinct customers in the workload")
			fs.StringVar(&dec.addr, "engine", "", "decide: host:port of a running engine's HTTP API (default: start one in process with the config and seed it)")
			fs.StringVar(&dec.key, "key", "", "decide: read or decide key (default: the config's first read key)")
			fs.StringVar(&dec.placements, "placements", "home_hero,cart_banner,also_bought", "decide: comma-separated placements asked in each call")
			fs.IntVar(&dec.events, "seed-events", 200_000, "decide: workload events applied before measuring (in-process engine)")
			fs.DurationVar(&dec.duration, "duration", 10*time.Second, "decide: length of each step")
			fs.IntVar(&dec.connections, "connections", 64, "decide: connections (concurrent senders)")
			fs.StringVar(&dec.steps, "steps", "0.25,0.5,0.75", "decide: rates of the open-loop steps, as shares of the engine's saturating rate")
		},
		run: func(ctx context.Context, cfg *config.Config, fs *flag.FlagSet, stdout, stderr io.Writer) error {
			switch fs.Arg(0) {
			case "retail-events":
				if fs.NArg() != 2 {
					return errors.New("usage: tailor bench retail-events online-retail.csv.gz > events.ndjson")
				}
				in, err := dataset.OpenMaybeGzip(fs.Arg(1), nil)
				if err != nil {
					return err
				}
				defer in.Close()
				n, err := dataset.WriteRetailEvents(in, stdout)
				fmt.Fprintf(stderr, "wrote %d events\n", n)
				return err
			case "ingest":
				if profile != "" {
					f, err := os.Create(profile)
					if err != nil {
						return err
					}
					defer f.Close()
					if err := pprof.StartCPUProfile(f); err != nil {
						return err
					}
					defer pprof.StopCPUProfile()
				}
				return benchIngest(ctx, cfg, events, seed, customers, asJSON, stdout, stderr)
			case "decide":
				dec.customers, dec.asJSON = customers, asJSON
				return benchDecide(ctx, cfg, dec, stdout, stderr)
			case "":
				return errors.New("name a benchmark: ingest, decide or retail-events (tailor bench --help)")
			}
			return fmt.Errorf("unknown benchmark %q: want ingest, decide or retail-events", fs.Arg(0))
		},
	}
}

func benchIngest(ctx context.Context, cfg *config.Config, events int, seed uint64, customers int, asJSON bool, stdout, stderr io.Writer) error {
	client, err := engine.ClientConfig(cfg)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	tmp, err := os.MkdirTemp("", "tailor-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if len(client.Brokers) == 0 {
		b, err := stream.StartEmbedded(tmp+"/broker", 0, log)
		if err != nil {
			return err
		}
		defer b.Close()
		client.Brokers = b.Addrs()
	}
	compiled, err := engine.Compile(cfg)
	if err != nil {
		return err
	}
	storeOpts := compiled.Store
	wl := workload.DefaultConfig()
	wl.Seed, wl.Customers = seed, customers
	res, err := bench.Ingest(ctx, bench.IngestConfig{
		Client:         client,
		Events:         events,
		Partitions:     cfg.Kafka.Partitions,
		Workload:       wl,
		Store:          storeOpts,
		Limits:         engine.Limits(cfg),
		MaxPollRecords: cfg.Kafka.MaxPollRecords,
		DataDir:        tmp,
		Logger:         log,
		Progress:       func(s string) { fmt.Fprintln(stderr, s) },
	})
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "ingest\t%d events, %d partitions, %d CPUs, brokers %s\n", res.Events, res.Partitions, runtime.NumCPU(), strings.Join(client.Brokers, ","))
	fmt.Fprintf(tw, "raw consumer (baseline)\t%.0f events/s\n", res.RawRate)
	fmt.Fprintf(tw, "engine applied\t%.0f events/s\n", res.AppliedRate)
	fmt.Fprintf(tw, "applied / raw\t%.2f\n", res.Ratio)
	return tw.Flush()
}
