package state

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Retention (Options.Retention): a profile with no event for that long,
// by the event time of its last event (Profile.LastSeen) against the
// store's clock, is deleted by the wake-up schedule that drives segment
// exits (schedule.go). Each profile's wake-up is at the latest its
// retention deadline, LastSeen plus the retention; a later event moves
// the deadline, so a wake at an old one finds the profile kept and
// schedules the next. Deleting goes through the batch like any write, so
// the changelog gets a tombstone of each key and a crash redoes the
// wake, exactly once (decision 0027).

// retentionMark is the name, among the backfill's segment fingerprints,
// of the retention the profiles' wake-ups reflect: turning retention on
// or changing it walks every profile once (Batch.Backfill) to schedule
// it, so that a profile no later event touches expires too. It starts
// with a NUL byte, which no configured segment name does.
//
// An alias of the deleted profile held by another partition (an id whose
// key hashes there) goes through the events topic, like a link: the
// processor sends an unlink record to that partition, which deletes it
// (Batch.Unlinks, Batch.Unlink).
const retentionMark = "\x00retention"

// ReasonRetention is KeyedChange.Reason for the exits of a profile
// deleted by retention.
const ReasonRetention = "retention"

// retentionDeadline returns when p expires under retention d (Unix ms); 0
// when d is 0 (keep for ever).
func retentionDeadline(p *Profile, d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return p.LastSeen + d.Milliseconds()
}

// expired reports whether p has had no event for the store's retention at
// at (Unix ms).
func (b *Batch) expired(p *Profile, at int64) bool {
	deadline := retentionDeadline(p, b.s.opts.Retention)
	return deadline != 0 && deadline <= at
}

// expire deletes the profile of key, p as the batch found it, and what
// the store keeps for it: the order ids it counted (dropOrders, once the
// wake has found every expired profile), the aliases in this
// store that point at it (ids merged into it; its wake-up and its key go
// at commit, as for a profile Link took out). Each segment it was in ends
// with an exited change whose Reason is ReasonRetention, which also takes
// it out of the segment sizes; the RFM histograms stop counting it at
// commit.
func (b *Batch) expire(key string, p *Profile) error {
	b.remove(key, p, ReasonRetention)
	b.expiredN++
	b.expiring = append(b.expiring, key) // their order ids: dropOrders
	for _, id := range p.AnonymousIDs {
		to, err := getAlias(b.txn, id)
		if err != nil {
			return fmt.Errorf("expire %q: %w", key, err)
		}
		if to != key {
			// Held by another partition, if any: the caller sends it
			// there (Unlinks, Unlink).
			b.unlinks = append(b.unlinks, Link{From: id, To: key})
			continue
		}
		if err := b.del(aliasKey(id)); err != nil {
			return fmt.Errorf("expire %q: delete alias %q: %w", key, id, err)
		}
	}
	return nil
}

// dropOrders deletes the order ids counted for the profiles expire
// deleted. One iterator serves them all: a write transaction's iterator
// sorts the batch's pending writes as it is made, which per profile made
// a wake quadratic in the profiles it deleted.
func (b *Batch) dropOrders() error {
	if len(b.expiring) == 0 {
		return nil
	}
	slices.Sort(b.expiring)
	var stored [][]byte
	it := b.txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixOrder}})
	for _, key := range b.expiring {
		prefix := pairKey(prefixOrder, key, "")
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			stored = append(stored, it.Item().KeyCopy(nil))
		}
	}
	it.Close()
	for _, k := range stored {
		if err := b.del(k); err != nil {
			return fmt.Errorf("delete order id %q of an expired profile: %w", k, err)
		}
	}
	b.expiring = b.expiring[:0]
	return nil
}

// Unlinks returns the ids linked to the profiles the batch deleted for
// retention whose aliases this store does not hold: those of them that
// another partition holds are for the caller to send there (Unlink).
func (b *Batch) Unlinks() []Link { return b.unlinks }

// Unlink deletes the alias from -> to, sent by the partition that deleted
// to's profile (Unlinks); an alias of from to another key, or none, is
// left as it is, so an Unlink applied again changes nothing.
func (b *Batch) Unlink(from, to string) error {
	if b.aliases[from] == to {
		delete(b.aliases, from)
	}
	cur, err := getAlias(b.txn, from)
	if err != nil || cur != to {
		return err
	}
	if err := b.del(aliasKey(from)); err != nil {
		return fmt.Errorf("unlink %q from %q: %w", from, to, err)
	}
	return nil
}

// Expired returns how many profiles the batch deleted for retention.
func (b *Batch) Expired() int { return b.expiredN }

// remove takes p, key's profile as the batch found it, out of the batch:
// its key and wake-up are deleted at commit (commitLinks), the RFM
// histograms stop counting it, and each segment it was in ends with an
// exited change for reason. It returns how many segments it left.
func (b *Batch) remove(key string, p *Profile, reason string) int {
	delete(b.profiles, key)
	if b.removed == nil {
		b.removed = make(map[string]*Profile)
	}
	b.removed[key] = p
	names := make([]string, 0, len(p.Segments))
	for name := range p.Segments {
		names = append(names, name)
	}
	sort.Strings(names)
	now := b.now()
	for _, name := range names {
		b.changes = append(b.changes, KeyedChange{Key: key, Reason: reason, Change: Change{Segment: name, At: now}})
	}
	return len(names)
}
