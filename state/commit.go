package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"

	"github.com/dgraph-io/badger/v4"
)

// Commit writes the batch and nextOffset (the offset of the first record not
// applied) atomically, then publishes the changed profiles to readers.
func (b *Batch) Commit(nextOffset int64) error { return b.CommitWith(nextOffset, nil) }

// CommitWith commits the batch as Commit does, calling before (unless nil)
// once its writes are known to fit one store transaction and just before
// they are committed: the processor writes the batch's outputs to Kafka
// there. An error from before, or writes too large for one transaction
// (ErrBatchTooLarge: before is not called), leave the store as it was.
func (b *Batch) CommitWith(nextOffset int64, before func() error) (err error) {
	defer b.txn.Discard()
	defer func() {
		if errors.Is(err, badger.ErrTxnTooBig) {
			err = fmt.Errorf("%w (%d profiles, %d products, about %d bytes estimated): %w", ErrBatchTooLarge, len(b.profiles), len(b.products), b.size, err)
		}
	}()
	var c committed
	if err := b.writeSchedule(&c); err != nil {
		return err
	}
	if err := b.writeProfiles(&c); err != nil {
		return err
	}
	if err := b.writeTotals(&c); err != nil {
		return err
	}
	if err := b.writeProducts(&c); err != nil {
		return err
	}
	if err := b.writeOffset(nextOffset); err != nil {
		return err
	}
	if before != nil {
		if err := before(); err != nil {
			return err
		}
	}
	if err := b.writeChangelogOffset(); err != nil { // before may set it
		return err
	}
	if err := b.txn.Commit(); err != nil {
		return fmt.Errorf("commit %d profiles up to offset %d in %s: %w", len(b.profiles), nextOffset, b.s.db.Opts().Dir, err)
	}
	return b.publish(&c)
}

// committed is what a batch's writes lead to, for publish to make known
// to the store's readers once they are committed.
type committed struct {
	earliest int64          // the earliest wake-up the batch scheduled
	backfill *backfillState // the backfill's progress; nil when unchanged
	written  int            // the profiles' encoded sizes
	sizes    map[string]int64
	pop      Population
	stats    map[OfferStatKey]OfferCounts
	evicted  []string // products dropped
}

// writeSchedule writes the profiles' wake-ups, the last wake of a Wake
// batch, the backfill's progress and the links.
func (b *Batch) writeSchedule(c *committed) (err error) {
	if c.earliest, err = b.reschedule(); err != nil {
		return err
	}
	if b.woke {
		v := binary.BigEndian.AppendUint64(nil, uint64(b.at.UnixMilli()))
		if err := b.set(keyLastWake, v); err != nil {
			return fmt.Errorf("write last wake: %w", err)
		}
	}
	if c.backfill, err = b.commitBackfill(); err != nil {
		return err
	}
	return b.commitLinks()
}

// writeProfiles writes the batch's profiles, where each now stands in the
// RFM population with them, and the order ids it counted.
func (b *Batch) writeProfiles(c *committed) error {
	now := b.now().UnixMilli()
	for _, p := range b.profiles {
		p.rfm, p.rfmRecorded = p.rfmPointAt(now, b.m.RFMHorizon), p.Orders > 0
	}
	// The batch's profiles are encoded into one buffer sized from their
	// last encodings, which Badger holds on to until the commit.
	need := 0
	for key, p := range b.profiles {
		need += len(key) + 1 + p.encodedSize + p.encodedSize/4 + 64
	}
	buf := make([]byte, 0, need)
	var scratch []byte
	for key, p := range b.profiles {
		start := len(buf)
		buf = append(buf, prefixProfile)
		buf = append(buf, key...)
		mid := len(buf)
		buf, scratch = p.appendEncode(buf, scratch)
		k, v := buf[start:mid:mid], buf[mid:len(buf):len(buf)]
		c.written += len(v)
		if err := b.set(k, v); err != nil {
			return fmt.Errorf("write profile %q: %w", key, err)
		}
	}
	for _, o := range b.orders {
		var v []byte
		if o.known {
			v = orderValue(o.amount, o.at)
		}
		if err := b.set(o.key, v); err != nil {
			return fmt.Errorf("write order id: %w", err)
		}
	}
	return nil
}

// writeTotals writes the partition's totals the batch changed: segment
// sizes, RFM histograms and offer statistics.
func (b *Batch) writeTotals(c *committed) error {
	c.sizes, c.pop = b.newSizes()
	for name, n := range c.sizes {
		v := binary.BigEndian.AppendUint64(nil, uint64(n))
		if err := b.set(append([]byte{prefixSize}, name...), v); err != nil {
			return fmt.Errorf("write size of segment %q: %w", name, err)
		}
	}
	for _, h := range [...]struct {
		letter byte
		bins   map[int64]int64
	}{{'d', c.pop.Days}, {'f', c.pop.Orders}, {'m', c.pop.Money}} {
		for bin, n := range h.bins {
			v := binary.BigEndian.AppendUint64(nil, uint64(n))
			if err := b.set(histKey(h.letter, bin), v); err != nil {
				return fmt.Errorf("write RFM histogram: %w", err)
			}
		}
	}
	c.stats = b.newStats()
	for k, counts := range c.stats {
		if err := b.set(statKey(k), encodeCounts(counts)); err != nil {
			return fmt.Errorf("write statistics of offer %q: %w", k.Offer, err)
		}
	}
	return nil
}

// writeProducts writes the products the batch changed and drops those
// evicted.
func (b *Batch) writeProducts(c *committed) error {
	c.evicted = b.evictProducts(b.now().UnixMilli())
	for id, p := range b.products {
		if err := b.set(append([]byte{prefixProduct}, id...), p.appendEncode(nil)); err != nil {
			return fmt.Errorf("write product %q: %w", id, err)
		}
	}
	for _, id := range c.evicted {
		if err := b.del(append([]byte{prefixProduct}, id...)); err != nil {
			return fmt.Errorf("drop product %q: %w", id, err)
		}
	}
	return nil
}

// writeOffset writes the input offset the batch brings the store to.
func (b *Batch) writeOffset(nextOffset int64) error {
	var off [8]byte
	binary.BigEndian.PutUint64(off[:], uint64(nextOffset))
	if err := b.set(keyNextOffset, off[:]); err != nil {
		return fmt.Errorf("write offset %d: %w", nextOffset, err)
	}
	return b.markChangelogBase(off[:])
}

// publish makes a committed batch known to the store: what its records
// added (for Grow), the backfill's progress, the changed profiles in the
// cache, the totals, the products and the next wake-up.
func (b *Batch) publish(c *committed) error {
	if b.recordBytes > 0 {
		added := float64(c.written - b.loadedBytes)
		b.s.growth = min(max(2*added/float64(b.recordBytes), minGrowth), maxGrowth)
	}
	if c.backfill != nil {
		b.s.backfill = *c.backfill
	}
	b.s.fresh = false
	b.s.fillMu.Lock()
	b.s.gen++
	for key, p := range b.profiles {
		b.s.cache.Add(key, p)
	}
	for key := range b.removed {
		b.s.cache.Remove(key)
	}
	b.s.fillMu.Unlock()
	b.publishTotals(c)
	if b.woke {
		return b.s.loadNextWake() // the due entries are gone
	}
	for {
		cur := b.s.nextWake.Load()
		if c.earliest >= cur || b.s.nextWake.CompareAndSwap(cur, c.earliest) {
			return nil
		}
	}
}

// publishTotals publishes a committed batch's segment sizes, RFM
// histograms, offer statistics and products.
func (b *Batch) publishTotals(c *committed) {
	pop := c.pop
	b.s.sizesMu.Lock()
	maps.Copy(b.s.sizes, c.sizes)
	maps.Copy(b.s.pop.Days, pop.Days)
	maps.Copy(b.s.pop.Orders, pop.Orders)
	maps.Copy(b.s.pop.Money, pop.Money)
	maps.Copy(b.s.stats, c.stats)
	b.s.sizesMu.Unlock()
	if len(b.products)+len(c.evicted) > 0 {
		b.s.productsMu.Lock()
		maps.Copy(b.s.products, b.products)
		for _, id := range c.evicted {
			delete(b.s.products, id)
		}
		b.s.productsMu.Unlock()
	}
	if len(pop.Orders)+len(pop.Days)+len(pop.Money) > 0 {
		b.s.popGen.Add(1)
	}
	if len(pop.Orders)+len(pop.Days)+len(pop.Money)+len(c.sizes)+len(c.stats) > 0 {
		b.s.statGen.Add(1)
	}
}

// newSizes returns the segment sizes and RFM histogram counts the batch's
// changes lead to, for the segments and bins they touch.
func (b *Batch) newSizes() (map[string]int64, Population) {
	b.s.sizesMu.Lock()
	defer b.s.sizesMu.Unlock()
	sizes := make(map[string]int64)
	for _, c := range b.changes {
		n, ok := sizes[c.Segment]
		if !ok {
			n = b.s.sizes[c.Segment]
		}
		if c.Entered {
			n++
		} else {
			n--
		}
		sizes[c.Segment] = n
	}
	delta := NewPopulation()
	for key, p := range b.profiles {
		delta.move(b.initial[key], p.rfm)
	}
	for key := range b.removed {
		delta.move(b.initial[key], rfmPoint{})
	}
	pop := NewPopulation()
	for _, h := range [...][3]map[int64]int64{
		{delta.Days, b.s.pop.Days, pop.Days},
		{delta.Orders, b.s.pop.Orders, pop.Orders},
		{delta.Money, b.s.pop.Money, pop.Money},
	} {
		for bin, d := range h[0] {
			if d != 0 {
				h[2][bin] = h[1][bin] + d
			}
		}
	}
	return sizes, pop
}

// newStats returns the offer statistics the batch's feedback leads to.
func (b *Batch) newStats() map[OfferStatKey]OfferCounts {
	if len(b.feedback) == 0 {
		return nil
	}
	b.s.sizesMu.Lock()
	defer b.s.sizesMu.Unlock()
	out := make(map[OfferStatKey]OfferCounts, len(b.feedback))
	for k, d := range b.feedback {
		c := b.s.stats[k]
		c.Add(d)
		out[k] = c
	}
	return out
}
