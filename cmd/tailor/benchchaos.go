package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tailorcdp/tailor/bench"
	"github.com/tailorcdp/tailor/bench/chaos"
	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/internal/buildinfo"
)

// chaosOptions are the flags of "tailor bench chaos".
type chaosOptions struct {
	kills        int
	wake         int
	lines        int
	up           time.Duration
	readyTimeout time.Duration
}

func chaosFlags(fs *flag.FlagSet, o *chaosOptions) {
	fs.IntVar(&o.kills, "kills", 20, "chaos: SIGKILLs of the engine during the import")
	fs.IntVar(&o.wake, "wake", 0, "chaos: profiles that time then moves out of a segment, the engine killed throughout (about 50 s more); 0 skips it")
	fs.IntVar(&o.lines, "lines", 0, "chaos: import only the CSV's first lines (0: all of it)")
	fs.DurationVar(&o.up, "up", 1500*time.Millisecond, "chaos: the engine runs between an eighth of this and this once ready, before each kill")
	fs.DurationVar(&o.readyTimeout, "ready-timeout", 30*time.Second, "chaos: a start not ready (and, with no import running, not caught up) within this fails the run")
}

// chaosReport is what "tailor bench chaos" prints as JSON.
type chaosReport struct {
	Command string        `json:"command"`
	Started time.Time     `json:"started"`
	Machine bench.Machine `json:"machine"`
	Chaos   *chaos.Result `json:"chaos"`
}

// benchChaos runs this binary as a child engine on the configured
// brokers (its embedded broker by default), imports the Online Retail CSV
// at csv while killing it, and reports.
func benchChaos(ctx context.Context, cfg *config.Config, o benchOptions, csv string, stdout, stderr io.Writer) error {
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the tailor binary to run as the engine: %w", err)
	}
	events, truth, err := chaos.RetailData(csv, o.chaos.lines)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "tailor-chaos-")
	if err != nil {
		return err
	}
	rep := chaosReport{Command: "tailor " + strings.Join(os.Args[1:], " "), Started: time.Now(), Machine: bench.DescribeMachine()}
	if rep.Machine.Tailor == "unknown" {
		rep.Machine.Tailor = buildinfo.Read().Version
	}
	prefix := "chaos."
	if len(cfg.Kafka.Brokers) > 0 {
		// A cluster may hold an earlier run's topics.
		prefix = "chaos-" + strconv.FormatInt(time.Now().Unix(), 36) + "."
	}
	fmt.Fprintf(stderr, "chaos: %d events, %d kills, engine data and logs in %s\n", bytes.Count(events, []byte("\n")), o.chaos.kills, dir)
	res, err := chaos.Run(ctx, chaos.Options{
		Binary: bin, Brokers: cfg.Kafka.Brokers, TopicPrefix: prefix, Dir: dir,
		Events: events, Truth: truth, Kills: o.chaos.kills, Wake: o.chaos.wake,
		Up: o.chaos.up, ReadyTimeout: o.chaos.readyTimeout, Partitions: cfg.Kafka.Partitions, Seed: o.seed,
		Progress: func(s string) { fmt.Fprintf(stderr, "chaos: %s\n", s) },
	})
	if err != nil {
		return fmt.Errorf("bench chaos (engine data and logs kept in %s): %w", dir, err)
	}
	rep.Chaos = res
	if o.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = printChaos(stdout, &rep)
	}
	if err != nil {
		return err
	}
	if !res.OK() {
		return fmt.Errorf("events lost or counted twice, or segment records wrong (engine data and logs kept in %s)", dir)
	}
	return os.RemoveAll(dir)
}

// printChaos prints a chaos run's summary.
func printChaos(w io.Writer, r *chaosReport) error {
	c := r.Chaos
	fmt.Fprintf(w, "%s\nchaos on the %s: %d events, seed %d, %.0f s\n", r.Machine, c.Target, c.Events, c.Seed, c.Seconds)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "kills survived:\t%d (%d during the import, %d during segment wake-ups)\n", c.Kills, c.ImportKills, c.WakeKills)
	fmt.Fprintf(tw, "time to ready after a kill:\tp50 %.2f s, p99 %.2f s, max %.2f s\n", c.ReadyP50, c.ReadyP99, c.ReadyMax)
	fmt.Fprintf(tw, "events lost:\t%d of %d (%d customers)\n", c.Retail.Lost, c.Retail.Events, c.Retail.Customers)
	fmt.Fprintf(tw, "events counted twice:\t%d\n", c.Retail.Doubled)
	fmt.Fprintf(tw, "customers wrong:\t%d\n", c.Retail.Wrong)
	fmt.Fprintf(tw, "segment records:\t%d (%d expected): %d duplicated, %d missing, %d unexpected\n",
		c.Segments.Records, c.Segments.Expected, c.Segments.Duplicated, c.Segments.Missing, c.Segments.Unexpected)
	if c.ImportRetries > 0 {
		fmt.Fprintf(tw, "imports started again:\t%d\n", c.ImportRetries)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, d := range append(c.Retail.Diffs, c.Segments.Problems...) {
		fmt.Fprintf(w, "  %s\n", d)
	}
	return nil
}

var errChaosUsage = errors.New("usage: tailor bench chaos [--kills N] [--brokers ...] online-retail.csv.gz")
