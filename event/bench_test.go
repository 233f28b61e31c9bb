package event_test

import (
	"testing"

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/internal/workload"
)

// BenchmarkParse decodes and validates the events of the standard workload
// (about 400 bytes each): the per-event decode cost of the consumer.
func BenchmarkParse(b *testing.B) {
	gen := workload.New(workload.DefaultConfig())
	events := make([][]byte, 1024)
	size := 0
	for i := range events {
		_, events[i] = gen.Next()
		size += len(events[i])
	}
	p := event.NewParser(event.DefaultLimits())
	b.SetBytes(int64(size / len(events)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := p.Parse(events[i%len(events)], 0, received); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
