package engine_test

import (
	"os"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/bench/workload"
	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/engine"
	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/state"
)

// BenchmarkApplySampleModel is the cost per event of applying workload
// events through a partition store (batches of 4,000, as a partition's
// share of a poll) under the sample config's model, and under the same
// model without its rules (no aggregates, segments or RFM segments; offers
// without eligibility or score rules), to give what the rules add.
func BenchmarkApplySampleModel(b *testing.B) {
	doc, err := os.ReadFile("../config/sample.yaml")
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		rules bool
	}{{"rules", true}, {"no-rules", false}} {
		b.Run(tc.name, func(b *testing.B) {
			cfg, err := config.Parse(doc, "sample")
			if err != nil {
				b.Fatal(err)
			}
			if !tc.rules {
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
			defer s.Close()
			wl := workload.DefaultConfig()
			wl.Start = time.Now().Add(-24 * time.Hour)
			gen := workload.New(wl)
			raws := make([][]byte, 50_000)
			for i := range raws {
				_, raws[i] = gen.Next()
			}
			parser := event.NewParser(event.DefaultLimits())
			b.ReportAllocs()
			batch := s.Begin()
			i := 0
			for b.Loop() {
				// Parsed here, as the processor does: a parsed event's
				// values live until the next parse.
				ev, err := parser.Parse(raws[i%len(raws)], 0, time.Now())
				if err != nil {
					b.Fatal(err)
				}
				ev.MessageID = "" // replays of the workload are new events
				if _, err := batch.Apply(&ev); err != nil {
					b.Fatal(err)
				}
				i++
				if i%4000 == 0 || batch.Full() {
					if err := batch.Commit(int64(i)); err != nil {
						b.Fatal(err)
					}
					batch = s.Begin()
				}
			}
			if err := batch.Commit(int64(i)); err != nil {
				b.Fatal(err)
			}
		})
	}
}
