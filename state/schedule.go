package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Time alone changes segment memberships: a cart added an hour ago leaves
// "abandoned in the last hour" with no new event. Each store keeps a
// schedule of the next instant at which each profile's timed segments may
// change (Profile.WakeAt), written in the same transaction as the profile:
// one key per profile, prefixWake + big-endian Unix ms + profile key, so
// that the due profiles are the first keys in order. Batch.Wake
// re-evaluates the due profiles; Commit reschedules every profile it
// writes.

const prefixWake = 'w'

// keyLastWake holds the instant (Unix ms, 8 bytes) of the last committed
// Batch.Wake, so that a wake whose outputs were produced before a crash,
// but whose batch was not committed, can be redone without producing them
// again.
var keyLastWake = []byte("m/last-wake")

// noWake is Store.nextWake when nothing is scheduled.
const noWake = math.MaxInt64

func wakeKey(at int64, key string) []byte {
	k := make([]byte, 0, 9+len(key))
	k = append(k, prefixWake)
	k = binary.BigEndian.AppendUint64(k, uint64(at))
	return append(k, key...)
}

// NextWake returns the earliest scheduled wake-up of the store's profiles;
// ok is false when none is scheduled. It may be early, never late: a wake
// at that instant may find nothing due.
func (s *Store) NextWake() (at time.Time, ok bool) {
	t := s.nextWake.Load()
	if t == noWake {
		return time.Time{}, false
	}
	return time.UnixMilli(t), true
}

// LastWake returns the instant of the last committed Batch.Wake; ok is
// false when there has been none.
func (s *Store) LastWake() (at time.Time, ok bool, err error) {
	ms, ok, err := s.readInt64(keyLastWake)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("read last wake in %s: %w", s.db.Opts().Dir, err)
	}
	return time.UnixMilli(ms), ok, nil
}

// loadNextWake reads the earliest schedule entry.
func (s *Store) loadNextWake() error {
	next := int64(noWake)
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixWake}})
		defer it.Close()
		it.Rewind()
		if it.Valid() {
			next = int64(binary.BigEndian.Uint64(it.Item().Key()[1:9]))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read the wake schedule in %s: %w", s.db.Opts().Dir, err)
	}
	s.nextWake.Store(next)
	return nil
}

// Wake re-evaluates, at at, the timed segments of up to limit profiles
// whose wake-up is due at at, in schedule order, and returns how many it
// took. It must be the batch's first and only use: a wake batch holds no
// events, and Commit records at as the last wake. Given the same store
// contents, at and limit, it takes the same profiles and makes the same
// changes, so a wake can be redone after a crash.
func (b *Batch) Wake(at time.Time, limit int) (int, error) {
	if len(b.profiles) > 0 || b.woke || b.backfill != nil {
		return 0, errors.New("wake on a batch already in use")
	}
	b.at, b.woke = at, true
	type entry struct {
		at  int64
		key string
	}
	due := make([]entry, 0, min(limit, 1024))
	bound := at.UnixMilli()
	it := b.txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixWake}})
	for it.Rewind(); it.Valid() && len(due) < limit; it.Next() {
		k := it.Item().Key()
		t := int64(binary.BigEndian.Uint64(k[1:9]))
		if t > bound {
			break
		}
		due = append(due, entry{t, string(k[9:])})
	}
	it.Close()
	n := 0
	for _, e := range due {
		if b.Full() {
			break
		}
		// The entry goes whatever the profile says; Commit schedules the
		// profile's next one.
		if err := b.del(wakeKey(e.at, e.key)); err != nil {
			return n, fmt.Errorf("unschedule %q: %w", e.key, err)
		}
		n++
		if _, gone := b.removed[e.key]; gone {
			continue // expired at an earlier entry of this wake
		}
		p, err := b.Profile(e.key)
		if err != nil {
			return n, err
		}
		if sumCounts(p) == 0 { // no such profile: a stray entry
			delete(b.profiles, e.key)
			continue
		}
		if p.WakeAt == e.at {
			p.WakeAt = 0
		}
		if b.expired(p, bound) {
			if err := b.expire(e.key, p); err != nil {
				return n, err
			}
			continue
		}
		p.retimed = true
		b.inputs = Inputs{Time: true}
		for _, c := range b.evaluate(p, nil, &b.inputs) {
			b.changes = append(b.changes, KeyedChange{Key: e.key, Change: c})
		}
	}
	return n, b.dropOrders()
}

// reschedule computes the next wake-up of every profile of the batch and
// moves its schedule entry, returning the earliest new one (noWake for
// none).
func (b *Batch) reschedule() (int64, error) {
	earliest := int64(noWake)
	segs := b.m.Segments
	timed := segs != nil && segs.timed
	horizon := b.m.RFMHorizon
	retention := b.s.opts.Retention
	if !timed && horizon <= 0 && retention <= 0 {
		return earliest, nil
	}
	now := b.now()
	b.env.quintiles.Horizon = horizon
	for key, p := range b.profiles {
		if !p.retimed {
			continue // nothing that decides its wake-up changed
		}
		p.retimed = false
		next := int64(0)
		if timed {
			b.env.reset(segs, p, now)
			next = segs.wakeAt(&b.env)
		}
		// The RFM histograms must follow orders leaving the horizon too.
		if exit := p.orderExit(now.UnixMilli(), horizon); exit != 0 && (next == 0 || exit < next) {
			next = exit
		}
		if end := retentionDeadline(p, retention); end != 0 && (next == 0 || end < next) {
			next = end
		}
		if next == p.WakeAt {
			continue
		}
		if p.WakeAt != 0 {
			if err := b.del(wakeKey(p.WakeAt, key)); err != nil {
				return 0, fmt.Errorf("unschedule %q: %w", key, err)
			}
		}
		if next != 0 {
			if err := b.set(wakeKey(next, key), nil); err != nil {
				return 0, fmt.Errorf("schedule %q: %w", key, err)
			}
			earliest = min(earliest, next)
		}
		p.WakeAt = next
	}
	return earliest, nil
}
