package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/internal/workload"
	"github.com/tailorcdp/tailor/state"
	"github.com/tailorcdp/tailor/stream"
)

// IngestConfig configures an ingest run.
type IngestConfig struct {
	Client     stream.ClientConfig
	Events     int
	Partitions int
	Workload   workload.Config
	Store      state.Options
	Limits     event.Limits
	// MaxPollRecords is the processor's poll size (0: its default).
	MaxPollRecords int
	// DataDir receives the run's partition stores (a fresh directory).
	DataDir string
	Logger  *slog.Logger
	// Progress, when set, receives a line now and then.
	Progress func(string)
}

// IngestResult is the outcome of an ingest run.
type IngestResult struct {
	Events       int     `json:"events"`
	Partitions   int     `json:"partitions"`
	EventBytes   float64 `json:"avg_event_bytes"`
	ProduceRate  float64 `json:"produce_events_per_s"`
	RawRate      float64 `json:"raw_consume_events_per_s"`
	AppliedRate  float64 `json:"applied_events_per_s"`
	Ratio        float64 `json:"applied_to_raw_ratio"`
	RawSeconds   float64 `json:"raw_seconds"`
	ApplySeconds float64 `json:"apply_seconds"`
	// RawCPU and ApplyCPU are the CPU time this process used per event
	// over the same middle of each phase as the rates, in microseconds,
	// for sizing a deployment: every thread counts (the engine's garbage
	// collection and Badger's writes and compactions; with the embedded
	// broker, its serving of the fetches too). 0 where not measured: an
	// engine in another process (--engine), or a system without
	// getrusage.
	RawCPU   float64 `json:"raw_cpu_us_per_event,omitempty"`
	ApplyCPU float64 `json:"apply_cpu_us_per_event,omitempty"`
	// RawProgress and AppliedProgress are the events consumed and applied
	// over time, for charts.
	RawProgress     []Point `json:"raw_progress"`
	AppliedProgress []Point `json:"applied_progress"`
}

// Point is a count at a time, in seconds from the start of a phase.
type Point struct {
	Seconds float64 `json:"s"`
	Count   float64 `json:"n"`
}

// Ingest produces cfg.Events generated events to a fresh topic, then reads
// the topic twice: once with a consumer that only counts records (the raw
// rate), once with the engine's processor applying them to fresh stores
// (the applied rate, read from the stores' applied offsets). Both clocks
// start at the first record seen, so group joins and store opening are
// not counted against either.
func Ingest(ctx context.Context, cfg IngestConfig) (IngestResult, error) {
	res := IngestResult{Events: cfg.Events, Partitions: cfg.Partitions}
	say := func(format string, a ...any) {
		if cfg.Progress != nil {
			cfg.Progress(fmt.Sprintf(format, a...))
		}
	}
	prefix := "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "."
	topics := stream.NewTopics(prefix)

	producer, err := stream.NewProducer(cfg.Client, kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return res, err
	}
	defer producer.Close()
	if _, err := stream.EnsureTopics(ctx, producer.Client(), topics, int32(cfg.Partitions), 1); err != nil {
		return res, err
	}
	defer func() {
		_, _ = kadm.NewClient(producer.Client()).DeleteTopics(context.Background(), topics.Events, topics.Changelog, topics.Segments, topics.DeadLetter, topics.Progress, topics.Stats, topics.Audit)
	}()

	// Each phase runs under a profiler label (phase=produce, raw or
	// engine), so that a CPU profile of the run can be narrowed to one
	// (go tool pprof -tagfocus phase=engine); goroutines a phase starts
	// inherit it, the runtime's garbage collector workers do not.
	phase := func(name string) context.Context {
		return pprof.WithLabels(ctx, pprof.Labels("phase", name))
	}

	// Produce.
	pprof.SetGoroutineLabels(phase("produce"))
	if res.ProduceRate, res.EventBytes, err = produceWorkload(ctx, producer, topics.Events, cfg.Events, cfg.Workload, say); err != nil {
		return res, err
	}
	say("produced %d events (%.0f/s, %.0f bytes each)", cfg.Events, res.ProduceRate, res.EventBytes)

	// Raw consume: the baseline.
	pprof.SetGoroutineLabels(phase("raw"))
	res.RawRate, res.RawSeconds, res.RawCPU, res.RawProgress, err = rawConsume(ctx, cfg.Client,
		kgo.ConsumeTopics(topics.Events), topics.Events, cfg.Events)
	if err != nil {
		return res, err
	}
	say("raw consumer: %.0f events/s", res.RawRate)

	// The engine's processor.
	pprof.SetGoroutineLabels(phase("engine"))
	defer pprof.SetGoroutineLabels(ctx)
	dir := filepath.Join(cfg.DataDir, prefix)
	defer os.RemoveAll(dir)
	proc, err := stream.NewProcessor(stream.ProcessorConfig{
		Client:         cfg.Client,
		Group:          prefix + "engine",
		Topics:         topics,
		DataDir:        dir,
		Partitions:     cfg.Partitions,
		Store:          cfg.Store,
		Limits:         cfg.Limits,
		Logger:         cfg.Logger,
		MaxPollRecords: cfg.MaxPollRecords,
	})
	if err != nil {
		return res, err
	}
	runCtx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- proc.Run(runCtx) }()
	applied := func() (n int64, assigned int) {
		for _, next := range proc.Reads().Applied() {
			n += next
			assigned++
		}
		return n, assigned
	}
	var clock rateClock
	for {
		n, assigned := applied()
		if assigned == cfg.Partitions {
			clock.observe(n)
		}
		if n >= int64(cfg.Events) && assigned == cfg.Partitions {
			break
		}
		select {
		case err := <-errc:
			stop()
			proc.Close()
			return res, fmt.Errorf("processor stopped: %v", err)
		case <-ctx.Done():
			stop()
			proc.Close()
			return res, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	res.AppliedRate, res.ApplySeconds = clock.rate(int64(cfg.Events))
	res.ApplyCPU = clock.cpuPerEvent()
	res.AppliedProgress = clock.points
	stop()
	<-errc
	proc.Close()
	res.Ratio = res.AppliedRate / res.RawRate
	say("engine: %.0f events/s applied", res.AppliedRate)
	return res, nil
}

// produceWorkload produces n generated events to topic and returns the
// rate and the average event size.
func produceWorkload(ctx context.Context, producer *stream.Producer, topic string, n int, wl workload.Config, say func(string, ...any)) (rate, avgBytes float64, err error) {
	gen := workload.New(wl)
	var failed atomic.Int64
	var size int64
	start := time.Now()
	for i := range n {
		key, value := gen.Next()
		size += int64(len(value))
		producer.ProduceAsync(ctx, &kgo.Record{Topic: topic, Key: []byte(key), Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Add(1)
			}
		})
		if i%50_000 == 0 && i > 0 {
			say("produced %d/%d", i, n)
		}
	}
	if err := producer.Flush(ctx); err != nil {
		return 0, 0, err
	}
	if f := failed.Load(); f > 0 {
		return 0, 0, fmt.Errorf("%d of %d records not produced", f, n)
	}
	return float64(n) / time.Since(start).Seconds(), float64(size) / float64(n), nil
}

// rawConsume reads n records of topic (where what says, from the start by
// default) with a consumer that does nothing with them (beyond fetching
// and decompressing) and returns its rate and its CPU time per record
// (rateClock.cpuPerEvent).
func rawConsume(ctx context.Context, client stream.ClientConfig, what kgo.Opt, topic string, n int) (rate, seconds, cpu float64, progress []Point, err error) {
	opts := append(client.Opts(), stream.FetchOpts()...)
	cl, err := kgo.NewClient(append(opts,
		what,
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)...)
	if err != nil {
		return 0, 0, 0, nil, err
	}
	defer cl.Close()
	var clock rateClock
	clock.observe(0)
	seen := 0
	for seen < n {
		fetches := cl.PollRecords(ctx, 5000)
		if err := ctx.Err(); err != nil {
			return 0, 0, 0, nil, err
		}
		if errs := fetches.Errors(); len(errs) > 0 {
			return 0, 0, 0, nil, fmt.Errorf("raw consume of %s: %w", topic, errs[0].Err)
		}
		seen += fetches.NumRecords()
		clock.observe(int64(seen))
	}
	rate, seconds = clock.rate(int64(n))
	return rate, seconds, clock.cpuPerEvent(), clock.points, nil
}

// rateClock measures a steady rate: over the middle of the run, from the
// first time a tenth of the total is seen to the first time nine tenths
// are, so that start-up (group joins, store opening) and the tail count
// against neither side. A run too small to show its middle in several
// steps is timed whole.
type rateClock struct {
	start  time.Time
	obs    []observation // every observation that saw a new count
	points []Point       // every 50 ms at most, for charts
	// lo and hi are the observations rate timed between.
	lo, hi int
}

// observation is a count seen at a time, with the process's CPU time then
// (cpuOK false: unknown).
type observation struct {
	Point
	cpu   time.Duration
	cpuOK bool
}

func (c *rateClock) observe(n int64) {
	now := time.Now()
	if c.start.IsZero() {
		c.start = now
	}
	pt := Point{Seconds: now.Sub(c.start).Seconds(), Count: float64(n)}
	if k := len(c.obs); k == 0 || c.obs[k-1].Count != pt.Count {
		cpu, ok := processCPU()
		c.obs = append(c.obs, observation{Point: pt, cpu: cpu, cpuOK: ok})
	}
	if k := len(c.points); k == 0 || pt.Seconds-c.points[k-1].Seconds >= 0.05 {
		c.points = append(c.points, pt)
	}
}

// rate returns the rate over the middle of the run and the seconds the
// whole run took.
func (c *rateClock) rate(total int64) (perSecond, seconds float64) {
	c.observe(total)
	end := c.obs[len(c.obs)-1]
	c.points = append(c.points, end.Point)
	seconds = end.Seconds
	at := func(share float64) int {
		for i, o := range c.obs {
			if o.Count >= share*float64(total) {
				return i
			}
		}
		return len(c.obs) - 1
	}
	c.lo, c.hi = at(0.1), at(0.9)
	// A middle seen in fewer than 8 steps is a buffer being drained, not
	// a rate: time the whole run then.
	if c.hi-c.lo >= 8 && c.obs[c.hi].Seconds > c.obs[c.lo].Seconds {
		lo, hi := c.obs[c.lo], c.obs[c.hi]
		return (hi.Count - lo.Count) / (hi.Seconds - lo.Seconds), seconds
	}
	c.lo, c.hi = 0, len(c.obs)-1
	return float64(total) / seconds, seconds
}

// cpuPerEvent returns the process's CPU time per event, in microseconds,
// between the observations rate timed (0 when unknown); call rate first.
func (c *rateClock) cpuPerEvent() float64 {
	if c.hi >= len(c.obs) {
		return 0
	}
	lo, hi := c.obs[c.lo], c.obs[c.hi]
	if !lo.cpuOK || !hi.cpuOK || hi.Count <= lo.Count {
		return 0
	}
	return float64((hi.cpu - lo.cpu).Microseconds()) / (hi.Count - lo.Count)
}
