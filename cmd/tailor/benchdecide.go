package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/bench"
	"github.com/tailorcdp/tailor/bench/workload"
	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/engine"
	"github.com/tailorcdp/tailor/stream"
)

// decideBench configures "tailor bench decide".
type decideBench struct {
	addr        string // engine host:port; "" starts one in process
	key         string
	placements  string
	customers   int
	events      int
	duration    time.Duration
	connections int
	steps       string // shares of the saturating rate
	asJSON      bool
}

// decideReport is the outcome of "tailor bench decide".
type decideReport struct {
	Machine         string             `json:"machine"`
	Placements      []string           `json:"placements"`
	EngineSaturated float64            `json:"engine_saturated_per_s"`
	BaseSaturated   float64            `json:"baseline_saturated_per_s"`
	Ratio           float64            `json:"throughput_ratio"`
	Engine          []bench.LoadResult `json:"engine_steps"`
	Baseline        []bench.LoadResult `json:"baseline_steps"`
}

func benchDecide(ctx context.Context, cfg *config.Config, o decideBench, stdout, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
	addr, key := o.addr, o.key
	if addr == "" {
		tmp, err := os.MkdirTemp("", "tailor-bench-decide-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		c := *cfg
		c.DataDir, c.HTTP.Addr, c.Embedded.Port = tmp, "127.0.0.1:0", 0
		e, err := engine.Start(ctx, &c, log)
		if err != nil {
			return err
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- e.Run(runCtx) }()
		defer func() { stop(); <-done }()
		if err := seedProfiles(ctx, e, o, progress); err != nil {
			return err
		}
		addr = e.HTTPAddr()
		if key == "" {
			key = cfg.HTTP.ReadKeys[0]
		}
	}
	placements := strings.Split(o.placements, ",")
	bodies := make([][]byte, 4096)
	zipf := rand.NewZipf(rand.New(rand.NewPCG(1, 2)), 1.1, 1, uint64(max(o.customers, 2)-1))
	for i := range bodies {
		b, _ := json.Marshal(map[string]any{"userId": fmt.Sprintf("user-%d", zipf.Uint64()), "placements": placements,
			"context": map[string]any{"product_id": fmt.Sprintf("sku-%d", 4+i%50), "category": workload.Categories()[i%len(workload.Categories())]}})
		bodies[i] = b
	}
	load := bench.LoadConfig{Addr: addr, Path: "/v1/decide", Connections: o.connections,
		Authorization: "Basic " + base64.StdEncoding.EncodeToString([]byte(key+":")),
		Body:          func(i uint64) []byte { return bodies[i%uint64(len(bodies))] }}

	// The baseline answers a real decide answer's bytes, fixed.
	sample, err := bench.Once(load)
	if err != nil {
		return fmt.Errorf("decide at %s: %w", addr, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := bench.Baseline(ln, sample)
	defer srv.Shutdown()
	base := load
	base.Addr = ln.Addr().String()

	rep := decideReport{Machine: machine(), Placements: placements}
	progress("saturating the engine and the baseline, %s each ...", o.duration)
	if rep.EngineSaturated, err = bench.Saturate(ctx, load, o.duration); err != nil {
		return err
	}
	if rep.BaseSaturated, err = bench.Saturate(ctx, base, o.duration); err != nil {
		return err
	}
	rep.Ratio = rep.EngineSaturated / rep.BaseSaturated
	for _, s := range strings.Split(o.steps, ",") {
		var share float64
		if _, err := fmt.Sscanf(s, "%g", &share); err != nil || share <= 0 {
			return fmt.Errorf("--steps %q: want shares of the saturating rate, like 0.25,0.5,0.75", o.steps)
		}
		rate := share * rep.EngineSaturated
		for _, t := range []struct {
			c   bench.LoadConfig
			out *[]bench.LoadResult
			who string
		}{{load, &rep.Engine, "engine"}, {base, &rep.Baseline, "baseline"}} {
			t.c.Rate, t.c.Duration = rate, o.duration
			progress("%s at %.0f/s for %s ...", t.who, rate, o.duration)
			r, err := bench.Load(ctx, t.c)
			if err != nil {
				return err
			}
			*t.out = append(*t.out, r)
		}
	}
	if o.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(stdout, "decide: %s; placements %s\n", rep.Machine, strings.Join(placements, ","))
	fmt.Fprintf(stdout, "saturated: engine %.0f/s, baseline %.0f/s, ratio %.2f\n", rep.EngineSaturated, rep.BaseSaturated, rep.Ratio)
	fmt.Fprintln(tw, "target\trate/s\tok/s\terrors\tp50 µs\tp90 µs\tp99 µs\tp99.9 µs\tmax µs\t")
	for i := range rep.Engine {
		for _, r := range []struct {
			who string
			r   bench.LoadResult
		}{{"engine", rep.Engine[i]}, {"baseline", rep.Baseline[i]}} {
			fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t\n", r.who, r.r.Rate, r.r.Throughput, r.r.Errors, r.r.P50, r.r.P90, r.r.P99, r.r.P999, r.r.Max)
		}
	}
	return tw.Flush()
}

// seedProfiles produces workload events for the engine to apply and waits
// until it has.
func seedProfiles(ctx context.Context, e *engine.Engine, o decideBench, progress func(string, ...any)) error {
	p, err := stream.NewProducer(stream.ClientConfig{Brokers: e.Brokers()})
	if err != nil {
		return err
	}
	defer p.Close()
	wl := workload.DefaultConfig()
	wl.Customers = o.customers
	wl.Start = time.Now().Add(-30 * 24 * time.Hour)
	wl.Step = 30 * 24 * time.Hour / time.Duration(max(o.events, 1))
	gen := workload.New(wl)
	progress("seeding %d events for %d customers ...", o.events, o.customers)
	for range o.events {
		k, v := gen.Next()
		p.ProduceAsync(ctx, &kgo.Record{Topic: e.Topics().Events, Key: []byte(k), Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				progress("produce: %v", err)
			}
		})
	}
	if err := p.Flush(ctx); err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var applied int64
		for _, next := range e.Applied() {
			applied += next
		}
		if applied >= int64(o.events) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the engine applied %d of %d seed events in 5 minutes", applied, o.events)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// machine describes the CPU this runs on.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if name, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%s, %d CPUs, %s/%s, %s", model, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
}
