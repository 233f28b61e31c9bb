package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fasthttp"

	"github.com/tailorcdp/tailor/internal/workload"
	"github.com/tailorcdp/tailor/stream"
)

// RemoteIngestConfig configures an ingest run against engines that are
// already running (a deployment elsewhere): events are produced into
// their events topic, and the applied rate is read from their metrics.
type RemoteIngestConfig struct {
	// Client reaches the engines' brokers; Topic is their events topic.
	Client stream.ClientConfig
	Topic  string
	// Engines are the HTTP host:port of every instance: each reports the
	// applied offsets of the partitions it holds on /metrics.
	Engines  []string
	Events   int
	Workload workload.Config
	// Timeout bounds the wait for the engines to apply the events.
	Timeout  time.Duration
	Progress func(string)
}

// IngestRemote produces cfg.Events events into the engines' topic while
// following tailor_applied_offset on every engine's /metrics until they
// have applied them all, then reads the same records with a consumer that
// does nothing, for the baseline. A running engine applies events as
// they arrive, so when it keeps up, the applied rate is the rate they
// were produced at: capacity shows only when the producer outruns it
// (produce with the engine stopped first to measure a backlog).
func IngestRemote(ctx context.Context, cfg RemoteIngestConfig) (IngestResult, error) {
	res := IngestResult{Events: cfg.Events}
	say := func(format string, a ...any) {
		if cfg.Progress != nil {
			cfg.Progress(fmt.Sprintf(format, a...))
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Minute
	}
	producer, err := stream.NewProducer(cfg.Client, kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return res, err
	}
	defer producer.Close()
	adm := kadm.NewClient(producer.Client())
	starts, err := adm.ListEndOffsets(ctx, cfg.Topic)
	if err != nil {
		return res, fmt.Errorf("end offsets of %s: %w", cfg.Topic, err)
	}
	from := make(map[int32]int64)
	starts.Each(func(o kadm.ListedOffset) { from[o.Partition] = o.Offset })
	if len(from) == 0 {
		return res, fmt.Errorf("topic %s has no partitions (is it the engines' events topic?)", cfg.Topic)
	}
	res.Partitions = len(from)
	applied := func() (int64, error) {
		var n int64
		for _, addr := range cfg.Engines {
			offsets, err := appliedOffsets(addr)
			if err != nil {
				return 0, err
			}
			for p, next := range offsets {
				n += max(0, next-from[p])
			}
		}
		return n, nil
	}

	// Follow the engines while producing.
	var clock rateClock
	follow := make(chan error, 1)
	followCtx, stopFollowing := context.WithCancel(ctx)
	defer stopFollowing()
	go func() {
		deadline := time.Now().Add(cfg.Timeout)
		for {
			n, err := applied()
			if err != nil {
				follow <- err
				return
			}
			clock.observe(n)
			if n >= int64(cfg.Events) {
				follow <- nil
				return
			}
			if time.Now().After(deadline) {
				follow <- fmt.Errorf("the engines applied %d of %d events in %s", n, cfg.Events, cfg.Timeout)
				return
			}
			select {
			case <-followCtx.Done():
				follow <- followCtx.Err()
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	if res.ProduceRate, res.EventBytes, err = produceWorkload(ctx, producer, cfg.Topic, cfg.Events, cfg.Workload, say); err != nil {
		return res, err
	}
	say("produced %d events (%.0f/s); waiting for the engines to apply them", cfg.Events, res.ProduceRate)
	if err := <-follow; err != nil {
		return res, err
	}
	res.AppliedRate, res.ApplySeconds = clock.rate(int64(cfg.Events))
	res.AppliedProgress = clock.points
	say("engines: %.0f events/s applied", res.AppliedRate)

	// The baseline reads the same records.
	offsets := make(map[int32]kgo.Offset, len(from))
	for p, o := range from {
		offsets[p] = kgo.NewOffset().At(o)
	}
	res.RawRate, res.RawSeconds, res.RawCPU, res.RawProgress, err = rawConsume(ctx, cfg.Client, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{cfg.Topic: offsets}), cfg.Topic, cfg.Events)
	if err != nil {
		return res, err
	}
	res.Ratio = res.AppliedRate / res.RawRate
	say("raw consumer: %.0f events/s", res.RawRate)
	return res, nil
}

// appliedOffsets reads tailor_applied_offset per partition from an
// engine's /metrics.
func appliedOffsets(addr string) (map[int32]int64, error) {
	status, body, err := fasthttp.GetTimeout(nil, "http://"+addr+"/metrics", 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("metrics of %s: %w", addr, err)
	}
	if status != fasthttp.StatusOK {
		return nil, fmt.Errorf("metrics of %s: status %d", addr, status)
	}
	return parseAppliedOffsets(body)
}

// parseAppliedOffsets reads the tailor_applied_offset samples of a
// Prometheus text exposition.
func parseAppliedOffsets(body []byte) (map[int32]int64, error) {
	out := make(map[int32]int64)
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), `tailor_applied_offset{partition="`)
		if !ok {
			continue
		}
		part, value, ok := strings.Cut(rest, `"} `)
		if !ok {
			return nil, fmt.Errorf("metrics line %q", sc.Text())
		}
		p, err1 := strconv.ParseInt(part, 10, 32)
		v, err2 := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("metrics line %q", sc.Text())
		}
		out[int32(p)] = int64(v)
	}
	return out, sc.Err()
}
