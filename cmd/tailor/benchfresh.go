package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/tailorcdp/tailor/bench"
)

// freshness measures how soon an event sent to the collect API shows in
// the profile API, under background load.
func (b *benchRun) freshness(ctx context.Context) (bench.FreshnessResult, error) {
	addr, err := b.engine(ctx)
	if err != nil {
		return bench.FreshnessResult{}, err
	}
	c := bench.DefaultFreshness()
	c.Addr, c.WriteKey, c.ReadKey = addr, b.writer, b.readKey
	c.Samples, c.Background, c.Segment = b.o.samples, b.o.background, b.o.probeSegment
	c.In, c.Out = json.RawMessage(b.o.probeIn), json.RawMessage(b.o.probeOut)
	if !json.Valid(c.In) || !json.Valid(c.Out) {
		return bench.FreshnessResult{}, fmt.Errorf("--probe-in %s and --probe-out %s must be JSON objects of traits", b.o.probeIn, b.o.probeOut)
	}
	c.Workload = b.workload()
	c.Progress = func(s string) { b.progress("%s", s) }
	b.progress("freshness: %d probes at %s, %.0f background events/s ...", c.Samples, addr, c.Background)
	return bench.Freshness(ctx, c)
}
