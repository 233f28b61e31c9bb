package stream

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/state"
)

// Standby replicas (kafka.standby_replicas, decision 0021): the group
// leader's balancer (balance.go) gives each partition, besides its owner,
// up to that many other members that keep a warm copy of its store by
// tailing its changelog. A copy is a store in the partition's usual
// directory, written only with changelog records (state.ApplyChangelog)
// and recording the changelog offset it reflects. When the partition is
// assigned here, the copy is caught up from that offset (caughtUp) rather
// than restored whole, and the balancer prefers the member with the
// freshest copy. Reads of a partition whose owner cannot be reached are
// answered from the copy, marked as such (ReadFrom).

// standbys keeps this instance's standby replicas.
type standbys struct {
	p    *Processor
	kick chan struct{} // the wanted replicas changed

	mu       sync.Mutex
	active   map[int32]bool // partitions assigned here: never a replica
	want     map[int32]bool // replicas the leader gave this instance
	replicas map[int32]*replica
	// known is the changelog offset of copies closed here (replicas
	// dropped, partitions revoked), for the balancer's freshness.
	known map[int32]int64
}

// replica is a standby copy of one partition's store.
type replica struct {
	id    int32
	dir   string
	store *state.Store
	rd    *changelogReader
	// next is the offset to read from again and miss nothing: the safe
	// offset of the last changelog records applied.
	next int64
	// pos is the offset after the last changelog record read (next, or
	// later while a transaction is pending).
	pos    int64
	writes []state.Write
	// fromEmpty: the copy began as an empty store, so it is complete only
	// once it has read the changelog base (sawBase); one that has not is
	// removed when closed.
	fromEmpty, sawBase bool
	// atEnd: the last fetch that returned the partition found the copy at
	// the end of its changelog (every record below the high watermark
	// read). currentAt is when a poll last confirmed it there: that fetch,
	// or a later poll that brought nothing new for it and no error (the
	// client returns only partitions with records). The zero time until
	// then. Reads are answered from the copy only while currentAt is
	// recent (standbyReadBound).
	atEnd     bool
	currentAt time.Time
}

// standbyReadBound is how long after a replica was last found at the end
// of its changelog it may answer reads for a partition whose owner
// cannot be reached: a replica still catching up (one begun empty, or
// left behind) answers none, so that a read never sees a copy further
// behind than what its owner had committed shortly before.
const standbyReadBound = time.Second

func newStandbys(p *Processor) *standbys {
	return &standbys{p: p, kick: make(chan struct{}, 1), active: make(map[int32]bool), want: make(map[int32]bool),
		replicas: make(map[int32]*replica), known: make(map[int32]int64)}
}

// setAssignment takes this member's assignment from the group leader:
// its active partitions and its standby replicas.
func (s *standbys) setAssignment(active, standby []int32) {
	s.mu.Lock()
	s.active = make(map[int32]bool, len(active))
	for _, id := range active {
		s.active[id] = true
	}
	s.want = make(map[int32]bool, len(standby))
	for _, id := range standby {
		if !s.active[id] {
			s.want[id] = true
		}
	}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// release closes the replica of partition id, if there is one, so that
// its store can be opened to be applied; it is not opened again while the
// partition is assigned here.
func (s *standbys) release(id int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active[id] = true
	delete(s.want, id)
	if r := s.replicas[id]; r != nil {
		s.closeLocked(r)
	}
}

// revoked notes that partition id is no longer applied here, with the
// changelog offset its store reflected.
func (s *standbys) revoked(id int32, changelogNext int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.active, id)
	if changelogNext >= 0 {
		s.known[id] = changelogNext
	}
}

// freshness returns how far each copy of a partition's store this
// instance has reaches in the changelog: replicas, and copies closed
// here. The processor adds the partitions it applies.
func (s *standbys) freshness() map[int32]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int32]int64, len(s.known)+len(s.replicas))
	for id, next := range s.known {
		out[id] = next
	}
	for id, r := range s.replicas {
		out[id] = r.next
	}
	return out
}

// store returns the replica store of partition id, nil if none.
func (s *standbys) store(id int32) *state.Store {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.replicas[id]; r != nil && time.Since(r.currentAt) <= standbyReadBound {
		return r.store
	}
	return nil
}

// ids returns the partitions with a replica here, sorted.
func (s *standbys) ids() []int32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]int32, 0, len(s.replicas))
	for id := range s.replicas {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// run keeps the replicas until ctx is done: it opens and closes them as
// the assignment changes, and applies their changelogs' records as they
// come.
func (s *standbys) run(ctx context.Context) {
	var cl *kgo.Client
	var reading []int32
	defer func() {
		if cl != nil {
			cl.Close()
		}
		s.mu.Lock()
		for _, r := range s.replicas {
			s.closeLocked(r)
		}
		s.mu.Unlock()
	}()
	for ctx.Err() == nil {
		offsets := s.reconcile(ctx)
		ids := sortedKeys(offsets)
		if !slices.Equal(ids, reading) {
			if cl != nil {
				cl.Close()
				cl = nil
			}
			reading = ids
			if len(ids) > 0 {
				var err error
				if cl, err = s.client(offsets); err != nil {
					s.p.log.Error("standby replicas: cannot read the changelog", "err", err)
				}
			}
		}
		if cl == nil {
			select {
			case <-ctx.Done():
			case <-s.kick:
			case <-time.After(time.Second):
			}
			continue
		}
		pollCtx, cancel := context.WithTimeout(ctx, standbyPoll)
		fetches := cl.PollFetches(pollCtx)
		cancel()
		s.apply(fetches)
	}
}

// standbyPoll bounds one wait for changelog records, so that a change
// of the wanted replicas is taken up soon.
const standbyPoll = 250 * time.Millisecond

// reconcile opens the wanted replicas and closes the others, and returns
// the offsets to read the replicas' changelogs from. A replica opened or
// closed makes the reading start again from each replica's safe offset
// (the client is made anew), so the readers start afresh.
func (s *standbys) reconcile(ctx context.Context) map[int32]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	for id, r := range s.replicas {
		if !s.want[id] || s.active[id] {
			s.closeLocked(r)
			changed = true
		}
	}
	for id := range s.want {
		if s.replicas[id] != nil || s.active[id] {
			continue
		}
		r, err := s.open(ctx, id)
		if err != nil {
			s.p.log.Warn("standby replica not kept", "partition", id, "err", err)
			continue
		}
		s.replicas[id] = r
		changed = true
	}
	offsets := make(map[int32]int64, len(s.replicas))
	for id, r := range s.replicas {
		if changed {
			r.rd = newChangelogReader(r.put)
			r.writes = r.writes[:0]
		}
		offsets[id] = r.next
	}
	return offsets
}

// open opens the replica of partition id in its store's directory: from
// the changelog offset the store there reflects, or from the start of the
// changelog for an empty one. A store that holds state but records no
// changelog offset is not a copy of the changelog: it is left alone.
func (s *standbys) open(ctx context.Context, id int32) (*replica, error) {
	dir := s.p.storeDir(id)
	present, err := state.Present(dir)
	if err != nil {
		return nil, err
	}
	store, err := state.Open(dir, s.p.storeOptions())
	if err != nil {
		return nil, err
	}
	r := &replica{id: id, dir: dir, store: store}
	r.rd = newChangelogReader(r.put)
	next, ok, err := store.ChangelogOffset()
	if err == nil && !ok {
		if _, applied, _ := store.NextOffset(); present && applied {
			err = errors.New("its store holds state but records no changelog offset")
		} else {
			r.fromEmpty = true
			next, _, err = partitionBounds(ctx, s.p.cl, s.p.cfg.Topics.Changelog, id)
		}
	}
	r.next, r.pos = next, next
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("standby replica of partition %d in %s: %w", id, dir, err)
	}
	s.p.log.Info("standby replica kept", "partition", id, "store", dir, "changelog offset", r.next)
	return r, nil
}

func (r *replica) put(w state.Write) error {
	r.sawBase = r.sawBase || state.IsChangelogBase(w.Key)
	r.writes = append(r.writes, w)
	return nil
}

// closeLocked closes a replica, removing a copy begun empty that never
// became complete.
func (s *standbys) closeLocked(r *replica) {
	delete(s.replicas, r.id)
	s.p.m.standbyLag.DeleteLabelValues(partitionLabel(r.id))
	if err := r.store.Close(); err != nil {
		s.p.log.Warn("close standby replica", "partition", r.id, "err", err)
	}
	if r.fromEmpty && !r.sawBase {
		if err := os.RemoveAll(r.dir); err != nil {
			s.p.log.Warn("remove incomplete standby replica", "partition", r.id, "store", r.dir, "err", err)
		}
		return
	}
	s.known[r.id] = r.next
	s.p.log.Info("standby replica closed", "partition", r.id, "changelog offset", r.next)
}

// client returns a consumer of the replicas' changelog partitions from
// offsets, read uncommitted with control records (as restore reads).
func (s *standbys) client(offsets map[int32]int64) (*kgo.Client, error) {
	at := make(map[int32]kgo.Offset, len(offsets))
	for id, next := range offsets {
		at[id] = kgo.NewOffset().At(next)
	}
	return kgo.NewClient(append(s.p.cfg.Client.Opts(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{s.p.cfg.Topics.Changelog: at}),
		kgo.FetchIsolationLevel(kgo.ReadUncommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(standbyPoll),
	)...)
}

// apply applies fetched changelog records to their replicas.
func (s *standbys) apply(fetches kgo.Fetches) {
	s.mu.Lock()
	defer s.mu.Unlock()
	failed := false
	fetches.EachError(func(topic string, id int32, err error) {
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			failed = true
			s.p.log.Warn("standby replica: fetch failed", "topic", topic, "partition", id, "err", err)
		}
	})
	seen := make(map[int32]bool)
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if r := s.replicas[fp.Partition]; r != nil {
			seen[r.id] = true
			s.applyPartition(r, fp)
		}
	})
	// A replica at the end of its changelog that this poll brought
	// nothing new for is still there.
	now := time.Now()
	for id, r := range s.replicas {
		if !seen[id] && !failed && r.atEnd {
			r.currentAt = now
		}
	}
}

// applyPartition applies the fetched changelog records of one replica.
func (s *standbys) applyPartition(r *replica, fp kgo.FetchTopicPartition) {
	last := r.next - 1
	for _, rec := range fp.Records {
		if rec.Offset < r.next {
			continue
		}
		if err := r.rd.add(logRecordOf(rec)); err != nil {
			s.p.log.Warn("standby replica: bad changelog record", "partition", r.id, "offset", rec.Offset, "err", err)
		}
		last = rec.Offset
	}
	if len(fp.Records) > 0 {
		next := r.rd.safe(last + 1)
		if err := r.store.ApplyChangelog(r.writes, next); err != nil {
			s.p.log.Error("standby replica: apply changelog", "partition", r.id, "err", err)
			s.closeLocked(r)
			return
		}
		s.p.m.standbyRecords.Add(float64(len(r.writes)))
		r.writes, r.next = r.writes[:0], next
		r.pos = last + 1
	}
	if fp.HighWatermark >= 0 {
		s.p.m.standbyLag.WithLabelValues(partitionLabel(r.id)).Set(float64(max(fp.HighWatermark-last-1, 0)))
		r.atEnd = fp.Err == nil && max(r.pos, r.next) >= fp.HighWatermark
		if r.atEnd {
			r.currentAt = time.Now()
		}
	}
}

func sortedKeys(m map[int32]int64) []int32 {
	ids := make([]int32, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
