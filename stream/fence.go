package stream

import (
	"errors"
	"fmt"
	"sort"

	"github.com/tailorcdp/tailor/state"
)

// Fencing (decision 0017, amending 0005): a partition whose store fails
// (it does not open: damaged tables, a missing file; or a read or commit
// fails while applying) is fenced rather than stopping the engine. Its
// store is closed, its records are no longer fetched (the store's offset
// stays where it was, so nothing is skipped: Kafka keeps the records),
// reads of its keys answer a *FencedError naming it, the gauge
// tailor_partition_fenced says so and an error is logged. The other
// partitions go on. A fenced partition does not hold readiness back.
// It is tried again when it is assigned again (a rebalance, a restart);
// once the changelog exists it will be rebuilt from it.
//
// Errors writing a batch's outputs to Kafka are not the store's: they
// still stop Run (outputError).

// ErrFenced is matched by the error of a read of a key whose partition is
// fenced (a *FencedError).
var ErrFenced = errors.New("partition fenced")

// FencedError is the error of a read of a key whose partition is fenced.
// It matches ErrFenced and state.ErrUnavailable (the key cannot be
// answered now: a 503) and unwraps to the store's error.
type FencedError struct {
	Partition int32
	Cause     error // the store's error that fenced it
}

func (e *FencedError) Error() string {
	return fmt.Sprintf("partition %d is fenced, its profiles cannot be read or updated: its store failed: %v", e.Partition, e.Cause)
}

// Is matches ErrFenced and state.ErrUnavailable.
func (e *FencedError) Is(target error) bool {
	return target == ErrFenced || target == state.ErrUnavailable
}

func (e *FencedError) Unwrap() error { return e.Cause }

// outputError is a failure to write a batch's outputs to Kafka.
type outputError struct{ err error }

func (e *outputError) Error() string { return e.err.Error() }
func (e *outputError) Unwrap() error { return e.err }

// fenceLocked records partition id as fenced by cause, stops fetching it,
// and says so. p.mu must be held for writing.
func (p *Processor) fenceLocked(id int32, cause error) {
	p.fenced[id] = cause
	p.cl.PauseFetchPartitions(map[string][]int32{p.cfg.Topics.Events: {id}})
	p.m.fenced.WithLabelValues(partitionLabel(id)).Set(1)
	p.log.Error("partition fenced: its store failed; its keys answer 503 naming it until it is assigned again and its store opens, the other partitions serve",
		"partition", id, "err", cause)
}

// unfenceLocked forgets that partition id was fenced (it was revoked, or
// its store opened) and fetches it again. p.mu must be held for writing.
func (p *Processor) unfenceLocked(id int32) {
	if _, ok := p.fenced[id]; !ok {
		return
	}
	delete(p.fenced, id)
	p.cl.ResumeFetchPartitions(map[string][]int32{p.cfg.Topics.Events: {id}})
	p.m.fenced.DeleteLabelValues(partitionLabel(id))
}

// fenceRunning fences a partition whose worker failed on err, in the
// background: closing the store waits for the worker, which called it.
func (p *Processor) fenceRunning(part *partition, err error) {
	p.closing.Add(1)
	go func() {
		defer p.closing.Done()
		p.mu.Lock()
		if p.parts[part.id] != part {
			p.mu.Unlock()
			return // revoked meanwhile: closed there
		}
		delete(p.parts, part.id)
		p.fenceLocked(part.id, err)
		p.mu.Unlock()
		p.closePartitions([]*partition{part}, "fenced")
	}()
}

// fencedError returns the error of a read of partition id if it is fenced,
// nil if not. p.mu must be held.
func (p *Processor) fencedError(id int32) error {
	if cause, ok := p.fenced[id]; ok {
		return &FencedError{Partition: id, Cause: cause}
	}
	return nil
}

// Fenced returns the fenced partitions of the events topic held by this
// instance, in order, with the store error that fenced each.
func (r Reads) Fenced() []FencedError {
	p := r.p
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]FencedError, 0, len(p.fenced))
	for id, cause := range p.fenced {
		out = append(out, FencedError{Partition: id, Cause: cause})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Partition < out[j].Partition })
	return out
}
