package deliver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// consumer delivers the segments topic to one destination, in the
// destination's own consumer group.
type consumer struct {
	d     *Deliverer
	x     *dest
	group string
	opts  []kgo.Opt
	cl    *kgo.Client // while run runs

	cancel   context.CancelFunc // of run; nil until started
	stopped  chan struct{}      // closed when run returns
	stopOnce sync.Once

	mu     sync.Mutex
	gen    uint64             // bumped by every revocation
	work   context.CancelFunc // of the work in flight, nil when none
	done   chan struct{}      // closed when the work in flight stops
	oldest time.Time          // the oldest change of the work in flight; zero when none
}

// newConsumer returns the consumer of destination ds; run connects it.
func newConsumer(d *Deliverer, ds Destination) *consumer {
	c := &consumer{d: d, x: newDest(ds, d.cfg.Breaker), stopped: make(chan struct{}), group: d.cfg.Group + "." + ds.Name}
	c.opts = append(append([]kgo.Opt(nil), d.cfg.Client...),
		kgo.ConsumerGroup(c.group),
		kgo.ConsumeTopics(d.cfg.Topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(),
		// Eager: every rebalance revokes every partition, so that work cut
		// short is read again from the committed offsets.
		kgo.Balancers(kgo.RangeBalancer()),
		kgo.OnPartitionsRevoked(c.revoke),
		kgo.OnPartitionsLost(c.revoke),
	)
	if d.cfg.InstanceID != "" {
		c.opts = append(c.opts, kgo.InstanceID(d.cfg.InstanceID+"-deliver."+ds.Name))
	}
	if d.cfg.SessionTimeout > 0 {
		c.opts = append(c.opts, kgo.SessionTimeout(d.cfg.SessionTimeout))
	}
	return c
}

// stop ends run, if started, and waits for it.
func (c *consumer) stop() {
	c.stopOnce.Do(func() {
		c.d.mu.Lock()
		cancel := c.cancel
		c.d.mu.Unlock()
		if cancel != nil {
			cancel()
			<-c.stopped
		}
	})
}

// seed gives a new group its start: the offsets of the changes of the
// last max_age, committed before the group first consumes, so that a
// crash before its first delivery does not move the start on. A group
// that has offsets keeps them.
func (c *consumer) seed(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(c.d.cfg.Client...)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	committed, err := adm.FetchOffsets(ctx, c.group)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return fmt.Errorf("offsets of group %s: %w", c.group, err)
	}
	if err == nil && len(committed) > 0 {
		return nil
	}
	from := time.Now().Add(-c.x.cfg.Load().MaxAge)
	listed, err := adm.ListOffsetsAfterMilli(ctx, from.UnixMilli(), c.d.cfg.Topic)
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return fmt.Errorf("offsets of %s after %s: %w", c.d.cfg.Topic, from, err)
	}
	resp, err := adm.CommitOffsets(ctx, c.group, listed.Offsets())
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("start group %s at %s: %w", c.group, from, err)
	}
	return nil
}

// revoke stops the work in flight and waits for it: it is read again
// from the committed offsets by whoever gets the partitions.
func (c *consumer) revoke(context.Context, *kgo.Client, map[string][]int32) {
	c.mu.Lock()
	c.gen++
	cancel, done := c.work, c.done
	c.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// run connects and delivers until ctx ends.
func (c *consumer) run(ctx context.Context) {
	log := c.d.cfg.Logger.With("destination", c.x.cfg.Load().Name)
	for n := 1; ; n++ {
		err := c.seed(ctx)
		if err == nil {
			break
		}
		log.Warn("delivery consumer not started; trying again", "group", c.group, "err", err)
		if sleep(ctx, c.d.send.backoff.wait(n, 0)) != nil {
			return
		}
	}
	// A group whose seed commit did not reach the brokers in time still
	// starts at the last max_age.
	from := time.Now().Add(-c.x.cfg.Load().MaxAge).UnixMilli()
	cl, err := kgo.NewClient(append(c.opts, kgo.ConsumeResetOffset(kgo.NewOffset().AfterMilli(from)))...)
	if err != nil {
		log.Error("delivery consumer not started", "group", c.group, "err", err)
		return
	}
	defer cl.Close()
	c.cl = cl
	c.consume(ctx, log)
}

// consume delivers what the group assigns until ctx ends.
func (c *consumer) consume(ctx context.Context, log *slog.Logger) {
	for {
		c.mu.Lock()
		gen := c.gen
		c.mu.Unlock()
		fetches := c.cl.PollRecords(ctx, c.d.cfg.MaxPollRecords)
		if ctx.Err() != nil {
			return
		}
		fetches.EachError(func(topic string, p int32, err error) {
			log.Warn("delivery consumer fetch failed", "topic", topic, "partition", p, "err", err)
		})
		records := fetches.Records()
		if len(records) == 0 {
			continue
		}
		work, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		c.mu.Lock()
		if c.gen != gen { // revoked since the poll: read again from the commits
			c.mu.Unlock()
			cancel()
			continue
		}
		c.work, c.done, c.oldest = cancel, done, oldest(records)
		c.mu.Unlock()
		err := c.process(work, records)
		if err == nil {
			err = c.cl.CommitRecords(work, records...)
		}
		c.mu.Lock()
		c.work, c.done, c.oldest = nil, nil, time.Time{}
		c.mu.Unlock()
		cancel()
		close(done)
		if err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
			log.Warn("delivery offsets not committed; the changes are delivered again", "err", err)
		}
	}
}

// lag returns the age of the oldest change read and not yet done; 0
// when every change read is done.
func (c *consumer) lag() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.oldest.IsZero() {
		return 0
	}
	return max(0, time.Since(c.oldest))
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

// process delivers records to the destination; it returns once each
// change was delivered, withheld or dead-lettered, or with ctx's error.
func (c *consumer) process(ctx context.Context, records []*kgo.Record) error {
	prog := newProgress(records)
	changes := make([]Change, 0, len(records))
	for _, r := range records {
		ch, err := parseChange(r)
		if err != nil {
			c.d.cfg.Logger.Warn("segments topic record skipped", "err", err)
			prog.mark(r)
			continue
		}
		changes = append(changes, ch)
	}
	stop := make(chan struct{})
	committed := make(chan struct{})
	go func() { // commit what is done so far, as it goes
		defer close(committed)
		t := time.NewTicker(progressCommitInterval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if rs := prog.ready(); len(rs) > 0 {
					_ = c.cl.CommitRecords(ctx, rs...)
				}
			}
		}
	}()
	err := c.toDest(ctx, changes, prog)
	close(stop)
	<-committed
	return err
}

// toDest delivers the changes of the destination's segments: each key's
// changes one after the other in offset order (a lane per key), the keys
// at once, batch_size changes of distinct keys to a request.
func (c *consumer) toDest(ctx context.Context, changes []Change, prog *progress) error {
	cfg := c.x.cfg.Load()
	lanes := map[string][]Change{}
	var keys []string
	for _, ch := range changes {
		if !cfg.wants(ch.Segment) {
			prog.mark(ch.rec)
			continue
		}
		if _, ok := lanes[ch.Key]; !ok {
			keys = append(keys, ch.Key)
		}
		lanes[ch.Key] = append(lanes[ch.Key], ch)
	}
	send := func(ch Change) error { return c.d.deliverBatch(ctx, c, []Change{ch}) }
	if size := cfg.BatchSize; size > 1 {
		b := newBatcher(ctx, c, size)
		defer b.close()
		send = b.send
	}
	errs := make(chan error, len(keys))
	for _, key := range keys {
		go func() { errs <- c.lane(ctx, cfg, lanes[key], send, prog) }()
	}
	var err error
	for range keys {
		err = errors.Join(err, <-errs)
	}
	return err
}

// lane delivers one key's changes in order.
func (c *consumer) lane(ctx context.Context, cfg *Destination, changes []Change, send func(Change) error, prog *progress) error {
	for _, ch := range changes {
		ch, ok, err := c.d.prepare(ctx, c, cfg, ch)
		if err != nil {
			return err
		}
		if ok {
			if err := send(ch); err != nil {
				return err
			}
		}
		prog.mark(ch.rec)
	}
	return nil
}

// batcher gathers the changes lanes send into requests of up to size
// changes: a request goes when full, or when no change has come for
// batchLinger.
type batcher struct {
	in   chan batchItem
	done chan struct{}
}

type batchItem struct {
	ch    Change
	reply chan error
}

// batchLinger is how long a request that is not full waits for more.
const batchLinger = 2 * time.Millisecond

func newBatcher(ctx context.Context, c *consumer, size int) *batcher {
	b := &batcher{in: make(chan batchItem), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		var pending []batchItem
		flush := func() {
			if len(pending) == 0 {
				return
			}
			items := pending
			pending = nil
			go func() {
				batch := make([]Change, len(items))
				for i, it := range items {
					batch[i] = it.ch
				}
				err := c.d.deliverBatch(ctx, c, batch)
				for _, it := range items {
					it.reply <- err
				}
			}()
		}
		t := time.NewTimer(batchLinger)
		defer t.Stop()
		for {
			select {
			case it, ok := <-b.in:
				if !ok {
					flush()
					return
				}
				pending = append(pending, it)
				if len(pending) >= size {
					flush()
				}
				t.Reset(batchLinger)
			case <-t.C:
				flush()
			}
		}
	}()
	return b
}

// send delivers ch in a batch and returns when its request is done.
func (b *batcher) send(ch Change) error {
	reply := make(chan error, 1)
	b.in <- batchItem{ch, reply}
	return <-reply
}

// close ends the batcher once every lane is done.
func (b *batcher) close() {
	close(b.in)
	<-b.done
}

// prepare adds the profile fields to c, retrying a profile this instance
// cannot read now within the destination's bounds; false when c is
// withheld (consent) or was dead-lettered.
func (d *Deliverer) prepare(ctx context.Context, cs *consumer, cfg *Destination, c Change) (Change, bool, error) {
	x := cs.x
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
			return c, false, cs.deadLetter(ctx, []Change{out}, outcome{reason: err.Error(), attempts: n})
		}
		x.retried.Add(1)
		if err := sleep(ctx, d.send.backoff.wait(n, 0)); err != nil {
			return c, false, err
		}
	}
}

// deliverBatch sends one request's changes, dead-lettering them when
// they are past the destination's bounds.
func (d *Deliverer) deliverBatch(ctx context.Context, cs *consumer, batch []Change) error {
	x := cs.x
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
	return cs.deadLetter(ctx, batch, out)
}

// progressCommitInterval is how often the done prefix of a poll being
// delivered is committed.
const progressCommitInterval = 250 * time.Millisecond

// progress tracks which records of a poll are done, so that the offsets
// of a partition's done prefix are committed while the rest is delivered:
// a crash then delivers again only what was not done.
type progress struct {
	mu        sync.Mutex
	byPart    map[int32][]*kgo.Record // in offset order
	done      map[*kgo.Record]bool
	committed map[int32]int // per partition, how many of byPart were committed
}

func newProgress(records []*kgo.Record) *progress {
	p := &progress{byPart: map[int32][]*kgo.Record{}, done: map[*kgo.Record]bool{}, committed: map[int32]int{}}
	for _, r := range records {
		p.byPart[r.Partition] = append(p.byPart[r.Partition], r)
	}
	return p
}

// mark records r as done.
func (p *progress) mark(r *kgo.Record) {
	if p == nil || r == nil {
		return
	}
	p.mu.Lock()
	p.done[r] = true
	p.mu.Unlock()
}

// ready returns, for each partition whose done prefix grew, the prefix's
// last record (to commit), and counts it committed.
func (p *progress) ready() []*kgo.Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*kgo.Record
	for part, rs := range p.byPart {
		n := p.committed[part]
		for n < len(rs) && p.done[rs[n]] {
			n++
		}
		if n > p.committed[part] {
			out = append(out, rs[n-1])
			p.committed[part] = n
		}
	}
	return out
}
