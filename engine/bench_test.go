package engine_test

import (
	"context"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/engine"
	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/internal/workload"
	"github.com/tailorcdp/tailor/state"
)

// BenchmarkApplySampleModel is the cost per event of applying workload
// events through a partition store (batches of 4,000, as a partition's
// share of a poll) under the sample config's model, and under the same
// model without its rules (no aggregates, segments or RFM segments; offers
// without eligibility or score rules), to give what the rules add.
func BenchmarkApplySampleModel(b *testing.B) {
	for _, tc := range []struct {
		name  string
		rules bool
	}{{"rules", true}, {"no-rules", false}} {
		b.Run(tc.name, func(b *testing.B) {
			a := newApplier(b, tc.rules)
			b.ReportAllocs()
			for b.Loop() {
				a.apply(b, 1)
			}
			a.commit(b)
		})
	}
}

// BenchmarkRulesOverhead measures what the sample config's rules add to
// applying an event: both models of BenchmarkApplySampleModel side by side,
// taking turns batch by batch, so that the share is measured under the
// same machine conditions even where the machine's speed drifts (shared
// cloud machines drift by 10-30% within minutes). It reports the time per
// event of each and the share the rules add (added-%), in wall time and,
// on Linux, in the applying thread's CPU time (cpu-added-%). Runs of
// 3,000,000 events agree within a point or two; runs of 1,000,000 spread
// over five. Each batch runs under a pprof label (model=rules or
// model=base), so a CPU profile of the run compares the two
// (go tool pprof -tagfocus model=rules).
func BenchmarkRulesOverhead(b *testing.B) {
	appliers := [2]*applier{newApplier(b, true), newApplier(b, false)}
	// The thread's CPU time leaves out what runs beside the applier
	// (Badger's compactions, the garbage collector's workers), which on a
	// small machine lands on either model's turn by chance.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	_, cpuOK := threadCPU()
	var spent, cpu [2]time.Duration
	n := 0
	for b.Loop() {
		n++
		if n%batchEvents != 0 {
			continue
		}
		for k := range 2 {
			i := (k + n/batchEvents) % 2 // each goes first every other batch
			start := time.Now()
			startCPU, _ := threadCPU()
			// Labelled, so that a CPU profile tells the models apart.
			pprof.Do(context.Background(), pprof.Labels("model", [2]string{"rules", "base"}[i]), func(context.Context) {
				appliers[i].apply(b, batchEvents)
			})
			endCPU, _ := threadCPU()
			spent[i] += time.Since(start)
			cpu[i] += endCPU - startCPU
		}
	}
	events := float64(n - n%batchEvents)
	if events == 0 {
		return
	}
	perEvent := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / events }
	b.ReportMetric(perEvent(spent[0]), "rules-ns/event")
	b.ReportMetric(perEvent(spent[1]), "base-ns/event")
	b.ReportMetric(100*(float64(spent[0])/float64(spent[1])-1), "added-%")
	if cpuOK {
		b.ReportMetric(perEvent(cpu[0]), "rules-cpu-ns/event")
		b.ReportMetric(perEvent(cpu[1]), "base-cpu-ns/event")
		b.ReportMetric(100*(float64(cpu[0])/float64(cpu[1])-1), "cpu-added-%")
	}
	b.ReportMetric(0, "ns/op") // the loop's own time mixes both models
}

// batchEvents is how many events a batch applies: a partition's share of
// a poll.
const batchEvents = 4000

// applier applies workload events to a partition store, in batches of
// batchEvents, as the processor does.
type applier struct {
	s      *state.Store
	raws   [][]byte
	parser *event.Parser
	batch  *state.Batch
	i      int
}

// newApplier opens a store under the sample config's model, or the same
// model without its rules, with the workload's events ready to apply.
func newApplier(b *testing.B, rules bool) *applier {
	b.Helper()
	doc, err := os.ReadFile("../config/sample.yaml")
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Parse(doc, "sample")
	if err != nil {
		b.Fatal(err)
	}
	if !rules {
		cfg.Aggregates, cfg.Segments, cfg.RFMSegments = nil, nil, false
		for i := range cfg.Offers {
			cfg.Offers[i].When, cfg.Offers[i].Score = "", ""
		}
	}
	compiled, err := engine.Compile(cfg)
	if err != nil {
		b.Fatal(err)
	}
	opts := compiled.Store
	opts.MemTableSize, opts.BlockCacheSize = 16<<20, 16<<20
	s, err := state.Open(b.TempDir(), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	// 300,000 events: most of the workload's 100,000 customers, so that
	// profiles come from the store as well as from its cache, as they do
	// in a running engine. They happened in the last minutes (about six
	// events a session, sessions 10 ms apart), as a live stream's do, so
	// that they count in the short windows (30 minutes, an hour) too; the
	// replays of the same events later in a long run are late events,
	// still inside.
	const events = 300_000
	wl := workload.DefaultConfig()
	wl.EndingNow(events)
	gen := workload.New(wl)
	raws := make([][]byte, events)
	for i := range raws {
		_, raws[i] = gen.Next()
	}
	return &applier{s: s, raws: raws, parser: event.NewParser(event.DefaultLimits()), batch: s.Begin()}
}

// apply applies the next n events, committing each full batch.
func (a *applier) apply(b *testing.B, n int) {
	for range n {
		// Parsed here, as the processor does: a parsed event's values live
		// until the next parse.
		ev, err := a.parser.Parse(a.raws[a.i%len(a.raws)], 0, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		// Replays of the workload are new events, with messageIds of
		// their own: deduplication is part of applying an event.
		if round := a.i / len(a.raws); round > 0 {
			ev.MessageID += "-replay" + strconv.Itoa(round)
		}
		if _, err := a.batch.Apply(&ev); err != nil {
			b.Fatal(err)
		}
		a.i++
		if a.i%batchEvents == 0 || a.batch.Full() {
			a.commit(b)
		}
	}
}

// commit commits the batch under way and begins the next.
func (a *applier) commit(b *testing.B) {
	if err := a.batch.Commit(int64(a.i)); err != nil {
		b.Fatal(err)
	}
	a.batch = a.s.Begin()
}
