package bench_test

import (
	"bytes"
	"context"
	"image/png"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/bench"
	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/engine"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/internal/workload"
	"github.com/tailorcdp/tailor/stream"
)

// startEngine runs an engine with the sample configuration on the test
// brokers until the test ends.
func startEngine(t *testing.T) (*engine.Engine, *config.Config) {
	cfg, err := config.Parse(mustSample(t), "sample")
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir, cfg.HTTP.Addr, cfg.Embedded.Port = t.TempDir(), "127.0.0.1:0", 0
	cfg.Kafka.Brokers, cfg.Kafka.TopicPrefix, cfg.Kafka.Partitions = testkafka.Brokers(t), testkafka.Prefix(t), 3
	cfg.Kafka.Group = cfg.Kafka.TopicPrefix + "engine"
	cfg.Store.MemTableSize, cfg.Store.BlockCacheSize = 4<<20, 4<<20
	ctx, cancel := context.WithCancel(context.Background())
	e, err := engine.Start(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return e, cfg
}

// TestIngestRemote runs the ingest benchmark against a running engine:
// events into its topic, the applied rate from its /metrics.
func TestIngestRemote(t *testing.T) {
	e, cfg := startEngine(t)
	wl := workload.DefaultConfig()
	wl.Customers = 500
	res, err := bench.IngestRemote(context.Background(), bench.RemoteIngestConfig{
		Client:   stream.ClientConfig{Brokers: cfg.Kafka.Brokers},
		Topic:    e.Topics().Events,
		Engines:  []string{e.HTTPAddr()},
		Events:   3000,
		Workload: wl,
		Timeout:  time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Partitions != 3 || res.AppliedRate <= 0 || res.RawRate <= 0 || len(res.AppliedProgress) == 0 {
		t.Errorf("result %+v", res)
	}
}

// TestFreshnessAndReport measures freshness on a few samples against an
// engine running the sample configuration, over real HTTP, then writes a
// report with every section and checks its charts are PNG images.
func TestFreshnessAndReport(t *testing.T) {
	e, cfg := startEngine(t)
	ctx := context.Background()

	fc := bench.DefaultFreshness()
	fc.Addr, fc.WriteKey, fc.ReadKey = e.HTTPAddr(), cfg.HTTP.WriteKeys[0].Secret, cfg.HTTP.ReadKeys[0].Secret
	fc.Samples, fc.Background, fc.Timeout = 20, 500, 30*time.Second
	fc.Workload.Customers = 100
	res, err := bench.Freshness(ctx, fc)
	if err != nil {
		t.Fatal(err)
	}
	if res.Samples != 20 || res.Timeouts != 0 || len(res.Latencies) != 20 || !(res.P50 > 0 && res.P50 <= res.P99 && res.P99 <= res.Max) || res.Background <= 0 {
		t.Errorf("freshness %+v", res)
	}

	// The report: every section, every chart a PNG.
	r := bench.Report{Command: "tailor bench all", Started: time.Now(), Machine: bench.DescribeMachine(), Target: "test", Freshness: &res,
		Ingest: &bench.IngestResult{Events: 100, Partitions: 3, RawRate: 1000, AppliedRate: 500, Ratio: 0.5,
			RawProgress:     []bench.Point{{Seconds: 0, Count: 0}, {Seconds: 0.1, Count: 100}},
			AppliedProgress: []bench.Point{{Seconds: 0, Count: 0}, {Seconds: 0.2, Count: 100}}},
		Decide: &bench.DecideResult{Placements: []string{"a"}, EngineSaturated: 100, BaseSaturated: 200, Ratio: 0.5,
			Engine:   []bench.LoadResult{{Rate: 50, Throughput: 50, P50: 100, P90: 200, P99: 300, P999: 400, Max: 500, Timeline: []float64{49, 51}}},
			Baseline: []bench.LoadResult{{Rate: 50, Throughput: 50, P50: 50, P90: 60, P99: 70, P999: 80, Max: 90, Timeline: []float64{50, 50}}}},
	}
	dir := t.TempDir()
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Ingest", "## Decide", "## Freshness", "| cores | ", "`tailor bench all`", "**applied / raw** | **0.50**"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
	for _, name := range []string{"ingest.png", "decide-latency.png", "decide-throughput.png", "freshness.png"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := png.DecodeConfig(bytes.NewReader(b)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if !strings.Contains(string(md), "("+name+")") {
			t.Errorf("report.md does not show %s", name)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "report.json")); err != nil {
		t.Error(err)
	}
}

func mustSample(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../config/sample.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return b
}
