package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/bench"
	"github.com/tailorcdp/tailor/engine"
	"github.com/tailorcdp/tailor/internal/workload"
	"github.com/tailorcdp/tailor/stream"
)

// engine returns the HTTP address of the engine decide and freshness
// measure: the one given with --engine, or one started in process (once)
// and seeded with workload events.
func (b *benchRun) engine(ctx context.Context) (string, error) {
	if b.addr != "" {
		return b.addr, nil
	}
	b.readKey, b.writer = b.o.readKey, b.o.writeKey
	if b.readKey == "" && len(b.cfg.HTTP.ReadKeys) > 0 {
		b.readKey = b.cfg.HTTP.ReadKeys[0].Secret
	}
	if b.writer == "" && len(b.cfg.HTTP.WriteKeys) > 0 {
		b.writer = b.cfg.HTTP.WriteKeys[0].Secret
	}
	if b.o.engines != "" {
		b.addr = strings.Split(b.o.engines, ",")[0]
		return b.addr, nil
	}
	tmp, err := os.MkdirTemp("", "tailor-bench-engine-")
	if err != nil {
		return "", err
	}
	c := *b.cfg
	c.DataDir, c.HTTP.Addr, c.Embedded.Port = tmp, "127.0.0.1:0", 0
	e, err := engine.Start(ctx, &c, b.log)
	if err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()
	b.stopEngine = func() { stop(); <-done; os.RemoveAll(tmp) }
	if err := seedProfiles(ctx, e, b.o, b.progress); err != nil {
		return "", err
	}
	b.addr = e.HTTPAddr()
	return b.addr, nil
}

// decide measures the engine's decide endpoint against a fixed-body
// baseline on this machine.
func (b *benchRun) decide(ctx context.Context) (bench.DecideResult, error) {
	addr, err := b.engine(ctx)
	if err != nil {
		return bench.DecideResult{}, err
	}
	o := b.o
	placements := strings.Split(o.placements, ",")
	bodies := make([][]byte, 4096)
	zipf := rand.NewZipf(rand.New(rand.NewPCG(1, 2)), 1.1, 1, uint64(max(o.customers, 2)-1))
	for i := range bodies {
		body, _ := json.Marshal(map[string]any{"userId": fmt.Sprintf("user-%d", zipf.Uint64()), "placements": placements,
			"context": map[string]any{"product_id": fmt.Sprintf("sku-%d", 4+i%50), "category": workload.Categories()[i%len(workload.Categories())]}})
		bodies[i] = body
	}
	live := liveLine(b.stderr)
	load := bench.LoadConfig{Addr: addr, Path: "/v1/decide", Connections: o.connections,
		Authorization: bench.BasicAuth(b.readKey),
		Body:          func(i uint64) []byte { return bodies[i%uint64(len(bodies))] }}

	// The baseline answers a real decide answer's bytes, fixed.
	sample, err := bench.Once(load)
	if err != nil {
		return bench.DecideResult{}, fmt.Errorf("decide at %s: %w", addr, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return bench.DecideResult{}, err
	}
	srv := bench.Baseline(ln, sample)
	defer srv.Shutdown()
	base := load
	base.Addr = ln.Addr().String()

	rep := bench.DecideResult{Placements: placements}
	b.progress("saturating the engine and the baseline, %s each ...", o.duration)
	if rep.EngineSaturated, err = bench.Saturate(ctx, load, o.duration); err != nil {
		return rep, err
	}
	if rep.BaseSaturated, err = bench.Saturate(ctx, base, o.duration); err != nil {
		return rep, err
	}
	rep.Ratio = rep.EngineSaturated / rep.BaseSaturated
	for _, s := range strings.Split(o.steps, ",") {
		var share float64
		if _, err := fmt.Sscanf(s, "%g", &share); err != nil || share <= 0 {
			return rep, fmt.Errorf("--steps %q: want shares of the saturating rate, like 0.25,0.5,0.75", o.steps)
		}
		rate := share * rep.EngineSaturated
		for _, t := range []struct {
			c   bench.LoadConfig
			out *[]bench.LoadResult
			who string
		}{{load, &rep.Engine, "engine"}, {base, &rep.Baseline, "baseline"}} {
			t.c.Rate, t.c.Duration = rate, o.duration
			t.c.Progress = func(p bench.LoadProgress) {
				live(fmt.Sprintf("%s at %.0f/s: %.0fs of %s, %d sent, %d errors", t.who, rate, p.Elapsed.Seconds(), o.duration, p.Sent, p.Errors))
			}
			r, err := bench.Load(ctx, t.c)
			live("")
			if err != nil {
				return rep, err
			}
			b.progress("%s at %.0f/s: p50 %.0f µs, p99 %.0f µs, %d errors", t.who, rate, r.P50, r.P99, r.Errors)
			*t.out = append(*t.out, r)
		}
	}
	return rep, nil
}

// liveLine returns a function that shows a progress line in place on a
// terminal (one line per call elsewhere); "" ends it.
func liveLine(w io.Writer) func(string) {
	f, ok := w.(*os.File)
	tty := false
	if ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	shown := false
	return func(s string) {
		switch {
		case s == "" && shown && tty:
			fmt.Fprint(w, "\r\x1b[K")
			shown = false
		case s == "":
		case tty:
			fmt.Fprint(w, "\r\x1b[K"+s)
			shown = true
		default:
			fmt.Fprintln(w, s)
		}
	}
}

// seedProfiles produces workload events for the engine to apply and waits
// until it has.
func seedProfiles(ctx context.Context, e *engine.Engine, o benchOptions, progress func(string, ...any)) error {
	p, err := stream.NewProducer(stream.ClientConfig{Brokers: e.Brokers()})
	if err != nil {
		return err
	}
	defer p.Close()
	wl := workload.DefaultConfig()
	wl.Customers = o.customers
	wl.Start = time.Now().Add(-30 * 24 * time.Hour)
	wl.Step = 30 * 24 * time.Hour / time.Duration(max(o.seedEvents, 1))
	gen := workload.New(wl)
	progress("seeding %d events for %d customers ...", o.seedEvents, o.customers)
	for range o.seedEvents {
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
		if applied >= int64(o.seedEvents) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the engine applied %d of %d seed events in 5 minutes", applied, o.seedEvents)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
