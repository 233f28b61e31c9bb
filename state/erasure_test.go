package state

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/tailorcdp/tailor/event"
)

// erasureStore is a store holding u1 (French, one order, with a1 merged
// into it here and far merged into it from another partition's key) and
// u2 (French).
func erasureStore(t *testing.T) (*batches, *Store) {
	t.Helper()
	_, segs := compileModel(t, nil, []SegmentConfig{
		{"buyer", `rfm.frequency > 0`},
		{"french", `traits.country == "FR"`},
	}, 0)
	h := &batches{t: t, p: event.NewParser(event.DefaultLimits()), clock: t0}
	o := testOptions()
	o.Segments, o.Changelog = segs, true
	o.Now = func() time.Time { return h.clock }
	s := openWith(t, t.TempDir(), o)
	t.Cleanup(func() { s.Close() })
	h.s = s
	h.run(func(b *Batch) {
		h.apply(b, `"anonymousId": "a1"`, `"type": "track", "event": "Order Completed", "properties": {"order_id": "o1", "total": 10}`)
		h.apply(b, `"userId": "u1", "anonymousId": "far"`, `"type": "identify", "traits": {"country": "FR", "email": "u1@example.com"}`)
		h.apply(b, `"userId": "u2"`, `"type": "identify", "traits": {"country": "FR"}`)
	})
	var moved []byte
	h.run(func(b *Batch) {
		var err error
		if moved, err = b.Link("a1", "u1"); err != nil || moved == nil {
			t.Fatalf("link: %v, moved %d bytes", err, len(moved))
		}
	})
	h.merge("u1", moved)
	return h, s
}

// erase commits a batch erasing key, and returns its outcome and the
// keys of the changelog writes it deleted.
func (h *batches) erase(key string, req ErasureRequest) (*Erasure, []string, []string) {
	h.t.Helper()
	b := h.s.Begin()
	out, err := b.Erase(key, req)
	if err != nil {
		h.t.Fatalf("erase %q: %v", key, err)
	}
	if !b.Full() {
		h.t.Errorf("erase %q: the batch takes more records", key)
	}
	if out != nil {
		if err := b.KeepErasure(out); err != nil {
			h.t.Fatal(err)
		}
	}
	var changes []string
	for _, c := range b.Changes() {
		changes = append(changes, c.Key+" -"+c.Segment+" "+c.Reason)
	}
	h.offset++
	if err := b.Commit(h.offset); err != nil {
		h.t.Fatal(err)
	}
	var deleted []string
	for _, w := range b.Writes() {
		if w.Deleted {
			deleted = append(deleted, string(w.Key))
		}
	}
	return out, changes, deleted
}

// TestErase: erasing a profile takes out the profile and every key the
// store keeps for it (aliases here, order ids, wake-up), with tombstones
// for the changelog, exits whose reason is erased, sizes and the RFM
// population without it, and names the aliases held elsewhere; its
// outcome is kept under its id.
func TestErase(t *testing.T) {
	h, s := erasureStore(t)
	if got := s.SegmentSizes(); got["buyer"] != 1 || got["french"] != 2 || countProfiles(s.Population()) != 1 {
		t.Fatalf("before: sizes %v, population %v", got, s.Population())
	}
	h.clock = t0.Add(time.Hour)
	out, changes, deleted := h.erase("u1", ErasureRequest{ID: "0-7", RequestedAt: h.clock.UnixMilli()})
	want := Erasure{ID: "0-7", State: ErasureDone, RequestedAt: h.clock.UnixMilli(), AppliedAt: h.clock.UnixMilli(), Found: true,
		Removed: ErasureCounts{Profiles: 1, LinkedIDs: 2, Orders: 1, Segments: 2}, Unlinks: []string{"far"}}
	if out == nil || out.Removed != want.Removed || !slices.Equal(out.Unlinks, want.Unlinks) || out.Found != want.Found || out.State != want.State {
		t.Errorf("outcome %+v, want %+v", out, want)
	}
	if got := strings.Join(changes, ", "); got != "u1 -buyer erased, u1 -french erased" {
		t.Errorf("changes %q", got)
	}
	for _, k := range []string{"pu1", "aa1"} {
		if !slices.Contains(deleted, k) {
			t.Errorf("no changelog tombstone of %q in %q", k, deleted)
		}
	}
	if got := s.SegmentSizes(); got["buyer"] != 0 || got["french"] != 1 || countProfiles(s.Population()) != 0 {
		t.Errorf("after: sizes %v, population %v", got, s.Population())
	}
	if _, err := s.Profile("u1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("u1 after erasure: %v", err)
	}
	// No key or value of the store names u1, a1, or u1's email.
	scanFor(t, s, "u1", "a1", "example.com")
	kept, err := s.Erasure("0-7")
	if err != nil || kept.Removed != want.Removed || kept.Unlinks != nil || kept.Into != "" {
		t.Errorf("kept outcome %+v, %v", kept, err)
	}
	if _, err := s.Erasure("0-8"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown erasure: %v", err)
	}

	// Erased again: nothing found, nothing changes.
	again, changes, _ := h.erase("u1", ErasureRequest{ID: "0-9", RequestedAt: h.clock.UnixMilli()})
	if again.Found || again.Removed != (ErasureCounts{}) || len(changes) != 0 {
		t.Errorf("erased again: %+v, changes %v", again, changes)
	}
}

// scanFor fails t when any key or value of s holds one of words.
func scanFor(t *testing.T, s *Store, words ...string) {
	t.Helper()
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			for _, w := range words {
				if bytes.Contains(k, []byte(w)) || bytes.Contains(v, []byte(w)) {
					t.Errorf("key %q (value %q) holds %q", k, v, w)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestErasedKeyEvents: after an erasure, an event of the key received
// before it was asked for (in flight) is dropped, one received after
// starts a new profile; under suppression every later one is dropped, a
// link of the key is refused, and a merge into it is dropped. A merge of
// a profile whose events all came before the erasure is dropped too.
func TestErasedKeyEvents(t *testing.T) {
	for _, tc := range []struct {
		name     string
		suppress bool
	}{{"without suppression", false}, {"suppressed", true}} {
		t.Run(tc.name, func(t *testing.T) {
			h, s := erasureStore(t)
			erasedAt := t0.Add(time.Hour)
			h.clock = erasedAt
			h.erase("u2", ErasureRequest{ID: "0-1", RequestedAt: erasedAt.UnixMilli(), Suppress: tc.suppress})
			for _, ev := range []struct {
				received time.Time
				dropped  bool
			}{
				{erasedAt.Add(-time.Second), true},
				{erasedAt.Add(time.Second), tc.suppress},
			} {
				b := s.Begin()
				e, err := h.p.Parse([]byte(`{"userId": "u2", "type": "page", "timestamp": "`+ev.received.Format(time.RFC3339)+`"}`), 0, ev.received)
				if err != nil {
					t.Fatal(err)
				}
				_, err = b.Apply(&e)
				if dropped := errors.Is(err, ErrErased); dropped != ev.dropped || (err != nil && !dropped) {
					t.Errorf("event received %v after the erasure: %v, want dropped %v", ev.received.Sub(erasedAt), err, ev.dropped)
				}
				h.offset++
				if err := b.Commit(h.offset); err != nil {
					t.Fatal(err)
				}
				if _, err := s.Profile("u2"); errors.Is(err, ErrNotFound) != ev.dropped {
					t.Errorf("profile of u2 after an event received %v after: %v", ev.received.Sub(erasedAt), err)
				}
			}
			if !tc.suppress {
				return
			}
			if ok, err := s.Suppressed("u2"); !ok || err != nil {
				t.Errorf("suppressed: %v %v", ok, err)
			}
			if ok, _ := s.Suppressed("u1"); ok {
				t.Error("u1 suppressed")
			}
			b := s.Begin()
			if _, err := b.Link("u2", "u9"); !errors.Is(err, ErrErased) {
				t.Errorf("link of a suppressed key: %v", err)
			}
			b.Discard()
			if to, ok, _ := s.Alias("u2"); ok {
				t.Errorf("suppressed key linked to %q", to)
			}
		})
	}

	// A merge of a profile whose events came before the erasure.
	h, s := erasureStore(t)
	var moved []byte
	h.run(func(b *Batch) {
		h.apply(b, `"anonymousId": "a7"`, `"type": "page", "name": "Home"`)
	})
	h.run(func(b *Batch) { moved, _ = b.Link("a7", "u2") })
	h.clock = t0.Add(time.Hour)
	h.erase("u2", ErasureRequest{ID: "0-2", RequestedAt: h.clock.UnixMilli()})
	p, err := DecodeProfile(moved)
	if err != nil {
		t.Fatal(err)
	}
	b := s.Begin()
	if err := b.Merge("u2", p); !errors.Is(err, ErrErased) {
		t.Errorf("merge of a profile from before the erasure: %v", err)
	}
	b.Discard()
}

// TestEraseAlias: erasing a key merged into another takes its alias out
// and says where the erasure goes on; a follow-up (LinkOf) takes out only
// an alias to the erased profile.
func TestEraseAlias(t *testing.T) {
	h, s := erasureStore(t)
	out, _, deleted := h.erase("a1", ErasureRequest{ID: "0-3", RequestedAt: t0.UnixMilli()})
	if out.State != ErasureForwarded || out.Into != "u1" || out.Found || out.Removed.LinkedIDs != 1 {
		t.Errorf("outcome %+v", out)
	}
	if !slices.Contains(deleted, "aa1") {
		t.Errorf("tombstones %q", deleted)
	}
	if _, ok, _ := s.Alias("a1"); ok {
		t.Error("alias a1 kept")
	}
	if _, err := s.Profile("u1"); err != nil {
		t.Errorf("u1: %v: the profile goes where the erasure goes on", err)
	}

	h.run(func(b *Batch) {
		if _, err := b.Link("x", "u2"); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Link("y", "u1"); err != nil {
			t.Fatal(err)
		}
	})
	for _, tc := range []struct{ key, linkOf, want string }{{"x", "u1", "u2"}, {"y", "u1", ""}} {
		if out, _, _ := h.erase(tc.key, ErasureRequest{RequestedAt: t0.UnixMilli(), LinkOf: tc.linkOf}); out != nil {
			t.Errorf("follow-up of %q: outcome %+v", tc.key, out)
		}
		if to, _, _ := s.Alias(tc.key); to != tc.want {
			t.Errorf("alias of %q after a follow-up of %q: %q, want %q", tc.key, tc.linkOf, to, tc.want)
		}
	}
}

// TestProfileKeyOf: each store key that belongs to a profile names it.
func TestProfileKeyOf(t *testing.T) {
	for _, tc := range []struct {
		k    []byte
		want string
		ok   bool
	}{
		{profileKey("u1"), "u1", true},
		{aliasKey("a1"), "a1", true},
		{pairKey(prefixOrder, "u12", "o1"), "u12", true},
		{wakeKey(1234, "u1"), "u1", true},
		{erasedKey("u1"), "", false},
		{keyNextOffset, "", false},
		{[]byte{prefixOrder, 200}, "", false},
		{nil, "", false},
	} {
		if got, ok := ProfileKeyOf(tc.k); got != tc.want || ok != tc.ok {
			t.Errorf("ProfileKeyOf(%q) = %q, %v; want %q, %v", tc.k, got, ok, tc.want, tc.ok)
		}
	}
}
