package stream

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/state"
)

// The partition worker: one goroutine per assigned partition applies the
// records the consumer hands it (apply.go), re-evaluates the profiles that
// time alone moves (wake) and runs backfills after a reload, each step's
// outputs written exactly once (output.go), tried again while Kafka cannot
// take them (retry.go).

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
		case <-part.stop:
			return
		case records := <-part.work:
			p.applyQueued(part, records)
		case <-started:
			started = nil
			if !part.failed {
				p.fail(part, p.retrying(part, func() error { return p.redo(part) }))
			}
		case <-part.poke:
		case <-timer.C:
		}
		wait := wakeCheck
		if started == nil && !part.failed && part.next.Load() >= part.replayTo {
			if at, ok := part.store.NextWake(); ok && !at.After(p.now()) {
				p.fail(part, p.retrying(part, func() error { return p.wake(part, p.now(), true) }))
			}
			var more bool
			p.fail(part, p.retrying(part, func() (err error) {
				more, err = p.backfill(part, true)
				return err
			}))
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
// batch is committed at the partition's offset; it returns how many
// changes were written (those the segments topic's purpose withholds are
// counted apart). produce false writes nothing to Kafka: a redone step
// whose changes Kafka already holds.
func (p *Processor) commitStep(part *partition, batch *state.Batch, src string, at progress, produce bool) (changes int, err error) {
	at.next = part.next.Load()
	cs := batch.Changes()
	var withheld int
	writeChanges := func() error {
		if !produce {
			return nil
		}
		outputs, held := p.segmentRecords(batch, src, cs)
		changes, withheld = len(outputs), held
		outputs = append(outputs, p.unlinkRecords(part, batch, src)...)
		changelog := p.changelog(part, batch)
		outputs = append(outputs, changelog...)
		if len(outputs) == 0 {
			return nil
		}
		if err := part.out.write(p.ctx, outputs, at); err != nil {
			return &outputError{fmt.Errorf("write %d segment changes: %w", len(outputs), err)}
		}
		changelogWritten(part, changelog)
		return nil
	}
	if err := batch.CommitWith(at.next, writeChanges); err != nil {
		return 0, err
	}
	p.m.withheld.WithLabelValues(OutputSegments).Add(float64(withheld))
	return changes, nil
}

// unlinkRecords returns the identity records that delete, in the
// partitions holding them, the aliases of the profiles the batch deleted
// for retention (state.Batch.Unlinks).
func (p *Processor) unlinkRecords(part *partition, batch *state.Batch, src string) []*kgo.Record {
	var out []*kgo.Record
	for _, l := range batch.Unlinks() {
		if PartitionOf(l.From, p.cfg.Partitions) == part.id {
			continue // this store would hold it: it has none
		}
		out = append(out, &kgo.Record{Topic: p.cfg.Topics.Events, Key: []byte(l.From), Value: []byte(l.To),
			Headers: []kgo.RecordHeader{{Key: HeaderIdentity, Value: []byte(IdentityUnlink)}, {Key: HeaderSource, Value: []byte(src)}}})
	}
	return out
}

// applyQueued applies records and whatever else has queued up for the
// partition, as one batch.
func (p *Processor) applyQueued(part *partition, records []*kgo.Record) {
	batch := records
more:
	for len(batch) < p.cfg.MaxPollRecords {
		select {
		case next := <-part.work:
			batch = append(batch[:len(batch):len(batch)], next...)
		default:
			break more
		}
	}
	if part.failed {
		return // not applied: the stored offset stays before them
	}
	p.fail(part, p.retrying(part, func() error {
		// Again after a retry: the batches committed before are skipped.
		next := part.next.Load()
		i, _ := slices.BinarySearchFunc(batch, next, func(r *kgo.Record, next int64) int { return cmp.Compare(r.Offset, next) })
		return p.apply(p.ctx, part, batch[i:])
	}))
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
		p.m.expired.Add(float64(batch.Expired()))
		p.m.segmentChanges.Add(float64(changes))
		if n > 0 {
			p.m.wakeDelay.Observe(time.Since(due).Seconds())
		}
	} else {
		p.log.Info("redid the wake that a crash interrupted, its changes already produced", "partition", part.id, "at", at, "profiles", n)
	}
	return nil
}
