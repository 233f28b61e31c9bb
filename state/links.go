package state

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"
	"github.com/tailorcdp/tailor/event"
)

// Identity: an anonymous visitor who identifies (an event carrying both
// ids), or an alias call, links one profile key to another. The linked
// key's profile moves into the other, which may live in another
// partition: its partition takes it out of its store (Batch.Link) and the
// caller sends it on, through Kafka, to the partition of the profile it
// joins (Batch.Merge). The link is kept, so the events that still come
// for the old key go on to the new one (Batch.Resolve) and reads of it
// find the profile it joined (Store.Alias).

// MergedError reports that the profile of Key was merged into the profile
// of Into, which this store does not hold.
type MergedError struct {
	Key, Into string
}

func (e *MergedError) Error() string {
	return fmt.Sprintf("profile %q was merged into profile %q", e.Key, e.Into)
}

// prefixAlias keys a linked profile key: prefixAlias + key -> the key its
// events now go to.
const prefixAlias = 'a'

func aliasKey(key string) []byte { return append([]byte{prefixAlias}, key...) }

// Link is a request, made by an applied event, that the profile From
// move into the profile To.
type Link struct {
	From, To string
}

// Links returns the links the batch's events asked for, in order: an
// event with a userId whose anonymousId its profile had not seen yet, or
// an alias call.
func (b *Batch) Links() []Link { return b.links }

// linkOf records the link ev asks for, if any, before it is applied to p.
func (b *Batch) linkOf(ev *event.Event, p *Profile) {
	from := ""
	switch {
	case ev.Type == event.Alias:
		from = ev.PreviousID
	case ev.UserID != "" && ev.AnonymousID != "" && !slices.Contains(p.AnonymousIDs, ev.AnonymousID):
		from = ev.AnonymousID
	}
	if from != "" && from != p.Key {
		b.links = append(b.links, Link{From: from, To: p.Key})
	}
}

// Alias returns the key whose profile key's events go to, when key's
// profile was merged into another.
func (s *Store) Alias(key string) (string, bool, error) {
	var to string
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		to, err = getAlias(txn, key)
		return err
	})
	return to, to != "", err
}

func getAlias(txn *badger.Txn, key string) (string, error) {
	item, err := txn.Get(aliasKey(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read alias of %q: %w", key, err)
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return "", fmt.Errorf("read alias of %q: %w", key, err)
	}
	return string(v), nil
}

// Resolve returns the key whose profile the events of key go to: key
// itself, or the key its profile was merged into. Keys whose profile is
// in the batch or the cache are not looked up (a linked key has none).
func (b *Batch) Resolve(key string) (string, error) {
	if to, ok := b.aliases[key]; ok {
		return to, nil
	}
	if _, ok := b.profiles[key]; ok {
		return key, nil
	}
	if b.s.cache.Contains(key) {
		return key, nil
	}
	to, err := getAlias(b.txn, key)
	if err != nil || to == "" {
		return key, err
	}
	return to, nil
}

// Link records that the events of from now go to the profile to, and
// takes from's profile, if the store holds one, out of it: it is returned
// encoded, for the caller to send to to's partition (Merge), and its
// segment memberships end (exited changes, with no messageId). A link
// already recorded takes nothing out; a newer link of the same key wins.
func (b *Batch) Link(from, to string) (moved []byte, err error) {
	if from == to || from == "" || to == "" {
		return nil, nil
	}
	cur, err := b.Resolve(from)
	if err != nil {
		return nil, err
	}
	if cur != from {
		b.setAlias(from, to) // linked before: nothing left to move
		return nil, nil
	}
	p, ok := b.profiles[from]
	if !ok {
		if p, err = b.stored(from); err != nil {
			return nil, err
		}
		if p != nil {
			b.noteInitial(from, p)
		}
	}
	if p == nil && b.s.erasures.Load() {
		// A suppressed key is linked to nothing: its events stay dropped.
		if m, erased, err := b.erasedMarkOf(from); err != nil || erased && m.suppress {
			if err == nil {
				err = fmt.Errorf("link %q to %q: %w", from, to, ErrErased)
			}
			return nil, err
		}
	}
	b.setAlias(from, to)
	if p == nil {
		return nil, nil
	}
	b.remove(from, p, "")
	if p.movedOrders, err = b.takeOrders(from); err != nil {
		return nil, err
	}
	moved = p.AppendEncode(nil)
	p.Segments, p.memberOf, p.movedOrders = nil, nil, nil
	return moved, nil
}

// takeOrders returns the order ids counted for the profile of key, and
// forgets them: they move with the profile, so that the profile it joins
// counts each order once (Merge).
func (b *Batch) takeOrders(key string) ([]movedOrder, error) {
	prefix := pairKey(prefixOrder, key, "")
	var moved []movedOrder
	kept := b.orders[:0] // counted in this batch, not written yet
	for _, o := range b.orders {
		if bytes.HasPrefix(o.key, prefix) {
			moved = append(moved, movedOrder{id: string(o.key[len(prefix):]), amount: o.amount, at: o.at, known: o.known})
			continue
		}
		kept = append(kept, o)
	}
	b.orders = kept
	var stored [][]byte
	it := b.txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		k := item.KeyCopy(nil)
		o := movedOrder{id: string(k[len(prefix):])}
		err := item.Value(func(v []byte) error {
			o.amount, o.at, o.known = decodeOrderValue(v)
			return nil
		})
		if err != nil {
			it.Close()
			return nil, fmt.Errorf("read order ids of %q: %w", key, err)
		}
		moved, stored = append(moved, o), append(stored, k)
	}
	it.Close()
	for _, k := range stored {
		if err := b.del(k); err != nil {
			return nil, fmt.Errorf("move order ids of %q: %w", key, err)
		}
	}
	return moved, nil
}

func (b *Batch) setAlias(from, to string) {
	if b.aliases == nil {
		b.aliases = make(map[string]string)
	}
	b.aliases[from] = to
}

// Merge adds o, a profile taken out by Link (decoded), to the profile of
// key, and re-evaluates every segment of it.
//
// A profile merged into an erased key is dropped when all its events came
// before the erasure, or the key is suppressed (erasure.go): the error
// wraps ErrErased.
func (b *Batch) Merge(key string, o *Profile) error {
	_, had := b.profiles[key]
	p, err := b.Profile(key)
	if err != nil {
		return err
	}
	if !had && b.s.erasures.Load() && sumCounts(p) == 0 {
		m, erased, err := b.erasedMarkOf(key)
		if err != nil {
			return err
		}
		if erased && (m.suppress || o.LastSeen < m.at) {
			delete(b.profiles, key)
			return fmt.Errorf("merge into %q: %w", key, ErrErased)
		}
	}
	p.mergeFrom(o, b.m, b.s.opts.Dedup, b.now().UnixMilli())
	// The order ids counted for o are key's now; an order both profiles
	// counted (an SDK and a server reporting the same order under either
	// id) counts once. One counted before amounts were kept counts twice
	// as before, its amount unknown.
	for _, m := range o.movedOrders {
		fresh, err := b.firstOrder(key, m.id, m.amount, m.at, m.known)
		if err != nil {
			return err
		}
		if !fresh && m.known {
			p.uncountOrder(m.amount, m.at)
		}
	}
	in := &b.inputs
	*in = Inputs{Whole: true}
	for _, c := range b.evaluate(p, nil, in) {
		b.changes = append(b.changes, KeyedChange{Key: key, Change: c})
	}
	p.retimed = true
	return nil
}

// commitLinks writes the batch's aliases and deletes the profiles Link
// took out, with their wake-ups.
func (b *Batch) commitLinks() error {
	for from, to := range b.aliases {
		if err := b.set(aliasKey(from), []byte(to)); err != nil {
			return fmt.Errorf("write alias %q -> %q: %w", from, to, err)
		}
	}
	for key, p := range b.removed {
		if err := b.del(profileKey(key)); err != nil {
			return fmt.Errorf("delete merged profile %q: %w", key, err)
		}
		if p.WakeAt != 0 {
			if err := b.del(wakeKey(p.WakeAt, key)); err != nil {
				return fmt.Errorf("unschedule merged profile %q: %w", key, err)
			}
		}
	}
	return nil
}
