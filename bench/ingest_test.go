package bench_test

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"testing"

	"github.com/tailorcdp/tailor/bench"
	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/internal/workload"
	"github.com/tailorcdp/tailor/state"
	"github.com/tailorcdp/tailor/stream"
)

// TestIngestSmall runs the ingest benchmark on a few events: the plumbing
// works and both rates are measured. (No figure is asserted: timings
// belong in BENCHMARKS.md, not in tests.)
func TestIngestSmall(t *testing.T) {
	wl := workload.DefaultConfig()
	wl.Customers = 1000
	res, err := bench.Ingest(context.Background(), bench.IngestConfig{
		Client:     stream.ClientConfig{Brokers: testkafka.Brokers(t)},
		Events:     5000,
		Partitions: 3,
		Workload:   wl,
		Store:      state.DefaultOptions(),
		Limits:     event.DefaultLimits(),
		DataDir:    t.TempDir(),
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.RawRate <= 0 || res.AppliedRate <= 0 || res.Ratio <= 0 || res.EventBytes < 100 {
		t.Errorf("result %+v", res)
	}
	if runtime.GOOS == "linux" && (res.RawCPU <= 0 || res.ApplyCPU <= 0) {
		t.Errorf("CPU per event not measured: raw %v, engine %v", res.RawCPU, res.ApplyCPU)
	}
}

// BenchmarkIngest applies b.N generated events end to end through an
// embedded broker (b.N is rounded up to at least 10,000 events).
func BenchmarkIngest(b *testing.B) {
	n := max(b.N, 10_000)
	res, err := bench.Ingest(context.Background(), bench.IngestConfig{
		Client:     stream.ClientConfig{Brokers: testkafka.Brokers(b)},
		Events:     n,
		Partitions: 12,
		Workload:   workload.DefaultConfig(),
		Store:      state.DefaultOptions(),
		Limits:     event.DefaultLimits(),
		DataDir:    b.TempDir(),
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.AppliedRate, "applied/s")
	b.ReportMetric(res.RawRate, "raw/s")
	b.ReportMetric(res.Ratio, "ratio")
	if res.ApplyCPU > 0 {
		b.ReportMetric(res.ApplyCPU*1000, "cpu-ns/event")
	}
}
