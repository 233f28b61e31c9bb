package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/audit"
	"github.com/tailorcdp/tailor/state"
)

// Erasure (decision 0031): an erasure request is an identity record on the
// events topic (IdentityErase), keyed by the key it names, so that it is
// applied after the events of that key already there, by the partition
// that holds it, exactly once like every record. What it removes, and
// what it leaves, is state.Batch.Erase's; what it sends on goes in the
// batch's Kafka transaction:
//
//   - the erasure itself, to the partition of the profile the named key
//     had been merged into;
//   - follow-ups (ErasureRequest.LinkOf) to the partitions holding the
//     aliases of the ids merged into the erased profile.
//
// The erasure ends its store batch, and its outcome is kept in the store
// of each partition it was applied in, under its id (Reads.Erasure).

// IdentityErase: keyed by the key to erase, the value an ErasureRecord.
const IdentityErase = "erase"

// ErasureRecord is the value of an IdentityErase record, JSON.
type ErasureRecord struct {
	// ID names the erasure: empty in the request (the erasure is named
	// by where its record is, ErasureID), set in what is sent on.
	ID string `json:"id,omitempty"`
	// RequestedAt is when it was asked for (Unix ms): events of the key
	// received before it and applied after it are dropped.
	RequestedAt int64 `json:"requestedAt"`
	// By is the label of the key that asked for it.
	By string `json:"by,omitempty"`
	// Suppress drops every later event of the erased ids.
	Suppress bool `json:"suppress,omitempty"`
	// LinkOf makes it a follow-up: the record key was merged into the
	// erased profile LinkOf, whose partition sent it.
	LinkOf string `json:"linkOf,omitempty"`
}

// ErasureRecordOf returns the record that asks for the erasure of key.
func ErasureRecordOf(topic, key string, e ErasureRecord) (*kgo.Record, error) {
	v, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode erasure of %q: %w", key, err)
	}
	return &kgo.Record{Topic: topic, Key: []byte(key), Value: v,
		Headers: []kgo.RecordHeader{{Key: HeaderIdentity, Value: []byte(IdentityErase)}}}, nil
}

// ErasureID names the erasure whose request is the record at offset in
// partition: "<partition>-<offset>". Its outcome is kept there.
func ErasureID(partition int32, offset int64) string {
	return strconv.Itoa(int(partition)) + "-" + strconv.FormatInt(offset, 10)
}

// ParseErasureID returns the partition and offset an erasure id names.
func ParseErasureID(id string) (partition int32, offset int64, err error) {
	p, o, ok := strings.Cut(id, "-")
	pn, perr := strconv.ParseInt(p, 10, 32)
	on, oerr := strconv.ParseInt(o, 10, 64)
	if !ok || perr != nil || oerr != nil || pn < 0 || on < 0 {
		return 0, 0, fmt.Errorf("erasure id %q is not <partition>-<offset>", id)
	}
	return int32(pn), on, nil
}

// applyErase applies an erasure record read in part, returning the
// records it sends on.
func (p *Processor) applyErase(batch *state.Batch, part *partition, r *kgo.Record) ([]*kgo.Record, error) {
	key := string(r.Key)
	var e ErasureRecord
	if err := json.Unmarshal(r.Value, &e); err != nil {
		return []*kgo.Record{p.deadLetter(r, fmt.Errorf("erasure record: %w", err))}, nil
	}
	if e.ID == "" {
		// As asked for: the erasure is named by where its request is.
		e.ID = ErasureID(r.Partition, r.Offset)
	}
	out, err := batch.Erase(key, state.ErasureRequest{ID: e.ID, RequestedAt: e.RequestedAt, Suppress: e.Suppress, LinkOf: e.LinkOf})
	if err != nil || out == nil {
		return nil, err
	}
	part.erased = append(part.erased, key)
	var sends []*kgo.Record
	switch out.State {
	case state.ErasureForwarded:
		if linkHops(r) >= maxAliasHops {
			return []*kgo.Record{p.deadLetter(r, fmt.Errorf("erasure of %q, merged into %q, sent on more than %d times: links in a cycle", key, out.Into, maxAliasHops))}, nil
		}
		out.Partition = PartitionOf(out.Into, p.cfg.Partitions)
		fwd, err := ErasureRecordOf(p.cfg.Topics.Events, out.Into, e)
		if err != nil {
			return nil, err
		}
		fwd.Headers = append(fwd.Headers, kgo.RecordHeader{Key: HeaderSource, Value: []byte(source(r))})
		sends = append(sends, withLinkHop(fwd, r))
	case state.ErasureDone:
		for _, id := range out.Unlinks {
			if PartitionOf(id, p.cfg.Partitions) == part.id {
				continue // its alias would be in this store: it has none
			}
			f := e
			f.LinkOf = key
			rec, err := ErasureRecordOf(p.cfg.Topics.Events, id, f)
			if err != nil {
				return nil, err
			}
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: HeaderSource, Value: []byte(source(r))})
			sends = append(sends, rec)
			part.erased = append(part.erased, id)
		}
	}
	if err := batch.KeepErasure(out); err != nil {
		return nil, err
	}
	if out.State == state.ErasureDone {
		rec, err := audit.Entry{ID: e.ID, Action: audit.ErasureApplied, At: time.UnixMilli(out.AppliedAt), By: e.By, Detail: map[string]any{
			"subject": audit.Subject(key), "found": out.Found, "removed": out.Removed, "suppressed": out.Suppressed,
			"requestedAt": time.UnixMilli(out.RequestedAt).UTC(),
		}}.Record(p.cfg.Topics.Audit)
		if err != nil {
			return nil, err
		}
		sends = append(sends, rec)
	}
	p.m.erasures.WithLabelValues(out.State).Inc()
	if out.RequestedAt > 0 && out.State == state.ErasureDone {
		p.m.erasureDelay.Observe(float64(out.AppliedAt-out.RequestedAt) / 1000)
	}
	return sends, nil
}

// Erasure returns the outcome of erasure id as the store of partition
// holds it: ok false while its request is not applied yet (the store is
// before the offset the id names, or the erasure went on to partition
// and is not applied there yet). It returns ErrNotOwned when this
// instance does not hold partition, and state.ErrNotFound when the
// record the id names is applied but was no erasure.
func (r Reads) Erasure(id string, partition int32) (e state.Erasure, ok bool, err error) {
	p := r.p
	named, offset, err := ParseErasureID(id)
	if err != nil {
		return state.Erasure{}, false, err
	}
	if partition < 0 {
		partition = named
	}
	if int(partition) >= p.cfg.Partitions {
		return state.Erasure{}, false, fmt.Errorf("erasure %q: partition %d of %d: %w", id, partition, p.cfg.Partitions, state.ErrNotFound)
	}
	p.mu.RLock()
	store := p.storeLocked(partition)
	p.mu.RUnlock()
	if store == nil {
		return state.Erasure{}, false, fmt.Errorf("erasure %q is in partition %d: %w", id, partition, ErrNotOwned)
	}
	next, _, err := store.NextOffset()
	if err != nil {
		return state.Erasure{}, false, fmt.Errorf("erasure %q: %w", id, err)
	}
	if partition == named && next <= offset {
		if p.beyondEnd(named, offset) {
			return state.Erasure{}, false, fmt.Errorf("erasure %q: partition %d has no record at offset %d: %w", id, named, offset, state.ErrNotFound)
		}
		return state.Erasure{}, false, nil // not applied yet
	}
	e, err = store.Erasure(id)
	if errors.Is(err, state.ErrNotFound) && partition != named {
		return state.Erasure{}, false, nil // sent on here, not applied yet
	}
	if err != nil {
		return state.Erasure{}, false, err
	}
	return e, true, nil
}

// PartitionOwner says where partition is held: here (local), or at the
// HTTP address of the instance that last published it ("" when none has).
func (r Reads) PartitionOwner(partition int32) (addr string, local bool) {
	p := r.p
	p.mu.RLock()
	_, fenced := p.fenced[partition]
	held := p.storeLocked(partition) != nil || fenced
	p.mu.RUnlock()
	if held {
		return "", true
	}
	p.shared.mu.RLock()
	defer p.shared.mu.RUnlock()
	if s := p.shared.remote[partition]; s != nil {
		return s.Owner, false
	}
	return "", false
}

// Suppressed reports whether key was erased with suppression, as far as
// this instance can tell: it looks in the store of key's partition when
// it is held here, applied or as a standby replica, and answers false
// otherwise (the partition that applies key's events drops them).
func (r Reads) Suppressed(key string) bool {
	p := r.p
	id := PartitionOf(key, p.cfg.Partitions)
	p.mu.RLock()
	store := p.storeLocked(id)
	if store == nil {
		store = p.standby.store(id)
	}
	p.mu.RUnlock()
	if store == nil {
		return false
	}
	ok, err := store.Suppressed(key)
	if err != nil {
		p.log.Warn("could not tell whether an id is suppressed; accepting its event", "err", err)
	}
	return ok
}

// beyondEnd reports whether offset lies past the end of the events
// topic's partition: no record is there, so no erasure is pending there.
// When the end cannot be read, it says no.
func (p *Processor) beyondEnd(partition int32, offset int64) bool {
	select {
	case <-p.clSet:
	default:
		return false // no client yet
	}
	ctx, cancel := context.WithTimeout(p.ctx, 2*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(p.cl).ListEndOffsets(ctx, p.cfg.Topics.Events)
	if err != nil {
		return false
	}
	end, ok := ends.Lookup(p.cfg.Topics.Events, partition)
	return ok && end.Err == nil && offset >= end.Offset
}
