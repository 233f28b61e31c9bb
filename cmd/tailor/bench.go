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
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tailorcdp/tailor/bench"
	"github.com/tailorcdp/tailor/bench/dataset"
	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/engine"
	"github.com/tailorcdp/tailor/internal/buildinfo"
	"github.com/tailorcdp/tailor/internal/workload"
	"github.com/tailorcdp/tailor/stream"
)

// benchOptions are the flags of "tailor bench".
type benchOptions struct {
	events     int
	customers  int
	seed       uint64
	cpuProfile string
	asJSON     bool
	report     string // directory of the Markdown report; "" writes none
	engines    string // comma-separated host:port of running engines; "" starts one in process
	readKey    string
	writeKey   string

	placements  string
	seedEvents  int
	duration    time.Duration
	connections int
	steps       string // shares of the saturating rate

	samples                         int
	background                      float64
	probeSegment, probeIn, probeOut string

	chaos chaosOptions
}

func benchCommand() *command {
	var o benchOptions
	return &command{
		name: "bench",
		args: "ingest | decide | freshness | all | chaos CSV | retail-events CSV",
		summary: "benchmarks and data sets: \"bench ingest\" measures applied events/s against a raw consumer of the same topic in the same run; " +
			"\"bench decide\" measures decide latency (open loop) and throughput against a fixed-body fasthttp baseline; " +
			"\"bench freshness\" measures how soon an event sent to the collect API shows in the profile API, under background load; " +
			"\"bench all\" runs the three and writes a report (--report, default bench-report); " +
			"\"bench chaos CSV\" runs this binary as a child engine (its embedded broker, or --brokers), imports the Online Retail CSV(.gz) while killing the engine with SIGKILL --kills times and starting it again, and reports kills survived, time to ready, events lost and counted twice against the CSV, and segment records duplicated or missing; " +
			"\"bench retail-events CSV\" converts the Online Retail CSV(.gz) to NDJSON events on stdout. " +
			"Without --engine, the engine runs in process on the configured brokers (the embedded one by default)",
		flags: func(fs *flag.FlagSet) {
			fs.IntVar(&o.events, "events", 200_000, "ingest: events to produce and apply")
			fs.IntVar(&o.customers, "customers", 100_000, "distinct customers in the workload")
			fs.Uint64Var(&o.seed, "seed", 1, "workload seed")
			fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof; ingest labels its phases, e.g. -tagfocus phase=engine)")
			fs.BoolVar(&o.asJSON, "json", false, "print the results as JSON")
			fs.StringVar(&o.report, "report", "", "write a Markdown report with PNG charts into this directory (bench all: default bench-report)")
			fs.StringVar(&o.engines, "engine", "", "host:port of a running engine's HTTP API, comma-separated for every instance of a cluster (default: start one in process); with ingest, events go to the configured brokers and topic prefix")
			fs.StringVar(&o.readKey, "key", "", "read key for decide and the profile API (default: the config's first read key)")
			fs.StringVar(&o.writeKey, "write-key", "", "write key for the collect API (default: the config's first write key)")
			fs.StringVar(&o.placements, "placements", "home_hero,cart_banner,also_bought", "decide: comma-separated placements asked in each call")
			fs.IntVar(&o.seedEvents, "seed-events", 200_000, "decide, freshness: workload events applied before measuring (in-process engine)")
			fs.DurationVar(&o.duration, "duration", 10*time.Second, "decide: length of each step")
			fs.IntVar(&o.connections, "connections", 64, "decide: connections (concurrent senders)")
			fs.StringVar(&o.steps, "steps", "0.25,0.5,0.75", "decide: rates of the open-loop steps, as shares of the engine's saturating rate")
			fs.IntVar(&o.samples, "samples", 200, "freshness: probe events")
			fs.Float64Var(&o.background, "background", 2000, "freshness: workload events/s sent through the collect API meanwhile")
			fs.StringVar(&o.probeSegment, "probe-segment", "french_adult", "freshness: segment the probe identify calls move a profile into and out of")
			fs.StringVar(&o.probeIn, "probe-in", `{"country": "FR", "age": 30}`, "freshness: traits that put a profile in the probe segment")
			fs.StringVar(&o.probeOut, "probe-out", `{"country": "DE", "age": 30}`, "freshness: traits that take it out")
			chaosFlags(fs, &o.chaos)
		},
		run: func(ctx context.Context, cfg *config.Config, fs *flag.FlagSet, stdout, stderr io.Writer) error {
			which := fs.Arg(0)
			if which == "retail-events" {
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
			}
			if which == "chaos" {
				if fs.NArg() != 2 {
					return errChaosUsage
				}
				return benchChaos(ctx, cfg, o, fs.Arg(1), stdout, stderr)
			}
			switch which {
			case "ingest", "decide", "freshness", "all":
			case "":
				return errors.New("name a benchmark: ingest, decide, freshness, all, chaos or retail-events (tailor bench --help)")
			default:
				return fmt.Errorf("unknown benchmark %q: want ingest, decide, freshness, all, chaos or retail-events", which)
			}
			if which == "all" && o.report == "" {
				o.report = "bench-report"
			}
			if o.cpuProfile != "" {
				f, err := os.Create(o.cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			b := &benchRun{cfg: cfg, o: o, stderr: stderr,
				log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
			defer b.close()
			rep, err := b.run(ctx, which)
			if err != nil {
				return err
			}
			if o.report != "" {
				if err := rep.Write(o.report); err != nil {
					return err
				}
				fmt.Fprintf(stderr, "report written to %s/report.md\n", o.report)
			}
			if o.asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return printReport(stdout, rep)
		},
	}
}

// benchRun is one "tailor bench" invocation: the engine it measures (in
// process, started once and shared by the benchmarks, or running
// elsewhere) and the report it fills.
type benchRun struct {
	cfg    *config.Config
	o      benchOptions
	stderr io.Writer
	log    *slog.Logger

	addr            string // engine HTTP address for decide and freshness
	readKey, writer string
	stopEngine      func()
}

func (b *benchRun) progress(format string, a ...any) { fmt.Fprintf(b.stderr, format+"\n", a...) }

func (b *benchRun) close() {
	if b.stopEngine != nil {
		b.stopEngine()
	}
}

func (b *benchRun) run(ctx context.Context, which string) (*bench.Report, error) {
	rep := &bench.Report{Command: "tailor " + strings.Join(os.Args[1:], " "), Started: time.Now(), Machine: bench.DescribeMachine(), Target: "in-process engine"}
	if rep.Machine.Tailor == "unknown" {
		rep.Machine.Tailor = buildinfo.Read().Version // built without version control stamping
	}
	if b.o.engines != "" {
		rep.Target = "engines at " + b.o.engines
	}
	if which == "ingest" || which == "all" {
		in, err := b.ingest(ctx)
		if err != nil {
			return nil, fmt.Errorf("bench ingest: %w", err)
		}
		rep.Ingest = &in
	}
	if which == "decide" || which == "all" {
		d, err := b.decide(ctx)
		if err != nil {
			return nil, fmt.Errorf("bench decide: %w", err)
		}
		rep.Decide = &d
	}
	if which == "freshness" || which == "all" {
		f, err := b.freshness(ctx)
		if err != nil {
			return nil, fmt.Errorf("bench freshness: %w", err)
		}
		rep.Freshness = &f
	}
	return rep, nil
}

// workload returns the run's traffic: events of the last minutes, as a
// live stream's are (the sessions' starts end about now), so that they
// count in short windows (30 minutes, an hour) as well as in long ones.
func (b *benchRun) workload() workload.Config {
	wl := workload.DefaultConfig()
	wl.Seed, wl.Customers = b.o.seed, b.o.customers
	wl.EndingNow(b.o.events)
	return wl
}

// ingest measures in process (a fresh topic, the engine's processor with
// the configured model) or against the running engines.
func (b *benchRun) ingest(ctx context.Context) (bench.IngestResult, error) {
	client, err := engine.ClientConfig(b.cfg)
	if err != nil {
		return bench.IngestResult{}, err
	}
	if b.o.events < 100_000 {
		b.progress("note: with fewer than 100,000 events the rates measure start-up and buffers more than steady work")
	}
	if b.o.engines != "" {
		if len(client.Brokers) == 0 {
			return bench.IngestResult{}, errors.New("--engine with ingest needs --brokers: the engines' Kafka cluster, where the events go")
		}
		return bench.IngestRemote(ctx, bench.RemoteIngestConfig{
			Client:   client,
			Topic:    stream.NewTopics(b.cfg.Kafka.TopicPrefix).Events,
			Engines:  strings.Split(b.o.engines, ","),
			Events:   b.o.events,
			Workload: b.workload(),
			Progress: func(s string) { b.progress("%s", s) },
		})
	}
	tmp, err := os.MkdirTemp("", "tailor-bench-")
	if err != nil {
		return bench.IngestResult{}, err
	}
	defer os.RemoveAll(tmp)
	if len(client.Brokers) == 0 {
		broker, err := stream.StartEmbedded(tmp+"/broker", 0, b.log)
		if err != nil {
			return bench.IngestResult{}, err
		}
		defer broker.Close()
		client.Brokers = broker.Addrs()
	}
	compiled, err := engine.Compile(b.cfg)
	if err != nil {
		return bench.IngestResult{}, err
	}
	return bench.Ingest(ctx, bench.IngestConfig{
		Client:         client,
		Events:         b.o.events,
		Partitions:     b.cfg.Kafka.Partitions,
		Workload:       b.workload(),
		Store:          compiled.Store,
		Limits:         engine.Limits(b.cfg),
		MaxPollRecords: b.cfg.Kafka.MaxPollRecords,
		DataDir:        tmp,
		Logger:         b.log,
		Progress:       func(s string) { b.progress("%s", s) },
	})
}

// printReport prints a report's summary tables.
func printReport(w io.Writer, r *bench.Report) error {
	fmt.Fprintf(w, "%s\n%s\n", r.Machine, r.Target)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', tabwriter.AlignRight)
	if in := r.Ingest; in != nil {
		fmt.Fprintf(w, "\ningest: %d events, %d partitions\n", in.Events, in.Partitions)
		fmt.Fprintf(tw, "raw consumer (baseline)\t%.0f events/s\t\n", in.RawRate)
		fmt.Fprintf(tw, "engine applied\t%.0f events/s\t\n", in.AppliedRate)
		fmt.Fprintf(tw, "applied / raw\t%.2f\t\n", in.Ratio)
		if in.ApplyCPU > 0 {
			fmt.Fprintf(tw, "CPU per event: raw consumer\t%.2f µs\t\n", in.RawCPU)
			fmt.Fprintf(tw, "engine\t%.2f µs\t\n", in.ApplyCPU)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if d := r.Decide; d != nil {
		fmt.Fprintf(w, "\ndecide: placements %s\n", strings.Join(d.Placements, ","))
		fmt.Fprintf(w, "saturated: engine %.0f/s, baseline %.0f/s, ratio %.2f\n", d.EngineSaturated, d.BaseSaturated, d.Ratio)
		fmt.Fprintln(tw, "target\trate/s\tok/s\terrors\tp50 µs\tp90 µs\tp99 µs\tp99.9 µs\tmax µs\t")
		for i := range d.Engine {
			for _, s := range []struct {
				who   string
				steps []bench.LoadResult
			}{{"engine", d.Engine}, {"baseline", d.Baseline}} {
				if i < len(s.steps) {
					l := s.steps[i]
					fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t\n", s.who, l.Rate, l.Throughput, l.Errors, l.P50, l.P90, l.P99, l.P999, l.Max)
				}
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if f := r.Freshness; f != nil {
		fmt.Fprintf(w, "\nfreshness: %d samples, %.0f background events/s\n", f.Samples, f.Background)
		fmt.Fprintln(tw, "p50 ms\tp90 ms\tp99 ms\tmax ms\ttimeouts\t")
		fmt.Fprintf(tw, "%.1f\t%.1f\t%.1f\t%.1f\t%d\t\n", f.P50, f.P90, f.P99, f.Max, f.Timeouts)
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}
