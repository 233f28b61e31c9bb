package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/state"
)

// ErrNotOwned is returned for a key whose partition this instance does not
// hold right now.
var ErrNotOwned = errors.New("partition not assigned to this instance")

// Dead-letter record headers.
const (
	HeaderReason = "tailor.reason" // why the record was rejected
	HeaderSource = "tailor.source" // topic/partition/offset it came from
)

// Identity records: the engine's own records on the events topic that
// move a profile into the one it was linked to (see state.Link). The
// HeaderIdentity header tells them from events.
const (
	HeaderIdentity = "tailor.identity"
	// IdentityLink: keyed by the linked key, the value the key it joins;
	// its partition takes the profile out and sends an IdentityMerge.
	IdentityLink = "link"
	// IdentityMerge: keyed by the joined key, the value the encoded
	// profile to merge into it.
	IdentityMerge = "merge"
)

// ProcessorConfig configures a Processor.
type ProcessorConfig struct {
	Client ClientConfig
	Group  string
	// InstanceID, when set, makes the processor a static group member.
	InstanceID     string
	SessionTimeout time.Duration
	Topics         Topics
	DataDir        string // partition stores live in DataDir/<topic>-<partition>
	// Partitions is the partition count of the events topic, by which keys
	// are routed to partitions.
	Partitions int
	// Store configures the partition stores. With Store.Changelog every
	// batch's store writes go to the changelog topic with its outputs,
	// and a store missing or damaged on assignment is restored from it
	// (decision 0021).
	Store  state.Options
	Limits event.Limits
	// MaxPollRecords bounds one poll, and one batch of a partition.
	MaxPollRecords int
	Logger         *slog.Logger
	Metrics        *Metrics
	// LagInterval is how often end offsets are read for lag and readiness.
	LagInterval time.Duration
	// Advertise is the HTTP address other instances reach this one at; it
	// is published with the statistics of the partitions held here, so
	// that requests for their keys can be sent here.
	Advertise string
}

// Processor is a consumer group member that applies events to profiles.
// Each assigned partition has its own store, opened on assignment and
// closed on revocation; consumption of a partition starts at the offset
// stored in its store, so Kafka's group commits are informational only.
// Every record is applied by its key's partition (reroute.go); a lost
// group session keeps the stores readable (lost.go); a store that fails
// fences its partition alone (fence.go).
type Processor struct {
	cfg ProcessorConfig
	cl  *kgo.Client
	log *slog.Logger
	m   *Metrics

	mu       sync.RWMutex
	parts    map[int32]*partition
	fenced   map[int32]error      // partitions held but fenced, with why (fence.go)
	stale    map[int32]*partition // stores kept readable from a lost session (lost.go)
	session  session
	assigned bool           // a group assignment has been received
	closing  sync.WaitGroup // partitions being fenced, closed in the background

	fatal chan error // a partition whose outputs cannot be written stops Run

	// ctx is the workers' context, for producing dead letters; Close ends it.
	ctx    context.Context
	cancel context.CancelFunc

	quintiles atomic.Pointer[cachedQuintiles]
	model     atomic.Pointer[state.Model] // given to the stores, replaced by SetModel
	shared    sharedStats                 // the other partitions' statistics

	// cache statistics of stores already closed, so the counters stay monotonic
	closedHits, closedMisses atomic.Uint64
}

// partition is an assigned partition: its store and the worker goroutine
// that applies its records, fed through work, so that fetching the next
// records overlaps applying these.
type partition struct {
	id     int32
	work   chan []*kgo.Record
	done   chan struct{} // closed when the worker has stopped
	failed bool          // the worker's: a failed apply stops applying
	out    *output       // exactly-once outputs
	// replayTo is the progress marker read on assignment: records before
	// it had their outputs produced already, before a crash.
	replayTo int64
	// redoWake is the instant of a wake whose outputs were produced but
	// which the store had not committed before a crash (0: none);
	// redoBackfill likewise for a backfill batch.
	redoWake     int64
	redoBackfill bool
	// poke wakes the worker for a new model to backfill.
	poke chan struct{}
	// backfillLeft counts the profiles the backfill under way has left,
	// for the metric; -1 when not counted yet.
	backfillLeft int
	// started is closed once replayTo and redoWake are known; the worker
	// wakes no profile before.
	started   chan struct{}
	startOnce sync.Once
	store     *state.Store
	parser    *event.Parser
	next      atomic.Int64 // next offset to apply
	// target is the end offset read after assignment; the partition has
	// caught up once next reaches it. -1 until read.
	target atomic.Int64
	label  string
}

// FetchOpts are the fetch settings of the engine's consumer, for a
// consumer measured against it (bench ingest's raw consumer) to fetch the
// same way. A fetch waits at most 200 ms for records and carries up to
// 32 MB, 8 MB of them from one partition, rather than Kafka's default of
// 1 MB a partition (2,000 to 3,000 typical events): a backlog is read in
// fewer, larger fetches, which the embedded broker, in the same process,
// answers with less work (BENCHMARKS.md: +7% to +14% events applied).
func FetchOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.FetchMaxWait(200 * time.Millisecond),
		kgo.FetchMaxBytes(32 << 20),
		kgo.FetchMaxPartitionBytes(8 << 20),
	}
}

// NewProcessor connects to the cluster and joins the group; consumption
// starts with Run.
func NewProcessor(cfg ProcessorConfig) (*Processor, error) {
	if cfg.Partitions < 1 {
		// Records are routed by it: every one would look misplaced.
		return nil, fmt.Errorf("processor of %s: the events topic's partition count is %d, want at least 1", cfg.Topics.Events, cfg.Partitions)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxPollRecords <= 0 {
		cfg.MaxPollRecords = 50000
	}
	if cfg.LagInterval <= 0 {
		cfg.LagInterval = 2 * time.Second
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	p := &Processor{cfg: cfg, log: cfg.Logger, m: cfg.Metrics, parts: make(map[int32]*partition), fenced: make(map[int32]error), stale: make(map[int32]*partition), fatal: make(chan error, 1),
		shared: sharedStats{remote: make(map[int32]*partitionStats), published: make(map[*partition]uint64)}}
	model := cfg.Store.Model
	p.model.Store(&model)
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tailor_profile_cache_hits_total",
			Help: "Profile reads answered from the decoded-profile cache.",
		}, func() float64 { h, _ := p.cacheStats(); return float64(h) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tailor_profile_cache_misses_total",
			Help: "Profile reads that went to the store.",
		}, func() float64 { _, m := p.cacheStats(); return float64(m) }),
	)
	opts := append(cfg.Client.Opts(),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topics.Events),
		kgo.OnPartitionsAssigned(p.assign),
		kgo.OnPartitionsRevoked(p.revoke),
		kgo.OnPartitionsLost(p.lose),
		kgo.AdjustFetchOffsetsFn(p.startOffsetsLogged),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	opts = append(opts, FetchOpts()...)
	opts = append(opts,
		// The engine writes to the events topic too (rerouted events,
		// identity records), in the transactions of its exactly-once
		// outputs: an aborted one must not be applied. The transactions'
		// control records come through so that a partition's applied
		// offset can pass them (readiness compares it with the end).
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)
	if cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(cfg.InstanceID))
	}
	if cfg.SessionTimeout > 0 {
		opts = append(opts, kgo.SessionTimeout(cfg.SessionTimeout))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka consumer for %v: %w", cfg.Client.Brokers, err)
	}
	p.cl = cl
	return p, nil
}

// Run consumes events and hands each partition's records to its worker
// until ctx is done or a partition applied here fails to write its
// outputs to Kafka; that error is returned, and a restart resumes from
// the stored offsets. A partition whose store fails is fenced instead
// (fence.go): Run goes on with the others.
func (p *Processor) Run(ctx context.Context) error {
	lagCtx, stopLag := context.WithCancel(ctx)
	defer stopLag()
	go p.watchLag(lagCtx)
	go p.publishStats(lagCtx)
	go p.followStats(lagCtx)
	// A partition that fails must stop Run even while no records come:
	// the poll waits on a context that the failure cancels.
	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	failed := make(chan error, 1)
	go func() {
		select {
		case err := <-p.fatal:
			failed <- err
			stopPoll()
		case <-pollCtx.Done():
		}
	}()
	for {
		select {
		case err := <-failed:
			return err
		default:
		}
		fetches := p.cl.PollRecords(pollCtx, p.cfg.MaxPollRecords)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		if pollCtx.Err() != nil {
			return <-failed
		}
		fetches.EachError(func(topic string, part int32, err error) {
			p.log.Warn("fetch failed", "topic", topic, "partition", part, "err", err)
		})
		var stop error
		// Sending under the read lock keeps revoke (which takes the write
		// lock) from closing a worker's channel in between.
		p.mu.RLock()
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			part := p.parts[fp.Partition]
			if stop != nil || part == nil || len(fp.Records) == 0 {
				return
			}
			select {
			case part.work <- fp.Records:
			case <-pollCtx.Done():
				stop = context.Cause(pollCtx)
			}
		})
		p.mu.RUnlock()
		if ctx.Err() != nil {
			return nil
		}
		if stop != nil {
			return <-failed
		}
	}
}

// wakeLimit bounds the profiles one wake batch re-evaluates, so that
// records keep flowing while many profiles are due.
const wakeLimit = 1000

// wakeCheck bounds the sleep between looks at a partition's schedule, so
// that a clock that jumps (a test's) is noticed.
const wakeCheck = time.Second

// work applies the records handed to a partition until its channel is
// closed, taking whatever has queued up meanwhile as one batch, and
// re-evaluates the profiles whose segments time alone changes when they
// are due.
func (p *Processor) work(part *partition) {
	defer close(part.done)
	timer := time.NewTimer(wakeCheck)
	defer timer.Stop()
	started := part.started
	for {
		select {
		case records, ok := <-part.work:
			if !ok {
				return
			}
			p.applyQueued(part, records)
		case <-started:
			started = nil
			switch {
			case part.failed:
			case part.redoWake != 0:
				p.fail(part, p.wake(part, time.UnixMilli(part.redoWake), false))
			case part.redoBackfill:
				_, err := p.backfill(part, false)
				p.fail(part, err)
			}
		case <-part.poke:
		case <-timer.C:
		}
		wait := wakeCheck
		if started == nil && !part.failed && part.next.Load() >= part.replayTo {
			if at, ok := part.store.NextWake(); ok && !at.After(p.now()) {
				p.fail(part, p.wake(part, p.now(), true))
			}
			more, err := p.backfill(part, true)
			p.fail(part, err)
			if more {
				wait = 0 // records first, then the next batch
			}
		}
		if at, ok := part.store.NextWake(); ok {
			wait = min(wait, max(at.Sub(p.now()), 0))
		}
		timer.Reset(wait)
	}
}

// backfillLimit bounds the profiles one backfill batch re-evaluates.
const backfillLimit = 1000

// backfill runs one batch of the partition's backfill, if one is under
// way, writing its segment changes exactly once: produce false redoes a
// batch whose changes Kafka already holds. more reports whether batches
// are left.
func (p *Processor) backfill(part *partition, produce bool) (more bool, err error) {
	step, pending, err := part.store.BackfillPending()
	if err != nil || !pending {
		return false, err
	}
	if part.backfillLeft < 0 || step.Cursor == "" {
		n, err := part.store.CountProfiles()
		if err != nil {
			return false, fmt.Errorf("partition %d: %w", part.id, err)
		}
		part.backfillLeft = n
	}
	batch := part.store.Begin()
	n, done, err := batch.Backfill(backfillLimit)
	if err != nil {
		batch.Discard()
		return false, fmt.Errorf("partition %d: backfill: %w", part.id, err)
	}
	changes, err := p.commitStep(part, batch, "backfill", progress{backfill: &step}, produce)
	if err != nil {
		return false, fmt.Errorf("partition %d: backfill: %w", part.id, err)
	}
	part.backfillLeft = max(part.backfillLeft-n, 0)
	if done {
		part.backfillLeft = 0
		p.log.Info("backfill done", "partition", part.id)
	}
	p.m.backfilled.Add(float64(n))
	p.m.backfillLeft.WithLabelValues(part.label).Set(float64(part.backfillLeft))
	if !produce {
		p.log.Info("redid the backfill batch that a crash interrupted, its changes already produced", "partition", part.id, "profiles", n)
	} else if changes > 0 {
		p.m.segmentChanges.Add(float64(changes))
	}
	_, more, err = part.store.BackfillPending()
	return more, err
}

// commitStep finishes a wake or backfill batch: its segment changes (src
// names their cause) are written with the progress marker at, then the
// batch is committed at the partition's offset. produce false writes
// nothing to Kafka: a redone step whose changes Kafka already holds.
func (p *Processor) commitStep(part *partition, batch *state.Batch, src string, at progress, produce bool) (changes int, err error) {
	at.next = part.next.Load()
	cs := batch.Changes()
	writeChanges := func() error {
		if !produce {
			return nil
		}
		outputs := make([]*kgo.Record, len(cs))
		for i, c := range cs {
			outputs[i] = p.changeRecord(src, c)
		}
		outputs = append(outputs, p.changelog(part, batch)...)
		if len(outputs) == 0 {
			return nil
		}
		if err := part.out.write(p.ctx, outputs, at); err != nil {
			return &outputError{fmt.Errorf("write %d segment changes: %w", len(outputs), err)}
		}
		return nil
	}
	if err := batch.CommitWith(at.next, writeChanges); err != nil {
		return 0, err
	}
	return len(cs), nil
}

// SetModel replaces what the configuration declares about profiles: the
// stores apply events under m from their next batch, and backfill the
// segments it adds, changes or removes, in the background.
func (p *Processor) SetModel(m *state.Model) {
	p.model.Store(m)
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, part := range p.parts {
		part.store.SetModel(m)
		select {
		case part.poke <- struct{}{}:
		default:
		}
	}
}

// Model returns the model the stores apply events under.
func (p *Processor) Model() *state.Model { return p.model.Load() }

// applyQueued applies records and whatever else has queued up for the
// partition, as one batch.
func (p *Processor) applyQueued(part *partition, records []*kgo.Record) {
	batch := records
more:
	for len(batch) < p.cfg.MaxPollRecords {
		select {
		case next, ok := <-part.work:
			if !ok {
				break more
			}
			batch = append(batch[:len(batch):len(batch)], next...)
		default:
			break more
		}
	}
	if part.failed {
		return // not applied: the stored offset stays before them
	}
	p.fail(part, p.apply(p.ctx, part, batch))
}

// fail stops the partition on err: a store's error fences the partition;
// an error writing outputs to Kafka stops Run, which returns it, unless
// the partition was lost or revoked meanwhile (its producer closed or
// fenced by the next owner): the batch was not committed to the store,
// and whoever is assigned the partition next applies its records again.
func (p *Processor) fail(part *partition, err error) {
	if err == nil {
		return
	}
	part.failed = true
	var out *outputError
	if !errors.As(err, &out) {
		p.fenceRunning(part, err)
		return
	}
	p.mu.RLock()
	applying := p.parts[part.id] == part
	p.mu.RUnlock()
	if !applying {
		p.log.Warn("outputs of a partition no longer applied here not written; its next owner applies the records again", "partition", part.id, "err", err)
		return
	}
	select {
	case p.fatal <- err:
	default:
	}
}

// now is the processor's clock: the store's.
func (p *Processor) now() time.Time {
	if p.cfg.Store.Now != nil {
		return p.cfg.Store.Now()
	}
	return time.Now()
}

// wake re-evaluates the profiles due at at, and writes the changes time
// made, exactly once: produce false redoes a wake whose changes Kafka
// already holds.
func (p *Processor) wake(part *partition, at time.Time, produce bool) error {
	due, _ := part.store.NextWake()
	batch := part.store.Begin()
	n, err := batch.Wake(at, wakeLimit)
	if err != nil {
		batch.Discard()
		return fmt.Errorf("partition %d: wake at %v: %w", part.id, at, err)
	}
	changes, err := p.commitStep(part, batch, "time", progress{wake: at.UnixMilli()}, produce)
	if err != nil {
		return fmt.Errorf("partition %d: wake at %v: %w", part.id, at, err)
	}
	if produce {
		p.m.wakes.Add(float64(n))
		p.m.segmentChanges.Add(float64(changes))
		if n > 0 {
			p.m.wakeDelay.Observe(time.Since(due).Seconds())
		}
	} else {
		p.log.Info("redid the wake that a crash interrupted, its changes already produced", "partition", part.id, "at", at, "profiles", n)
	}
	return nil
}

// assign opens the stores of newly assigned partitions, or takes up
// those kept open from a lost session (closing the others).
func (p *Processor) assign(ctx context.Context, _ *kgo.Client, assigned map[string][]int32) {
	// Stores are opened, and restored if need be, before p.mu is taken:
	// a restore takes as long as its changelog, and the partitions held
	// already are served meanwhile.
	opened := p.openAssigned(ctx, assigned[p.cfg.Topics.Events])
	p.mu.Lock()
	defer p.mu.Unlock()
	p.assigned = true
	if !p.session.connected {
		// The first assignment of a session is all of it: what was kept
		// from a lost one and is not in it is another member's now.
		p.session.connected = true
		defer p.forgetUnassignedLocked(assigned[p.cfg.Topics.Events])
	}
	for _, id := range assigned[p.cfg.Topics.Events] {
		if p.parts[id] != nil {
			continue
		}
		dir := p.storeDir(id)
		store := p.takeStaleLocked(id)
		if store != nil {
			store.SetModel(p.model.Load())
		} else {
			o, ok := opened[id]
			if !ok { // not expected: held or kept when opened were
				o.store, o.err = state.Open(dir, p.storeOptions())
			}
			if o.err != nil {
				// Without its store a partition cannot be applied: it is
				// fenced, and its records stay in Kafka.
				p.fenceLocked(id, o.err)
				continue
			}
			store = o.store
			delete(opened, id)
		}
		p.unfenceLocked(id)
		out, err := newOutput(p.cfg.Client, p.cfg.Group, p.cfg.Topics, id, p.cfg.Partitions)
		if err != nil {
			store.Close()
			for _, o := range opened { // those not taken up
				if o.store != nil {
					o.store.Close()
				}
			}
			select {
			case p.fatal <- fmt.Errorf("partition %d: %w", id, err):
			default:
			}
			return
		}
		part := &partition{id: id, store: store, out: out, parser: event.NewParser(p.cfg.Limits), label: partitionLabel(id),
			work: make(chan []*kgo.Record, 2), done: make(chan struct{}), started: make(chan struct{}), replayTo: -1,
			poke: make(chan struct{}, 1), backfillLeft: -1}
		part.target.Store(-1)
		p.parts[id] = part
		go p.work(part)
		p.log.Info("partition assigned", "partition", id, "store", dir)
	}
}

// startOffsetsLogged is startOffsets, logging its error: the Kafka client
// then revokes the partitions and joins the group again, and without the
// log line an operator would see partitions that never start.
func (p *Processor) startOffsetsLogged(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	out, err := p.startOffsets(ctx, offsets)
	if err != nil && ctx.Err() == nil {
		p.log.Error("start the assigned partitions: rejoining the group", "err", err)
	}
	return out, err
}

// startOffsets starts each newly assigned partition at its stored offset,
// or at the start of the log for a store that has applied nothing.
func (p *Processor) startOffsets(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	parts := offsets[p.cfg.Topics.Events]
	var fresh []int32
	var starting []*partition
	p.mu.RLock()
	defer p.mu.RUnlock()
	// The workers start waking profiles once their partition's offsets
	// and markers are known.
	defer func() {
		for _, part := range starting {
			close(part.started)
		}
	}()
	// Every partition taken over fences its earlier owner before any
	// reads its progress marker: the earlier owner's open transactions
	// may share a progress partition with another partition's marker.
	var ids []int32
	var outs []*output
	for id := range parts {
		if part := p.parts[id]; part != nil {
			ids, outs = append(ids, id), append(outs, part.out)
		}
	}
	if err := fenceAll(ctx, outs); err != nil {
		return nil, err
	}
	markers, err := lastMarkers(ctx, outs)
	if err != nil {
		return nil, err
	}
	for i, id := range ids {
		part, marker := p.parts[id], markers[i]
		next, ok, err := part.store.NextOffset()
		if err != nil {
			p.fenceRunning(part, fmt.Errorf("read the stored offset: %w", err))
			continue
		}
		lastWake, _, err := part.store.LastWake()
		if err != nil {
			p.fenceRunning(part, fmt.Errorf("read the last wake: %w", err))
			continue
		}
		part.startOnce.Do(func() {
			part.replayTo = marker.next
			// A wake's marker carries the offset the store was at: the
			// wake came after every record before it.
			if ok && marker.wake > lastWake.UnixMilli() && marker.next == next {
				part.redoWake = marker.wake
			}
			// A backfill batch's marker names the step it started from:
			// if the store is still there, the batch was not committed.
			if ok && marker.backfill != nil && marker.next == next {
				step, pending, err := part.store.BackfillPending()
				part.redoBackfill = err == nil && pending && step == *marker.backfill
			}
			starting = append(starting, part)
		})
		if ok {
			parts[id] = kgo.NewOffset().At(next).WithEpoch(-1)
			part.next.Store(next)
		} else {
			parts[id] = kgo.NewOffset().AtStart()
			fresh = append(fresh, id)
		}
	}
	// Readiness compares each partition's next offset with the end offset
	// at assignment: read it now rather than at the next lag check.
	ends, err := kadm.NewClient(p.cl).ListEndOffsets(ctx, p.cfg.Topics.Events)
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", p.cfg.Topics.Events, err)
	}
	for id := range parts {
		if o, ok := ends.Lookup(p.cfg.Topics.Events, id); ok && o.Err == nil && p.parts[id] != nil {
			p.parts[id].target.CompareAndSwap(-1, o.Offset)
		}
	}
	if len(fresh) > 0 {
		// Readiness compares the next offset with the end offset, so a fresh
		// store's next offset is the log start, not 0.
		starts, err := kadm.NewClient(p.cl).ListStartOffsets(ctx, p.cfg.Topics.Events)
		if err != nil {
			return nil, fmt.Errorf("list start offsets of %s: %w", p.cfg.Topics.Events, err)
		}
		for _, id := range fresh {
			if o, ok := starts.Lookup(p.cfg.Topics.Events, id); ok && o.Err == nil {
				p.parts[id].next.Store(o.Offset)
			}
		}
	}
	return offsets, nil
}

// revoke stops the workers of partitions taken away (or lost), after they
// have applied and committed what they were given, and closes their stores.
func (p *Processor) revoke(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	p.mu.Lock()
	var parts []*partition
	for _, id := range revoked[p.cfg.Topics.Events] {
		if part := p.parts[id]; part != nil {
			delete(p.parts, id)
			parts = append(parts, part)
		}
		p.unfenceLocked(id)
	}
	p.mu.Unlock()
	p.closePartitions(parts, "revoked")
}

// closePartitions stops the workers of parts, once they have applied and
// committed what they were given, and closes their stores; why is logged.
func (p *Processor) closePartitions(parts []*partition, why string) {
	for _, part := range parts {
		close(part.work)
	}
	for _, part := range parts {
		<-part.done
		p.closeStore(part)
		part.out.close()
		p.m.lag.DeleteLabelValues(part.label)
		p.m.appliedNext.DeleteLabelValues(part.label)
		p.m.backfillLeft.DeleteLabelValues(part.label)
		p.log.Info("partition closed", "partition", part.id, "why", why)
	}
}

// watchLag reads the end offsets of the assigned partitions now and then,
// for the lag gauge and for readiness.
func (p *Processor) watchLag(ctx context.Context) {
	adm := kadm.NewClient(p.cl)
	t := time.NewTicker(p.cfg.LagInterval)
	defer t.Stop()
	for {
		ends, err := adm.ListEndOffsets(ctx, p.cfg.Topics.Events)
		if err == nil {
			p.mu.RLock()
			for id, part := range p.parts {
				o, ok := ends.Lookup(p.cfg.Topics.Events, id)
				if !ok || o.Err != nil {
					continue
				}
				part.target.CompareAndSwap(-1, o.Offset)
				p.m.lag.WithLabelValues(part.label).Set(float64(max(0, o.Offset-part.next.Load())))
			}
			p.mu.RUnlock()
		} else if ctx.Err() == nil {
			p.log.Warn("list end offsets", "topic", p.cfg.Topics.Events, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Ready reports whether the processor has had an assignment and every
// partition it applies has applied everything that was in it when it was
// assigned. Partitions kept readable from a lost group session (the
// broker away) and fenced ones do not count: Health tells them apart.
func (p *Processor) Ready() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if !p.assigned {
		return false
	}
	for _, part := range p.parts {
		t := part.target.Load()
		if t < 0 || part.next.Load() < t {
			return false
		}
	}
	return true
}

// Close leaves the group and closes every store, once the workers have
// committed what they were given. Call it after Run has returned.
func (p *Processor) Close() {
	p.cl.Close() // runs the revoke callback for the partitions still held
	p.mu.Lock()
	parts := make([]*partition, 0, len(p.parts))
	for id, part := range p.parts {
		delete(p.parts, id)
		parts = append(parts, part)
	}
	p.closeStaleLocked()
	p.mu.Unlock()
	p.closePartitions(parts, "closing")
	p.closing.Wait()
	p.cancel()
}
