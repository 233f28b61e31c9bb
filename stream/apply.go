package stream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/internal/jsonenc"
	"github.com/tailorcdp/tailor/state"
)

// apply applies one partition's records. Runs of records are committed to
// the store together with the offset after them; what they produce (segment
// changes, dead letters, rerouted records) is written exactly once, in a
// Kafka transaction committed just before the store (see output).
func (p *Processor) apply(ctx context.Context, part *partition, records []*kgo.Record) error {
	start := time.Now()
	limit := len(records)
	for len(records) > 0 {
		n, err := p.applyBatch(ctx, part, records, limit)
		if errors.Is(err, state.ErrBatchTooLarge) && n > 1 {
			// The batch's size was underestimated (Batch.Grow): nothing
			// of it was written, so its records go again, in halves.
			p.log.Info("batch too large for one store transaction, applying its records again in smaller batches", "partition", part.id, "records", n, "error", err)
			p.m.batchRetries.Inc()
			limit = n / 2
			continue
		}
		if err != nil {
			return err
		}
		records = records[n:]
	}
	p.m.batch.Observe(time.Since(start).Seconds())
	return nil
}

// applyBatch applies records from the first, at most limit of them, in one
// store batch, until the batch is full, and commits it; it returns how
// many records the batch covered, committed or not.
func (p *Processor) applyBatch(ctx context.Context, part *partition, records []*kgo.Record, limit int) (n int, err error) {
	batch := part.store.Begin()
	var outputs []*kgo.Record
	var counts [numOutcomes]int
	var changes, withheld int
	var delays []time.Time
	for i, r := range records[:min(limit, len(records))] {
		n = i + 1
		if r.Attrs.IsControl() {
			continue // a transaction's marker: nothing to apply
		}
		// Records before the progress marker had their outputs produced
		// before a crash: apply them, but do not produce again.
		produce := r.Offset >= part.replayTo
		emit := func(out *kgo.Record) {
			if produce {
				outputs = append(outputs, out)
			}
		}
		beforeChanges, beforeLinks := len(batch.Changes()), len(batch.Links())
		v, err := p.applyRecord(batch, part, r)
		if err != nil {
			part.erased = part.erased[:0]
			batch.Discard()
			return n, fmt.Errorf("partition %d offset %d: %w", part.id, r.Offset, err)
		}
		if v.out != nil {
			emit(v.out)
		}
		for _, out := range v.more {
			emit(out)
		}
		counts[v.outcome]++
		if v.outcome == applied && len(delays) < 64 { // a sample is enough for the histogram
			delays = append(delays, v.received)
		}
		carried, held := p.segmentRecords(batch, source(r), batch.Changes()[beforeChanges:])
		for _, out := range carried {
			emit(out)
		}
		changes, withheld = changes+len(carried), withheld+held
		for _, l := range batch.Links()[beforeLinks:] {
			emit(p.linkRecord(l))
		}
		batch.Grow(len(r.Value))
		if batch.Full() {
			break
		}
	}
	next := records[n-1].Offset + 1
	writeOutputs := func() error {
		// A batch wholly before the progress marker is a replay: Kafka
		// holds its outputs and its writes (from a later batch's), the
		// store does not. Any other batch writes its writes.
		var changelog []*kgo.Record
		if next > part.replayTo {
			changelog = p.changelog(part, batch)
			outputs = append(outputs, changelog...)
		}
		if len(outputs) == 0 {
			return nil
		}
		if err := part.out.write(ctx, outputs, progress{next: next}); err != nil {
			return &outputError{fmt.Errorf("write %d outputs: %w", len(outputs), err)}
		}
		changelogWritten(part, changelog)
		return nil
	}
	err = batch.CommitWith(next, writeOutputs)
	erasedKeys := part.erased
	part.erased = part.erased[:0]
	if err != nil {
		return n, fmt.Errorf("partition %d: %w", part.id, err)
	}
	if p.cfg.Erased != nil {
		for _, key := range erasedKeys {
			p.cfg.Erased(key)
		}
	}
	part.next.Store(next)
	p.countBatch(part, next, &counts, changes, withheld, delays)
	return n, nil
}

// countBatch counts a committed batch in the metrics: the partition's
// applied offset, the records by outcome, the segment changes written
// and withheld, and a sample of the events' delays.
func (p *Processor) countBatch(part *partition, next int64, counts *[numOutcomes]int, changes, withheld int, delays []time.Time) {
	p.m.appliedNext.WithLabelValues(part.label).Set(float64(next))
	for o, c := range counts {
		p.m.events.WithLabelValues(outcome(o).String()).Add(float64(c))
	}
	p.m.segmentChanges.Add(float64(changes))
	p.m.withheld.WithLabelValues(OutputSegments).Add(float64(withheld))
	now := time.Now()
	for _, t := range delays {
		p.m.delay.Observe(now.Sub(t).Seconds())
	}
}

// outcome is what became of an input record: the "outcome" label of
// tailor_events_total.
type outcome uint8

const (
	applied outcome = iota
	duplicate
	deadLettered
	rerouted
	identity
	erased
	numOutcomes
)

func (o outcome) String() string {
	switch o {
	case applied:
		return OutcomeApplied
	case duplicate:
		return OutcomeDuplicate
	case deadLettered:
		return OutcomeDeadLetter
	case rerouted:
		return OutcomeRerouted
	case identity:
		return OutcomeIdentity
	case erased:
		return OutcomeErased
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// verdict is what applying one input record came to.
type verdict struct {
	out      *kgo.Record   // the record it produces, if any
	more     []*kgo.Record // more of them (an erasure)
	outcome  outcome
	received time.Time // an applied event's receive time
}

// applyRecord applies one input record to batch, or decides where else it
// goes: the dead-letter topic for an invalid one, the partition of its
// profile key for one read from another partition (see route), the
// profile its key was merged into. An error is the store's: the batch
// cannot go on.
func (p *Processor) applyRecord(batch *state.Batch, part *partition, r *kgo.Record) (verdict, error) {
	if kind := identityKind(r); kind != "" {
		if out, ok := p.routeIdentity(r); !ok {
			return verdict{out: out, outcome: p.outcomeOf(out, rerouted)}, nil
		}
		if kind == IdentityErase {
			outs, err := p.applyErase(batch, part, r)
			v := verdict{more: outs, outcome: identity}
			if len(outs) == 1 {
				v.outcome = p.outcomeOf(outs[0], identity)
			}
			return v, err
		}
		out, err := p.applyIdentity(batch, r, kind)
		if errors.Is(err, state.ErrErased) {
			return verdict{outcome: erased}, nil // a merge or link of an erased key
		}
		if err != nil {
			return verdict{}, err
		}
		return verdict{out: out, outcome: p.outcomeOf(out, identity)}, nil
	}
	ev, err := part.parser.Parse(r.Value, 0, r.Timestamp)
	if err != nil {
		return verdict{out: p.deadLetter(r, err), outcome: deadLettered}, nil
	}
	ev.KeyLabel = headerValue(r, event.HeaderKeyLabel)
	if out, ok := p.routeEvent(r, &ev); !ok {
		return verdict{out: out, outcome: p.outcomeOf(out, rerouted)}, nil
	}
	key := ev.Key()
	to, err := batch.Resolve(key)
	if err != nil {
		return verdict{}, err
	}
	if to != key {
		// The key's profile was merged into another: its events follow it
		// there, unless the links form a cycle.
		if linkHops(r) >= maxAliasHops {
			return verdict{out: p.deadLetter(r, fmt.Errorf("the profile of %q was merged into %q, but following the links sends it on more than %d times: links in a cycle", key, to, maxAliasHops)), outcome: deadLettered}, nil
		}
		return verdict{out: withLinkHop(p.reroute(r, &ev, to), r), outcome: rerouted}, nil
	}
	ok, err := batch.Apply(&ev)
	if errors.Is(err, state.ErrErased) {
		return verdict{outcome: erased}, nil
	}
	if err != nil {
		return verdict{}, err
	}
	if !ok {
		return verdict{outcome: duplicate}, nil
	}
	return verdict{outcome: applied, received: ev.ReceivedAt}, nil
}

// outcomeOf is deadLettered when out goes to the dead-letter topic, else
// otherwise.
func (p *Processor) outcomeOf(out *kgo.Record, otherwise outcome) outcome {
	if out != nil && out.Topic == p.cfg.Topics.DeadLetter {
		return deadLettered
	}
	return otherwise
}

// SegmentChange is the JSON of a record on the segments topic, keyed by
// the profile key.
type SegmentChange struct {
	Key     string    `json:"key"`
	Segment string    `json:"segment"`
	Change  string    `json:"change"` // "entered" or "exited"
	Time    time.Time `json:"time"`
	// MessageID is the messageId of the event that caused the change;
	// absent when time alone caused it (a window slid past an event).
	MessageID string `json:"messageId,omitempty"`
	// Reason says why an exit no event caused was made, when not time
	// alone or a merge: "retention" (the profile was deleted, having had
	// no event for store.retention); absent otherwise.
	Reason string `json:"reason,omitempty"`
}

// changeRecord returns the segments topic record of c; src says where the
// event that caused it was read, or "time".
func (p *Processor) changeRecord(src string, c state.KeyedChange) *kgo.Record {
	change := "exited"
	if c.Entered {
		change = "entered"
	}
	// SegmentChange's JSON, written by hand: a record per change, on the
	// apply path.
	value := make([]byte, 0, 96+len(c.Key)+len(c.Segment)+len(c.MessageID)+len(c.Reason))
	value = append(value, `{"key":`...)
	value = jsonenc.AppendString(value, c.Key)
	value = append(value, `,"segment":`...)
	value = jsonenc.AppendString(value, c.Segment)
	value = append(value, `,"change":"`...)
	value = append(value, change...)
	value = append(value, `","time":"`...)
	value = c.At.UTC().AppendFormat(value, time.RFC3339Nano)
	value = append(value, '"')
	if c.MessageID != "" {
		value = append(value, `,"messageId":`...)
		value = jsonenc.AppendString(value, c.MessageID)
	}
	if c.Reason != "" {
		value = append(value, `,"reason":`...)
		value = jsonenc.AppendString(value, c.Reason)
	}
	value = append(value, '}')
	return &kgo.Record{Topic: p.cfg.Topics.Segments, Key: []byte(c.Key), Value: value,
		Headers: []kgo.RecordHeader{{Key: HeaderSource, Value: []byte(src)}}}
}

func source(r *kgo.Record) string {
	return r.Topic + "/" + strconv.Itoa(int(r.Partition)) + "/" + strconv.FormatInt(r.Offset, 10)
}

// applyIdentity applies an identity record, returning the record it
// sends on, if any: a link takes the profile out and sends it to the
// profile it joins; a merge adds it there, or sends it further when that
// profile was itself merged into another since.
func (p *Processor) applyIdentity(batch *state.Batch, r *kgo.Record, kind string) (*kgo.Record, error) {
	key := string(r.Key)
	merge := func(to string, profile []byte) *kgo.Record {
		return &kgo.Record{Topic: p.cfg.Topics.Events, Key: []byte(to), Value: profile,
			Headers: []kgo.RecordHeader{{Key: HeaderIdentity, Value: []byte(IdentityMerge)}, {Key: HeaderSource, Value: []byte(source(r))}}}
	}
	switch kind {
	case IdentityLink:
		to := string(r.Value)
		moved, err := batch.Link(key, to)
		if err != nil || moved == nil {
			return nil, err
		}
		return merge(to, moved), nil
	case IdentityMerge:
		moved, err := state.DecodeProfile(r.Value)
		if err != nil {
			return p.deadLetter(r, fmt.Errorf("identity merge record: %w", err)), nil
		}
		to, err := batch.Resolve(key)
		if err != nil {
			return nil, err
		}
		if to != key && linkHops(r) >= maxAliasHops {
			return p.deadLetter(r, fmt.Errorf("identity merge record for %q, merged into %q, sent on more than %d times: links in a cycle", key, to, maxAliasHops)), nil
		}
		if to != key {
			return withLinkHop(merge(to, r.Value), r), nil
		}
		return nil, batch.Merge(key, moved)
	case IdentityUnlink:
		return nil, batch.Unlink(key, string(r.Value))
	}
	return p.deadLetter(r, fmt.Errorf("identity record of unknown kind %q", kind)), nil
}

func (p *Processor) deadLetter(r *kgo.Record, reason error) *kgo.Record {
	src := source(r)
	return &kgo.Record{
		Topic: p.cfg.Topics.DeadLetter,
		Key:   r.Key,
		Value: r.Value,
		Headers: append(append([]kgo.RecordHeader(nil), r.Headers...),
			kgo.RecordHeader{Key: HeaderReason, Value: []byte(reason.Error())},
			kgo.RecordHeader{Key: HeaderSource, Value: []byte(src)},
		),
	}
}
