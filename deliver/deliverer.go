package deliver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Config configures a Deliverer.
type Config struct {
	// Client is the Kafka connection (brokers, TLS, SASL).
	Client []kgo.Opt
	// Group is the delivery consumer group: "<kafka.group>-deliver".
	Group string
	// InstanceID, when set, makes the member static ("<id>-deliver"),
	// so that a restarted instance takes its partitions back at once.
	InstanceID     string
	SessionTimeout time.Duration
	// Topic is the segments topic; DeadLetterTopic where changes past
	// their destination's bounds go; EventsTopic the events topic, whose
	// offsets in a change's tailor.source header say when its profile is
	// committed.
	Topic, DeadLetterTopic, EventsTopic string
	Profiles                            Profiles
	Logger                              *slog.Logger
	// Registerer takes the metrics (nil: none).
	Registerer prometheus.Registerer
	// HTTPClient sends the requests (nil: a client with keep-alives).
	HTTPClient *http.Client
	// Backoff spaces retries (zero: DefaultBackoff).
	Backoff Backoff
	// MaxPollRecords bounds the changes read at once (0: 10000).
	MaxPollRecords int
	// Breaker configures the circuit breakers (zero: DefaultBreaker).
	Breaker Breaker
}

// Deliverer is the delivery consumer.
type Deliverer struct {
	cfg     Config
	cl      *kgo.Client
	dests   destSet
	send    sender
	metrics *metrics

	mu     sync.Mutex
	gen    uint64             // bumped by every revocation
	cancel context.CancelFunc // of the work in flight, nil when none
	done   chan struct{}      // closed when the work in flight stops
	oldest time.Time          // the oldest change of the work in flight; zero when none
}

// New returns a deliverer for ds; Run starts it.
func New(cfg Config, ds []Destination) (*Deliverer, error) {
	if cfg.Backoff == (Backoff{}) {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.Breaker == (Breaker{}) {
		cfg.Breaker = DefaultBreaker
	}
	if cfg.MaxPollRecords <= 0 {
		cfg.MaxPollRecords = 10000
	}
	if cfg.HTTPClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = maxInFlight
		cfg.HTTPClient = &http.Client{Transport: tr}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Deliverer{cfg: cfg, send: sender{client: cfg.HTTPClient, backoff: cfg.Backoff, now: time.Now}}
	d.dests.breaker = cfg.Breaker
	d.dests.replace(ds)
	d.metrics = newMetrics(cfg.Registerer, d)
	opts := append(append([]kgo.Opt(nil), cfg.Client...),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(),
		// Eager: every rebalance revokes every partition, so that work cut
		// short is read again from the committed offsets.
		kgo.Balancers(kgo.RangeBalancer()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsRevoked(d.revoke),
		kgo.OnPartitionsLost(d.revoke),
	)
	if cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(cfg.InstanceID+"-deliver"))
	}
	if cfg.SessionTimeout > 0 {
		opts = append(opts, kgo.SessionTimeout(cfg.SessionTimeout))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("delivery consumer (group %s): %w", cfg.Group, err)
	}
	d.cl = cl
	return d, nil
}

// SetDestinations puts ds in force (a reload): a removed destination
// receives nothing more, its requests in flight are given up.
func (d *Deliverer) SetDestinations(ds []Destination) { d.dests.replace(ds) }

// revoke stops the work in flight and waits for it: it is read again
// from the committed offsets by whoever gets the partitions.
func (d *Deliverer) revoke(context.Context, *kgo.Client, map[string][]int32) {
	d.mu.Lock()
	d.gen++
	cancel, done := d.cancel, d.done
	d.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// Run delivers until ctx ends.
func (d *Deliverer) Run(ctx context.Context) error {
	for {
		d.mu.Lock()
		gen := d.gen
		d.mu.Unlock()
		fetches := d.cl.PollRecords(ctx, d.cfg.MaxPollRecords)
		if ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			d.cfg.Logger.Warn("delivery consumer fetch failed", "topic", topic, "partition", p, "err", err)
		})
		records := fetches.Records()
		if len(records) == 0 {
			continue
		}
		work, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		d.mu.Lock()
		if d.gen != gen { // revoked since the poll: read again from the commits
			d.mu.Unlock()
			cancel()
			continue
		}
		d.cancel, d.done, d.oldest = cancel, done, oldest(records)
		d.mu.Unlock()
		err := d.process(work, records)
		if err == nil {
			err = d.cl.CommitRecords(work, records...)
		}
		d.mu.Lock()
		d.cancel, d.done, d.oldest = nil, nil, time.Time{}
		d.mu.Unlock()
		cancel()
		close(done)
		if err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
			d.cfg.Logger.Warn("delivery offsets not committed; the changes are delivered again", "err", err)
		}
	}
}

// oldest returns the earliest timestamp of records.
func oldest(records []*kgo.Record) time.Time {
	t := records[0].Timestamp
	for _, r := range records {
		if r.Timestamp.Before(t) {
			t = r.Timestamp
		}
	}
	return t
}

// Close leaves the group and closes the connection.
func (d *Deliverer) Close() { d.cl.Close() }

// process delivers records to every destination in force; it returns
// once each change was delivered, withheld or dead-lettered, or with ctx's
// error.
func (d *Deliverer) process(ctx context.Context, records []*kgo.Record) error {
	changes := make([]Change, 0, len(records))
	for _, r := range records {
		c, err := parseChange(r)
		if err != nil {
			d.cfg.Logger.Warn("segments topic record skipped", "err", err)
			continue
		}
		changes = append(changes, c)
	}
	dests := d.dests.list()
	errs := make(chan error, len(dests))
	for _, x := range dests {
		go func() { errs <- d.toDest(ctx, x, changes) }()
	}
	var err error
	for range dests {
		err = errors.Join(err, <-errs)
	}
	return err
}

// toDest delivers the changes of x's segments to x: a key's changes one
// after the other in offset order (round i holds each key's i-th change),
// the keys of a round at once, batch_size to a request.
func (d *Deliverer) toDest(ctx context.Context, x *dest, changes []Change) error {
	cfg := x.cfg.Load()
	var rounds [][]Change
	seen := map[string]int{}
	for _, c := range changes {
		if !cfg.wants(c.Segment) {
			continue
		}
		i := seen[c.Key]
		seen[c.Key] = i + 1
		if i == len(rounds) {
			rounds = append(rounds, nil)
		}
		rounds[i] = append(rounds[i], c)
	}
	for _, round := range rounds {
		if err := d.round(ctx, x, round); err != nil {
			return err
		}
	}
	return nil
}

// round delivers changes of distinct keys.
func (d *Deliverer) round(ctx context.Context, x *dest, changes []Change) error {
	cfg := x.cfg.Load()
	var ready []Change
	for _, c := range changes {
		c, ok, err := d.prepare(ctx, x, cfg, c)
		if err != nil {
			return err
		}
		if ok {
			ready = append(ready, c)
		}
	}
	size := max(1, cfg.BatchSize)
	errs := make(chan error, (len(ready)+size-1)/size)
	n := 0
	for i := 0; i < len(ready); i += size {
		batch := ready[i:min(i+size, len(ready))]
		n++
		go func() { errs <- d.deliverBatch(ctx, x, batch) }()
	}
	var err error
	for range n {
		err = errors.Join(err, <-errs)
	}
	return err
}

// prepare adds the profile fields to c, retrying a profile this instance
// cannot read now within the destination's bounds; false when c is
// withheld (consent) or was dead-lettered.
func (d *Deliverer) prepare(ctx context.Context, x *dest, cfg *Destination, c Change) (Change, bool, error) {
	first := born([]Change{c}, time.Now())
	for n := 1; ; n++ {
		out, ok, err := withProfile(ctx, c, cfg, d.cfg.Profiles, d.cfg.EventsTopic)
		if ctx.Err() != nil {
			return c, false, ctx.Err()
		}
		if err == nil {
			if !ok {
				x.withheld.Add(1)
			}
			return out, ok, nil
		}
		if x.removed.Load() {
			return c, false, nil
		}
		if n >= cfg.MaxAttempts || time.Since(first) >= cfg.MaxAge {
			return c, false, d.deadLetter(ctx, x, []Change{out}, outcome{reason: err.Error(), attempts: n})
		}
		x.retried.Add(1)
		if err := sleep(ctx, d.send.backoff.wait(n, 0)); err != nil {
			return c, false, err
		}
	}
}

// deliverBatch sends one request's changes, dead-lettering them when
// they are past the destination's bounds.
func (d *Deliverer) deliverBatch(ctx context.Context, x *dest, batch []Change) error {
	out, err := d.send.deliver(ctx, x, batch)
	switch {
	case err != nil:
		return err
	case out.delivered:
		x.delivered.Add(int64(len(batch)))
		now := time.Now()
		for _, c := range batch {
			lat := now.Sub(c.written)
			x.observe(lat)
			d.metrics.latency.WithLabelValues(x.cfg.Load().Name).Observe(lat.Seconds())
		}
		return nil
	case out.reason == "destination removed":
		return nil
	}
	return d.deadLetter(ctx, x, batch, out)
}
