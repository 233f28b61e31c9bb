package stream

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Outputs that cannot be written. A worker's step that writes outputs
// (applying a batch of records, a wake, a backfill batch) fails with an
// outputError when its Kafka transaction does not commit: the broker is
// away or failing over, or the transaction timed out. The store has not
// committed the step, but the transaction's fate may be unknown (a commit
// whose answer was lost). Rather than stop the engine, the worker renews
// the partition's producer, whose fencing settles that transaction, reads
// the partition's progress marker as an assignment does (startFrom),
// redoes without producing what the marker holds and the store does not,
// and runs the step again: exactly once, as after a restart (decision
// 0007). It goes on, with a pause growing to retryPauseMax, until the
// step succeeds or the partition is no longer applied here (revoked, or
// its session lost: its next owner applies the records). Meanwhile the
// partition's reads answer what its store has committed.

// Pauses between attempts to write a step's outputs.
const (
	retryPause    = 250 * time.Millisecond
	retryPauseMax = 10 * time.Second
	// renewTimeout bounds one attempt to fence the renewed producer in
	// and read the progress marker.
	renewTimeout = 30 * time.Second
)

// retrying runs op, a step of part's worker, and again as the comment
// above says while its outputs cannot be written.
func (p *Processor) retrying(part *partition, op func() error) error {
	err := op()
	pause := retryPause
	for attempt := 1; isOutputError(err) && p.applying(part); attempt++ {
		p.m.outputRetries.Inc()
		p.log.Warn("outputs not written: the partition's producer is renewed and the step tried again", "partition", part.id, "attempt", attempt, "pause", pause, "err", err)
		select {
		case <-part.stop:
			return err
		case <-p.ctx.Done():
			return err
		case <-time.After(pause):
		}
		pause = min(2*pause, retryPauseMax)
		if err = p.renewOutput(part); err != nil {
			continue
		}
		if err = p.redo(part); err == nil {
			err = op()
		}
	}
	return err
}

func isOutputError(err error) bool {
	var out *outputError
	return errors.As(err, &out)
}

// applying reports whether part is the partition applied here under its
// id.
func (p *Processor) applying(part *partition) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.parts[part.id] == part
}

// renewOutput replaces part's producer, fences it in and starts the
// partition from its progress marker; its errors are outputErrors but
// for reading the store.
func (p *Processor) renewOutput(part *partition) error {
	if err := part.out.renew(); err != nil {
		return &outputError{err}
	}
	ctx, cancel := context.WithTimeout(p.ctx, renewTimeout)
	defer cancel()
	if err := part.out.fence(ctx); err != nil {
		return &outputError{fmt.Errorf("fence the renewed producer: %w", err)}
	}
	marker, err := part.out.lastMarker(ctx)
	if err != nil {
		return &outputError{fmt.Errorf("read the progress marker: %w", err)}
	}
	return p.startFrom(part, marker)
}

// startFrom sets where part's worker starts from its progress marker:
// records before the marker's offset had their outputs produced (they
// are applied without producing again), and a wake or backfill batch
// that the marker holds and the store does not is redone without
// producing (redo).
func (p *Processor) startFrom(part *partition, marker progress) error {
	next, ok, err := part.store.NextOffset()
	if err != nil {
		return fmt.Errorf("read the stored offset: %w", err)
	}
	lastWake, _, err := part.store.LastWake()
	if err != nil {
		return fmt.Errorf("read the last wake: %w", err)
	}
	part.replayTo, part.redoWake, part.redoBackfill = marker.next, 0, false
	// A wake's marker carries the offset the store was at: the wake came
	// after every record before it.
	if ok && marker.wake > lastWake.UnixMilli() && marker.next == next {
		part.redoWake = marker.wake
	}
	// A backfill batch's marker names the step it started from: if the
	// store is still there, the batch was not committed.
	if ok && marker.backfill != nil && marker.next == next {
		step, pending, err := part.store.BackfillPending()
		part.redoBackfill = err == nil && pending && step == *marker.backfill
	}
	return nil
}

// redo redoes, without producing, the wake or backfill batch whose
// outputs Kafka holds and the store does not (startFrom).
func (p *Processor) redo(part *partition) error {
	switch {
	case part.redoWake != 0:
		at := part.redoWake
		part.redoWake = 0
		return p.wake(part, time.UnixMilli(at), false)
	case part.redoBackfill:
		part.redoBackfill = false
		_, err := p.backfill(part, false)
		return err
	}
	return nil
}
