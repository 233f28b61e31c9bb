package stream

import (
	"context"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/state"
)

// Lost group sessions. When the consumer loses its group session (the
// broker is away: killed, restarting, cut off; or this instance missed
// its heartbeats), franz-go gives up every partition held at once
// (OnPartitionsLost) and keeps trying to rejoin. Closing their stores
// then, as for a revocation, made every profile read answer 503 "not
// assigned" and decide answer every customer as unknown for the whole
// outage.
//
// As Kafka Streams keeps a store queryable while its task is not running,
// the stores of lost partitions stay open and answer reads with what they
// had applied: they are stale. Their workers stop (nothing can be fetched
// or produced without the broker; the last batch is committed or, if its
// outputs could not be written, left for the next owner to apply again)
// and their transactional producers close. When the group assigns
// partitions again, those assigned here are taken up with their store
// still open, from its stored offset, as on any assignment (decision
// 0007: fence, marker, replay); the others, now another member's, are
// closed. Health and Stale tell serving which reads are stale and since
// when.

// session is the processor's view of its group membership, under p.mu.
type session struct {
	connected bool      // assigned since the last lost session
	lostAt    time.Time // when the last session was lost
}

// lose keeps the stores of the partitions of a lost session readable,
// stopping their workers and producers.
func (p *Processor) lose(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	p.waitClient()
	p.mu.Lock()
	p.session = session{lostAt: time.Now()}
	var parts []*partition
	for _, id := range lost[p.cfg.Topics.Events] {
		if part := p.parts[id]; part != nil {
			delete(p.parts, id)
			p.stale[id] = part
			parts = append(parts, part)
		}
	}
	p.mu.Unlock()
	ids := make([]int32, len(parts))
	for i, part := range parts {
		ids[i] = part.id
	}
	slices.Sort(ids)
	p.log.Warn("group session lost (broker away or heartbeats missed): the partitions' stores stay readable, stale, until the group assigns partitions again",
		"partitions", ids)
	p.stopWorkers(parts)
}

// stopWorkers stops the workers of parts and closes their producers,
// leaving their stores open. The producers are closed first: with the
// broker away a worker's batch waits on its Kafka transaction (every
// batch has one: its changelog records, decision 0021), and the close
// ends the wait with an error. A batch not committed so is applied again
// from the store's offset by the partition's next owner (decision 0007).
func (p *Processor) stopWorkers(parts []*partition) {
	for _, part := range parts {
		close(part.stop)
		part.out.close()
	}
	for _, part := range parts {
		<-part.done
		p.m.lag.DeleteLabelValues(part.label)
		p.m.appliedNext.DeleteLabelValues(part.label)
		p.m.backfillLeft.DeleteLabelValues(part.label)
	}
}

// takeStaleLocked returns the open store of partition id kept from a lost
// session, if any, which is no longer stale. p.mu must be held for
// writing.
func (p *Processor) takeStaleLocked(id int32) *state.Store {
	part := p.stale[id]
	if part == nil {
		return nil
	}
	delete(p.stale, id)
	return part.store
}

// forgetUnassignedLocked closes the stores kept from a lost session that
// the group did not give back, and forgets the fenced partitions it did
// not give back either: assigned is the whole assignment of the session
// after the lost one. p.mu must be held for writing.
func (p *Processor) forgetUnassignedLocked(assigned []int32) {
	for id := range p.fenced {
		if !slices.Contains(assigned, id) {
			p.unfenceLocked(id)
		}
	}
	p.closeStaleLocked()
}

// closeStaleLocked closes the stores kept from a lost session that were
// not taken up again. p.mu must be held for writing.
func (p *Processor) closeStaleLocked() {
	for id, part := range p.stale {
		delete(p.stale, id)
		p.closeStore(part)
		p.log.Info("partition closed", "partition", id, "why", "not assigned here after a lost group session")
	}
}

// closeStore closes part's store, keeping its cache statistics.
func (p *Processor) closeStore(part *partition) {
	h, m := part.store.CacheStats()
	p.closedHits.Add(h)
	p.closedMisses.Add(m)
	if err := part.store.Close(); err != nil {
		p.log.Error("close partition store", "partition", part.id, "err", err)
	}
}

// Health is what the processor tells serving about its partitions.
type Health struct {
	// Connected reports whether the processor is a member of its consumer
	// group with an assignment: false before the first assignment and
	// from a lost group session (the broker away) until the group assigns
	// partitions again.
	Connected bool
	// LostAt is when the group session was lost, while not Connected
	// after one was.
	LostAt time.Time
	// Applying are the partitions held and applied here, in order.
	Applying []int32
	// Stale are the partitions kept from a lost session: their stores
	// answer reads with what they had applied by LostAt, and apply
	// nothing until the group assigns them here again.
	Stale []int32
	// Fenced are the partitions whose store failed (Fenced has why).
	Fenced []int32
}

// Health returns the processor's state for serving: which partitions
// answer reads (Applying and Stale), which are current (Applying), and
// whether it is connected to its group.
func (r Reads) Health() Health {
	p := r.p
	p.mu.RLock()
	defer p.mu.RUnlock()
	h := Health{Connected: p.session.connected}
	if !h.Connected {
		h.LostAt = p.session.lostAt
	}
	for id := range p.parts {
		h.Applying = append(h.Applying, id)
	}
	for id := range p.stale {
		h.Stale = append(h.Stale, id)
	}
	for id := range p.fenced {
		h.Fenced = append(h.Fenced, id)
	}
	slices.Sort(h.Applying)
	slices.Sort(h.Stale)
	slices.Sort(h.Fenced)
	return h
}

// Stale reports whether a read of key is answered from a store kept from
// a lost group session, and since when: what it answers is what had been
// applied by then.
func (r Reads) Stale(key string) (since time.Time, stale bool) {
	p := r.p
	id := PartitionOf(key, p.cfg.Partitions)
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.stale[id] == nil {
		return time.Time{}, false
	}
	return p.session.lostAt, true
}

// storeLocked returns the store that answers reads of partition id: held
// and applied, or kept from a lost session; nil if neither. p.mu must be
// held.
func (p *Processor) storeLocked(id int32) *state.Store {
	if part := p.parts[id]; part != nil {
		return part.store
	}
	if part := p.stale[id]; part != nil {
		return part.store
	}
	return nil
}

// eachStoreLocked calls fn with every store that answers reads. p.mu must
// be held.
func (p *Processor) eachStoreLocked(fn func(id int32, s *state.Store)) {
	for id, part := range p.parts {
		fn(id, part.store)
	}
	for id, part := range p.stale {
		fn(id, part.store)
	}
}
