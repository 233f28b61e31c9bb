package stream

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/state"
)

// Assignment and lifecycle: what the consumer group hands this instance.
// A newly assigned partition's store is opened (restored or caught up from
// the changelog first, restore.go), its producer fences the earlier owner
// and its progress marker says where its outputs stand (startOffsets);
// revoked partitions are closed once their batch under way is committed.
// watchLag and Ready say how far behind the partitions are.

// assign opens the stores of newly assigned partitions, or takes up
// those kept open from a lost session (closing the others).
func (p *Processor) assign(ctx context.Context, _ *kgo.Client, assigned map[string][]int32) {
	p.waitClient()
	// Stores are opened, and restored if need be, before p.mu is taken:
	// a restore takes as long as its changelog, and the partitions held
	// already are served meanwhile.
	began := time.Now()
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
			work: make(chan []*kgo.Record, 2), stop: make(chan struct{}), done: make(chan struct{}), started: make(chan struct{}), replayTo: -1,
			poke: make(chan struct{}, 1), backfillLeft: -1}
		part.target.Store(-1)
		part.changelogNext.Store(changelogOffset(store))
		p.parts[id] = part
		go p.work(part)
		took := time.Since(began)
		p.m.handover.Observe(took.Seconds())
		p.log.Info("partition assigned", "partition", id, "store", dir, "serving after", took.Round(time.Millisecond))
	}
}

// startOffsetsLogged is startOffsets, logging its error: the Kafka client
// then revokes the partitions and joins the group again, and without the
// log line an operator would see partitions that never start.
func (p *Processor) startOffsetsLogged(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	p.waitClient()
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
	// p.mu is not held meanwhile: with the broker away they wait, and a
	// lost session, which takes p.mu, would wait too, and reads behind it.
	var held []*partition
	var outs []*output
	p.mu.RLock()
	for id := range parts {
		if part := p.parts[id]; part != nil {
			held, outs = append(held, part), append(outs, part.out)
		}
	}
	p.mu.RUnlock()
	if err := fenceAll(ctx, outs); err != nil {
		return nil, err
	}
	markers, err := lastMarkers(ctx, outs)
	if err != nil {
		return nil, err
	}
	for i, part := range held {
		next, ok, err := part.store.NextOffset()
		if err == nil {
			part.startOnce.Do(func() {
				err = p.startFrom(part, markers[i])
				starting = append(starting, part)
			})
		}
		if err != nil {
			p.fenceRunning(part, err)
			continue
		}
		if ok {
			parts[part.id] = kgo.NewOffset().At(next).WithEpoch(-1)
			part.next.Store(next)
		} else {
			parts[part.id] = kgo.NewOffset().AtStart()
			fresh = append(fresh, part.id)
		}
	}
	// Readiness compares each partition's next offset with the end offset
	// at assignment: read it now rather than at the next lag check.
	ends, err := kadm.NewClient(p.cl).ListEndOffsets(ctx, p.cfg.Topics.Events)
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", p.cfg.Topics.Events, err)
	}
	for _, part := range held {
		if o, ok := ends.Lookup(p.cfg.Topics.Events, part.id); ok && o.Err == nil {
			part.target.CompareAndSwap(-1, o.Offset)
		}
	}
	if len(fresh) > 0 {
		// Readiness compares the next offset with the end offset, so a fresh
		// store's next offset is the log start, not 0.
		starts, err := kadm.NewClient(p.cl).ListStartOffsets(ctx, p.cfg.Topics.Events)
		if err != nil {
			return nil, fmt.Errorf("list start offsets of %s: %w", p.cfg.Topics.Events, err)
		}
		for _, part := range held {
			if o, ok := starts.Lookup(p.cfg.Topics.Events, part.id); ok && o.Err == nil && slices.Contains(fresh, part.id) {
				part.next.Store(o.Offset)
			}
		}
	}
	return offsets, nil
}

// revoke stops the workers of partitions taken away, once they have
// committed the batch under way, and closes their stores.
func (p *Processor) revoke(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	p.waitClient()
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

// closeWait is how long closing a partition waits for the batch under
// way to commit before it closes the partition's producer.
const closeWait = 10 * time.Second

// closePartitions stops the workers of parts, once each has committed the
// batch it is applying (records queued after it are left to the
// partition's next owner, from the store's offset), and closes their
// stores; why is logged.
func (p *Processor) closePartitions(parts []*partition, why string) {
	for _, part := range parts {
		close(part.stop)
	}
	for _, part := range parts {
		select {
		case <-part.done:
		case <-time.After(closeWait):
			// Its batch waits on Kafka (the broker away): closing the
			// producer ends the wait; the batch is not committed.
			part.out.close()
			<-part.done
		}
		p.standby.revoked(part.id, part.changelogNext.Load())
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
func (r Reads) Ready() bool {
	p := r.p
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

// freshness returns how far in the changelog each copy of a partition's
// store here reaches (the partitions applied here, standby replicas, and
// copies closed here), for the group leader to prefer the freshest copy.
func (p *Processor) freshness() map[int32]int64 {
	out := p.standby.freshness()
	p.mu.RLock()
	defer p.mu.RUnlock()
	for id, part := range p.parts {
		out[id] = part.changelogNext.Load()
	}
	return out
}
