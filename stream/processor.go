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
	// IdentityUnlink: keyed by a linked key, the value the key it joined,
	// whose profile retention deleted; its partition deletes the link
	// (state.Batch.Unlink).
	IdentityUnlink = "unlink"
)

// ProcessorConfig configures a Processor.
type ProcessorConfig struct {
	Client ClientConfig
	// ConsumerOpts are added to the group consumer's options only (not to
	// the other clients made from Client): hooks such as kprom's metrics.
	ConsumerOpts []kgo.Opt
	Group        string
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
	// StandbyReplicas is how many other members keep a warm copy of each
	// partition's store, from its changelog (standby.go); it needs
	// Store.Changelog.
	StandbyReplicas int
	// Erased, when not nil, is called with each key an erasure removed,
	// once its batch is committed: the engine drops what it keeps of the
	// key outside the store (decide's reservations).
	Erased func(key string)
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
	// clSet is closed once cl is set: the group's callbacks, which use
	// it, may run before NewClient has returned (waitClient).
	clSet chan struct{}
	log   *slog.Logger
	m     *Metrics

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

	standby *standbys // replicas of partitions held elsewhere
	// standbyDone is closed when the replicas are closed, after Run.
	standbyDone chan struct{}
	ran         atomic.Bool // Run was called

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
	id   int32
	work chan []*kgo.Record
	// stop is closed to stop the worker once its batch is done; records
	// still queued in work are not applied (the store's offset stays
	// before them, and the partition's next worker fetches them again).
	stop   chan struct{}
	done   chan struct{} // closed when the worker has stopped
	failed bool          // the worker's: a failed apply stops applying
	// erased are the keys the worker's batch erased (erase.go), for
	// ProcessorConfig.Erased once it is committed.
	erased []string
	out    *output // exactly-once outputs
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
	// changelogNext is the offset after the partition's last committed
	// changelog record, -1 until known (changelog.go).
	changelogNext atomic.Int64
	label         string
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
	p := &Processor{cfg: cfg, clSet: make(chan struct{}), log: cfg.Logger, m: cfg.Metrics, parts: make(map[int32]*partition), fenced: make(map[int32]error), stale: make(map[int32]*partition), fatal: make(chan error, 1),
		shared: sharedStats{remote: make(map[int32]*partitionStats), published: make(map[*partition]uint64)}}
	p.standby, p.standbyDone = newStandbys(p), make(chan struct{})
	if !cfg.Store.Changelog {
		cfg.StandbyReplicas, p.cfg.StandbyReplicas = 0, 0 // nothing to keep them from
	}
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
	opts := append(append(cfg.Client.Opts(), cfg.ConsumerOpts...),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topics.Events),
		kgo.OnPartitionsAssigned(p.assign),
		kgo.OnPartitionsRevoked(p.revoke),
		kgo.OnPartitionsLost(p.lose),
		kgo.AdjustFetchOffsetsFn(p.startOffsetsLogged),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// A member that does not know the standby protocol (an older
		// tailor, during a rolling upgrade) joins with cooperative-sticky
		// alone; the group uses the newest protocol every member knows.
		kgo.Balancers(newStandbyBalancer(balancerConfig{
			Topic:        cfg.Topics.Events,
			Standbys:     cfg.StandbyReplicas,
			Advertise:    cfg.Advertise,
			Freshness:    p.freshness,
			OnAssignment: p.standby.setAssignment,
		}), kgo.CooperativeStickyBalancer()),
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
	close(p.clSet)
	return p, nil
}

// waitClient waits until p.cl is set: the consumer group's callbacks
// start with it.
func (p *Processor) waitClient() { <-p.clSet }

// Run consumes events and hands each partition's records to its worker
// until ctx is done or a partition applied here fails to write its
// outputs to Kafka; that error is returned, and a restart resumes from
// the stored offsets. A partition whose store fails is fenced instead
// (fence.go): Run goes on with the others.
func (p *Processor) Run(ctx context.Context) error {
	lagCtx, stopLag := context.WithCancel(ctx)
	defer stopLag()
	go p.watchLag(lagCtx)
	p.ran.Store(true)
	go func() {
		defer close(p.standbyDone)
		p.standby.run(lagCtx)
	}()
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
		// A worker may be slow to take records (its batch waits on Kafka,
		// the broker away): p.mu is not held while waiting for it, or a
		// lost session (which takes p.mu) would wait too, and every read
		// behind it. A partition stopped meanwhile drops them: its next
		// worker fetches from its store's offset.
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			p.mu.RLock()
			part := p.parts[fp.Partition]
			p.mu.RUnlock()
			if stop != nil || part == nil || len(fp.Records) == 0 {
				return
			}
			select {
			case part.work <- fp.Records:
			case <-part.stop:
			case <-pollCtx.Done():
				stop = context.Cause(pollCtx)
			}
		})
		if ctx.Err() != nil {
			return nil
		}
		if stop != nil {
			return <-failed
		}
	}
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
func (r Reads) Model() *state.Model { return r.p.model.Load() }

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
	if p.ran.Load() { // the replicas close when Run returns
		<-p.standbyDone
	}
}
