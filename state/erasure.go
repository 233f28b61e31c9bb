package state

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Erasure: a person's right to have what is held about them erased
// (decision 0031). The processor applies an erasure request, which
// travels through the events topic after the person's earlier events, to
// the partition of the key it names (Batch.Erase):
//
//   - a key that was merged into another (an alias): the alias goes, and
//     the erasure goes on to the partition of the profile it joined;
//   - a key with a profile: the profile goes with its wake-up, the order
//     ids counted for it, the aliases this store holds of the ids merged
//     into it (Erasure.Unlinks lists those other partitions hold, for the
//     caller to send there), and each segment it was in ends with an
//     exited change whose Reason is ReasonErased. The RFM histograms and
//     segment sizes stop counting it at commit; the cache drops it; the
//     changelog gets a tombstone of every key deleted, which takes it out
//     of standby replicas and, once compacted, of the changelog itself.
//
// Each key erased leaves a marker: a hash of the key (not the key) and
// when the erasure was asked for. An event for the key received before
// that (one in flight when the erasure was asked for, such as an event
// sent on along a link) and a merge of a profile whose events all came
// before it are dropped, so nothing of before the erasure comes back.
// Under suppression (Options.SuppressErased, kept in the marker) every
// later event of the key is dropped too, and a link of it is refused.
// The erasure's outcome (Erasure) is kept under its id.

// ReasonErased is KeyedChange.Reason for the exits of an erased profile.
const ReasonErased = "erased"

// ErrErased is returned (wrapped) by Batch.Apply, Merge and Link for an
// event, merge or link of an erased key that the erasure's marker drops.
var ErrErased = errors.New("the profile was erased")

// Store keys of erasures.
const (
	// prefixErased + the first 16 bytes of SHA-256(key) -> erasedMark.
	prefixErased = 'z'
	// prefixErasure + erasure id -> the erasure's outcome, JSON.
	prefixErasure = 'e'
)

func erasedKey(key string) []byte {
	sum := sha256.Sum256([]byte(key))
	return append([]byte{prefixErased}, sum[:16]...)
}

func erasureKey(id string) []byte { return append([]byte{prefixErasure}, id...) }

// erasedMark is what a store keeps of an erased key.
type erasedMark struct {
	at       int64 // when the erasure was asked for, Unix ms
	suppress bool  // every later event of the key is dropped
}

func (m erasedMark) encode() []byte {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 9), uint64(m.at))
	if m.suppress {
		return append(v, 1)
	}
	return append(v, 0)
}

func decodeErasedMark(v []byte) (erasedMark, error) {
	if len(v) != 9 {
		return erasedMark{}, fmt.Errorf("erasure marker of %d bytes, want 9", len(v))
	}
	return erasedMark{at: int64(binary.BigEndian.Uint64(v)), suppress: v[8] == 1}, nil
}

// ErasureRequest is an erasure as the processor read it.
type ErasureRequest struct {
	// ID names the erasure: its outcome is kept under it (Store.Erasure).
	ID string
	// RequestedAt is when it was asked for, Unix ms.
	RequestedAt int64
	// Suppress asks that later events of the erased keys be dropped.
	Suppress bool
	// LinkOf, when not empty, makes the request a follow-up of the
	// erasure of LinkOf's profile: only the alias of the key to LinkOf
	// goes (the key was merged into that profile), and no outcome is
	// kept.
	LinkOf string
}

// Erasure is the outcome of an erasure in one partition.
type Erasure struct {
	ID          string `json:"id"`
	State       string `json:"state"` // ErasureDone or ErasureForwarded
	RequestedAt int64  `json:"requestedAt"`
	AppliedAt   int64  `json:"appliedAt"`
	// Found says whether a profile was erased: false when the key had
	// none (never seen, or erased before).
	Found bool `json:"found"`
	// Removed counts what went: the profile, ids linked to it (aliases
	// here and elsewhere), order ids, segment memberships.
	Removed ErasureCounts `json:"removed"`
	// Suppressed says whether later events of the erased ids are dropped.
	Suppressed bool `json:"suppressed"`
	// Partition, for ErasureForwarded, is where the erasure went on: the
	// partition of the profile the named key had been merged into.
	Partition int32 `json:"partition,omitempty"`
	// Into, for ErasureForwarded, is that profile's key: for the caller
	// to send the erasure on; never stored.
	Into string `json:"-"`
	// Unlinks are the ids merged into the erased profile whose aliases
	// other partitions hold, for the caller to send a follow-up
	// (ErasureRequest.LinkOf) to; never stored.
	Unlinks []string `json:"-"`
}

// ErasureCounts counts what an erasure removed.
type ErasureCounts struct {
	Profiles  int `json:"profiles"`
	LinkedIDs int `json:"linkedIds"`
	Orders    int `json:"orders"`
	Segments  int `json:"segments"`
}

// States of an erasure.
const (
	ErasureDone      = "done"
	ErasureForwarded = "forwarded"
)

// Erase applies an erasure of key (see the top of this file) and returns
// its outcome, for the caller to keep (KeepErasure). It ends the batch (Full): events after it in the same
// poll are applied in the next batch, against a store without the
// profile. A follow-up (LinkOf) returns a nil outcome.
func (b *Batch) Erase(key string, req ErasureRequest) (*Erasure, error) {
	b.ended = true
	mark := erasedMark{at: req.RequestedAt, suppress: req.Suppress}
	if err := b.set(erasedKey(key), mark.encode()); err != nil {
		return nil, fmt.Errorf("erase %q: mark it: %w", key, err)
	}
	b.s.erasures.Store(true)
	if req.LinkOf != "" {
		return nil, b.Unlink(key, req.LinkOf)
	}
	out := &Erasure{ID: req.ID, State: ErasureDone, RequestedAt: req.RequestedAt, AppliedAt: b.now().UnixMilli(), Suppressed: req.Suppress}
	to, err := b.Resolve(key)
	if err != nil {
		return nil, err
	}
	if to != key {
		// An alias: it goes here, the profile where it points.
		if err := b.dropAlias(key); err != nil {
			return nil, err
		}
		out.State, out.Into = ErasureForwarded, to
		out.Removed.LinkedIDs = 1
		return out, nil
	}
	p, ok := b.profiles[key]
	if !ok {
		if p, err = b.stored(key); err != nil {
			return nil, err
		}
		if p != nil {
			b.noteInitial(key, p)
		}
	}
	if p != nil {
		if err := b.eraseProfile(key, p, mark, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// eraseProfile takes p, key's profile as the batch found it, out of the
// store with what the store keeps for it, counting into out; the ids
// merged into it whose aliases are here get mark too.
func (b *Batch) eraseProfile(key string, p *Profile, mark erasedMark, out *Erasure) error {
	out.Found = true
	out.Removed.Profiles = 1
	out.Removed.Segments = b.remove(key, p, ReasonErased)
	orders, err := b.takeOrders(key)
	if err != nil {
		return fmt.Errorf("erase %q: %w", key, err)
	}
	out.Removed.Orders = len(orders)
	for _, id := range p.AnonymousIDs {
		to, err := b.Resolve(id)
		if err != nil {
			return fmt.Errorf("erase %q: %w", key, err)
		}
		out.Removed.LinkedIDs++
		if to != key {
			// Held by another partition, if any.
			out.Unlinks = append(out.Unlinks, id)
			continue
		}
		if err := b.dropAlias(id); err != nil {
			return fmt.Errorf("erase %q: %w", key, err)
		}
		if err := b.set(erasedKey(id), mark.encode()); err != nil {
			return fmt.Errorf("erase %q: mark %q: %w", key, id, err)
		}
	}
	return nil
}

// dropAlias deletes the alias of key, recorded in the batch or stored.
func (b *Batch) dropAlias(key string) error {
	delete(b.aliases, key)
	if err := b.del(aliasKey(key)); err != nil {
		return fmt.Errorf("delete alias %q: %w", key, err)
	}
	return nil
}

// KeepErasure stores the outcome of an erasure under its id, in the
// batch: the caller keeps what Erase returned, with the partition a
// forwarded one went on to.
func (b *Batch) KeepErasure(e *Erasure) error {
	if e.ID == "" {
		return nil
	}
	v, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode erasure %q: %w", e.ID, err)
	}
	if err := b.set(erasureKey(e.ID), v); err != nil {
		return fmt.Errorf("keep erasure %q: %w", e.ID, err)
	}
	return nil
}

// erasedMarkOf returns the marker of key, if it was erased.
func (b *Batch) erasedMarkOf(key string) (erasedMark, bool, error) {
	if !b.s.erasures.Load() {
		return erasedMark{}, false, nil
	}
	return readErasedMark(b.txn, key)
}

// readErasedMark reads the marker of key in txn, if it was erased.
func readErasedMark(txn *badger.Txn, key string) (erasedMark, bool, error) {
	item, err := txn.Get(erasedKey(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return erasedMark{}, false, nil
	}
	if err != nil {
		return erasedMark{}, false, fmt.Errorf("read erasure marker of %q: %w", key, err)
	}
	var m erasedMark
	err = item.Value(func(v []byte) error {
		m, err = decodeErasedMark(v)
		return err
	})
	if err != nil {
		return erasedMark{}, false, fmt.Errorf("read erasure marker of %q: %w", key, err)
	}
	return m, true, nil
}

// dropErased reports, for an event received at received (Unix ms) about
// to start a new profile for key, whether key's erasure drops it: it was
// received before the erasure was asked for, or key is suppressed.
func (b *Batch) dropErased(key string, received int64) (bool, error) {
	m, ok, err := b.erasedMarkOf(key)
	if err != nil || !ok {
		return false, err
	}
	return m.suppress || received < m.at, nil
}

// Erasure returns the outcome of the erasure id kept in this store;
// ErrNotFound when it holds none.
func (s *Store) Erasure(id string) (Erasure, error) {
	var e Erasure
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(erasureKey(id))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("erasure %q: %w", id, ErrNotFound)
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return json.Unmarshal(v, &e) })
	})
	if err != nil {
		return Erasure{}, fmt.Errorf("read erasure %q: %w", id, err)
	}
	return e, nil
}

// loadErasures notes whether the store holds any erasure marker, so that
// a store without one reads none when a profile starts.
func (s *Store) loadErasures() error {
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixErased}})
		defer it.Close()
		it.Rewind()
		s.erasures.Store(it.Valid())
		return nil
	})
}

// Suppressed reports whether key was erased with suppression: its later
// events are dropped.
func (s *Store) Suppressed(key string) (bool, error) {
	if !s.erasures.Load() {
		return false, nil
	}
	var m erasedMark
	err := s.db.View(func(txn *badger.Txn) (err error) {
		m, _, err = readErasedMark(txn, key)
		return err
	})
	return m.suppress, err
}

// EachWrite calls fn with every key and value the store holds, in key
// order: for audits (that an erasure left nothing of a person) and tools.
func (s *Store) EachWrite(ctx context.Context, fn func(Write) error) error {
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			v, err := item.ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("read key %q: %w", item.Key(), err)
			}
			if err := fn(Write{Key: item.KeyCopy(nil), Value: v}); err != nil {
				return err
			}
		}
		return nil
	})
}

// ProfileKeyOf returns the profile key a store key (or changelog record
// key) belongs to: that of a profile, an alias, an order id counted or a
// wake-up; ok false for the partition's own keys (totals, products,
// offsets, erasures).
func ProfileKeyOf(k []byte) (key string, ok bool) {
	if len(k) == 0 {
		return "", false
	}
	switch k[0] {
	case prefixProfile, prefixAlias:
		return string(k[1:]), true
	case prefixWake:
		if len(k) > 9 {
			return string(k[9:]), true
		}
	case prefixOrder:
		n, size := binary.Uvarint(k[1:])
		if size > 0 && uint64(len(k)-1-size) >= n {
			return string(k[1+size : 1+size+int(n)]), true
		}
	}
	return "", false
}
