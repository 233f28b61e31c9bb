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

// TestRetention: a profile with no event for the retention is deleted by
// the wake at its deadline, with everything the store keeps for it, and
// leaves its segments with exits whose reason is retention; one with a
// later event is kept; an event after the deletion starts a new profile.
func TestRetention(t *testing.T) {
	const day = 24 * time.Hour
	const retention = 400 * day
	_, segs := compileModel(t, nil, []SegmentConfig{
		{"buyer", `rfm.frequency > 0`},
		{"french", `traits.country == "FR"`},
	}, 0)
	h := &batches{t: t, p: event.NewParser(event.DefaultLimits()), clock: t0}
	o := testOptions()
	o.Segments, o.Retention, o.Changelog = segs, retention, true
	o.Now = func() time.Time { return h.clock }
	s := openWith(t, t.TempDir(), o)
	defer s.Close()
	h.s = s

	// At t0: the anonymous a1 orders, then is linked into u1 (same
	// store); u1 and u2 identify as French.
	h.run(func(b *Batch) {
		h.apply(b, `"anonymousId": "a1"`, `"type": "track", "event": "Order Completed", "properties": {"order_id": "o1", "total": 10}`)
		// far's alias is in another partition's store.
		h.apply(b, `"userId": "u1", "anonymousId": "far"`, `"type": "identify", "traits": {"country": "FR"}`)
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
	// u2 has an event 300 days on: its deadline moves to 700 days.
	h.clock = t0.Add(300 * day)
	h.run(func(b *Batch) { h.apply(b, `"userId": "u2"`, `"type": "page", "name": "Home"`) })
	if got := s.SegmentSizes(); got["buyer"] != 1 || got["french"] != 2 || countProfiles(s.Population()) != 1 {
		t.Fatalf("before retention: sizes %v, population %v", got, s.Population())
	}
	if at, ok := s.NextWake(); !ok || !at.Equal(t0.Add(retention)) {
		t.Fatalf("next wake %v %v, want u1's deadline %v", at, ok, t0.Add(retention))
	}

	// One millisecond before the deadline nothing goes; at it, u1 does.
	for _, step := range []struct {
		at                time.Duration
		expired           int
		changes           string
		deleted, nextWake time.Duration
	}{
		{at: retention - time.Millisecond, changes: "", nextWake: retention},
		{at: retention, expired: 1, changes: "u1 -buyer retention, u1 -french retention", nextWake: 700 * day},
	} {
		h.clock = t0.Add(step.at)
		// A wake whose outputs were written but whose batch a crash lost
		// is redone: the same changes again (stream's redoWake).
		var b *Batch
		for try := range 2 {
			b = s.Begin()
			if _, err := b.Wake(h.clock, 100); err != nil {
				t.Fatal(err)
			}
			var changes []string
			for _, c := range b.Changes() {
				if c.Entered || !c.At.Equal(h.clock) || c.MessageID != "" {
					t.Errorf("at %v: change %+v: want an exit at the wake with no messageId", step.at, c)
				}
				changes = append(changes, c.Key+" -"+c.Segment+" "+c.Reason)
			}
			if got := strings.Join(changes, ", "); got != step.changes || b.Expired() != step.expired {
				t.Errorf("at %v, try %d: changes %q, %d expired; want %q, %d", step.at, try, got, b.Expired(), step.changes, step.expired)
			}
			// a1's alias is here, and goes; far's is for its partition.
			if want := []Link{{From: "far", To: "u1"}}[:step.expired]; !slices.Equal(b.Unlinks(), want) {
				t.Errorf("at %v: unlinks %v, want %v", step.at, b.Unlinks(), want)
			}
			if try == 0 {
				b.Discard()
			}
		}
		h.offset++
		if err := b.Commit(h.offset); err != nil {
			t.Fatal(err)
		}
		if step.expired > 0 {
			var tombstones []string
			for _, w := range b.Writes() {
				if w.Deleted {
					tombstones = append(tombstones, string(w.Key[:1]))
				}
			}
			// The profile, the alias a1 -> u1, the order id and the
			// wake-up, each a deletion for the changelog
			// (the profile's at commit).
			for _, prefix := range []string{"p", "a", "o", "w"} {
				if !slices.Contains(tombstones, prefix) {
					t.Errorf("at %v: no deletion of a %q key in the changelog writes %q", step.at, prefix, tombstones)
				}
			}
		}
		if at, ok := s.NextWake(); !ok || !at.Equal(t0.Add(step.nextWake)) {
			t.Errorf("at %v: next wake %v, want %v", step.at, at, t0.Add(step.nextWake))
		}
	}

	for _, c := range []struct {
		key  string
		kept bool
	}{{"u1", false}, {"u2", true}} {
		_, err := s.Profile(c.key)
		if kept := err == nil; kept != c.kept || (err != nil && !errors.Is(err, ErrNotFound)) {
			t.Errorf("profile %s: %v, want kept %v", c.key, err, c.kept)
		}
	}
	if to, ok, err := s.Alias("a1"); ok || err != nil {
		t.Errorf("alias of a1 after retention: %q %v %v", to, ok, err)
	}
	if got := s.SegmentSizes(); got["buyer"] != 0 || got["french"] != 1 || countProfiles(s.Population()) != 0 {
		t.Errorf("after retention: sizes %v, population %v", got, s.Population())
	}
	// No key of the store names u1 or a1.
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if k := it.Item().Key(); bytes.Contains(k, []byte("u1")) || bytes.Contains(k, []byte("a1")) {
				t.Errorf("key %q left after retention", k)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// A later event for u1 starts a new profile.
	h.clock = t0.Add(401 * day)
	h.run(func(b *Batch) { h.apply(b, `"userId": "u1"`, `"type": "page", "name": "Home"`) })
	p, err := s.Profile("u1")
	if err != nil {
		t.Fatal(err)
	}
	if p.FirstSeen != h.clock.UnixMilli() || p.Orders != 0 || len(p.Traits) != 0 || len(p.Segments) != 0 {
		t.Errorf("u1 after retention: first seen %v, %d orders, traits %v, segments %v; want a new profile",
			time.UnixMilli(p.FirstSeen).UTC(), p.Orders, p.Traits, p.Segments)
	}
}

// TestRetentionBackfill: profiles stored before retention was turned on,
// which no later event touches, are scheduled by a backfill walk, and
// expire; turning it off again walks nothing.
func TestRetentionBackfill(t *testing.T) {
	const day = 24 * time.Hour
	_, segs := compileModel(t, nil, []SegmentConfig{{"french", `traits.country == "FR"`}}, 0)
	dir := t.TempDir()
	h := &batches{t: t, p: event.NewParser(event.DefaultLimits()), clock: t0}
	open := func(retention time.Duration) {
		o := testOptions()
		o.Segments, o.Retention = segs, retention
		o.Now = func() time.Time { return h.clock }
		h.s = openWith(t, dir, o)
	}
	open(0)
	h.run(func(b *Batch) { h.apply(b, `"userId": "u1"`, `"type": "identify", "traits": {"country": "FR"}`) })
	if _, ok := h.s.NextWake(); ok {
		t.Fatal("a wake-up scheduled with no retention and no timed segment")
	}
	h.s.Close()

	h.clock = t0.Add(500 * day)
	for _, step := range []struct {
		retention time.Duration
		walk      bool
	}{{400 * day, true}, {400 * day, false}, {0, false}} {
		open(step.retention)
		_, pending, err := h.s.BackfillPending()
		if err != nil || pending != step.walk {
			t.Fatalf("retention %v: backfill pending %v, %v; want %v", step.retention, pending, err, step.walk)
		}
		if step.walk {
			b := h.s.Begin()
			if n, done, err := b.Backfill(100); n != 1 || !done || err != nil {
				t.Fatalf("backfill: %d profiles, done %v, %v", n, done, err)
			}
			h.offset++
			if err := b.Commit(h.offset); err != nil {
				t.Fatal(err)
			}
			if at, ok := h.s.NextWake(); !ok || !at.Equal(t0.Add(step.retention)) {
				t.Fatalf("after the backfill: next wake %v %v, want %v", at, ok, t0.Add(step.retention))
			}
			b = h.s.Begin()
			if _, err := b.Wake(h.clock, 100); err != nil || b.Expired() != 1 {
				t.Fatalf("wake: %d expired, %v; want 1", b.Expired(), err)
			}
			h.offset++
			if err := b.Commit(h.offset); err != nil {
				t.Fatal(err)
			}
			if _, err := h.s.Profile("u1"); !errors.Is(err, ErrNotFound) {
				t.Errorf("u1 after the wake: %v, want not found", err)
			}
			if got := h.s.SegmentSizes(); got["french"] != 0 {
				t.Errorf("sizes %v, want french 0", got)
			}
		}
		h.s.Close()
	}
}

// TestUnlink: the partition holding an alias of a profile deleted for
// retention deletes it when told, and only an alias to that profile.
func TestUnlink(t *testing.T) {
	for _, tc := range []struct {
		name       string
		alias      string // far's alias before; "" none
		unlinkFrom string
		want       string // far's alias after
	}{
		{"to the deleted profile", "u1", "u1", ""},
		{"to another profile", "u2", "u1", "u2"},
		{"none", "", "u1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openWith(t, t.TempDir(), testOptions())
			defer s.Close()
			h := &batches{t: t, s: s, p: event.NewParser(event.DefaultLimits()), clock: t0}
			if tc.alias != "" {
				h.run(func(b *Batch) {
					if _, err := b.Link("far", tc.alias); err != nil {
						t.Fatal(err)
					}
				})
			}
			for range 2 { // applied again, it changes nothing
				h.run(func(b *Batch) {
					if err := b.Unlink("far", tc.unlinkFrom); err != nil {
						t.Fatal(err)
					}
				})
				if to, _, err := s.Alias("far"); to != tc.want || err != nil {
					t.Errorf("alias of far: %q, %v; want %q", to, err, tc.want)
				}
			}
		})
	}
}
