package state

import (
	"bytes"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/tailorcdp/tailor/event"
)

// TestRestoreFromWrites: a store rebuilt from the writes of its batches
// (Batch.Writes, the changelog) holds the same keys and values as the
// store, deletions included: profiles, order ids, links and the profiles
// and order ids they move, RFM histograms, the offset.
func TestRestoreFromWrites(t *testing.T) {
	o := testOptions()
	o.Changelog = true
	s := openWith(t, t.TempDir(), o)
	defer s.Close()
	p := event.NewParser(event.DefaultLimits())
	var log []Write
	commit := func(b *Batch, next int64) {
		t.Helper()
		if err := b.CommitWith(next, func() error {
			log = append(log, b.Writes()...)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		b := s.Begin()
		for j := range 20 {
			ev := parse(t, p, fmt.Sprintf(`{"type": "track", "userId": "u%d", "event": "Order Completed", "messageId": "m%d-%d", "properties": {"order_id": "o%d-%d", "total": %d}}`, j, i, j, i, j, j+1))
			if _, err := b.Apply(&ev); err != nil {
				t.Fatal(err)
			}
		}
		commit(b, int64(100*(i+1)))
	}
	b := s.Begin()
	if _, err := b.Link("u1", "u2"); err != nil {
		t.Fatal(err)
	}
	commit(b, 301)

	want := dump(t, s)
	// A restore writes the state in key order straight into tables while
	// it fits in RestoreMemory, through the write path when it does not,
	// or outgrows the budget part way.
	for _, tc := range []struct {
		name   string
		budget int64
	}{
		{"sorted tables", 256 << 20},
		{"write path", 0},
		{"outgrows its budget", 2 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ro := o
			ro.RestoreMemory = tc.budget
			dir := t.TempDir()
			r, err := NewRestorer(dir, ro)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range log {
				if err := r.Put(w); err != nil {
					t.Fatal(err)
				}
			}
			if err := r.Finish(); err != nil {
				t.Fatal(err)
			}
			restored := openWith(t, dir, o)
			defer restored.Close()
			got := dump(t, restored)
			if len(got) != len(want) {
				t.Errorf("restored store has %d keys, want %d", len(got), len(want))
			}
			for k, v := range want {
				if g, ok := got[k]; !ok || !bytes.Equal(g, v) {
					t.Errorf("key %q: restored %x (present %v), want %x", k, g, ok, v)
				}
			}
			// The restored store takes new batches over what it holds.
			b := restored.Begin()
			ev := parse(t, p, `{"type": "track", "userId": "u3", "event": "Order Completed", "messageId": "after", "properties": {"order_id": "after", "total": 5}}`)
			if _, err := b.Apply(&ev); err != nil {
				t.Fatal(err)
			}
			if err := b.CommitWith(400, func() error { return nil }); err != nil {
				t.Fatal(err)
			}
			pr, err := restored.Profile("u3")
			if err != nil || pr == nil || pr.Orders != 4 {
				t.Errorf("after a batch on the restored store, u3: %+v %v, want 4 orders", pr, err)
			}
		})
	}
	if _, ok := want[string(keyChangelogBase)]; !ok {
		t.Error("the store's first batch wrote no changelog base")
	}
	if _, ok := want[string(profileKey("u1"))]; ok {
		t.Error("the linked profile is still stored: the test does not test deletions")
	}
}

func dump(t *testing.T, s *Store) map[string][]byte {
	t.Helper()
	out := make(map[string][]byte)
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out[string(it.Item().Key())] = v
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRestorerMemory: a restore over its memory budget compacts what it
// holds while the last writes fit in half of it (a changelog not yet
// compacted by Kafka rewrites the same keys), and goes through the write
// path when the state itself outgrows it; either way the store holds the
// last write of each key.
func TestRestorerMemory(t *testing.T) {
	for _, tc := range []struct {
		name       string
		keys       int
		sorted     bool // still held in memory at the end
		budget     int64
		rewrites   int
		valueBytes int
	}{
		{"rewrites compacted", 10, true, 64 << 10, 1000, 100},
		{"written in parallel parts", 5000, true, 16 << 20, 2, 50},
		{"state outgrows the budget", 2000, false, 64 << 10, 3, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions()
			o.RestoreMemory = tc.budget
			dir := t.TempDir()
			r, err := NewRestorer(dir, o)
			if err != nil {
				t.Fatal(err)
			}
			r.streamKeys = 100 // several parts, several streams each
			value := func(k, n int) []byte {
				return bytes.Repeat([]byte{byte('a' + (k+n)%26)}, tc.valueBytes)
			}
			for n := range tc.rewrites {
				for k := range tc.keys {
					if err := r.Put(Write{Key: fmt.Appendf(nil, "t/k%05d", k), Value: value(k, n)}); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := r.Put(Write{Key: []byte("t/k00001"), Deleted: true}); err != nil {
				t.Fatal(err)
			}
			if sorted := r.held != nil; sorted != tc.sorted {
				t.Errorf("held in memory at the end: %v, want %v", sorted, tc.sorted)
			}
			if r.held != nil && r.held.size() > tc.budget {
				t.Errorf("holds %d bytes, over the budget of %d", r.held.size(), tc.budget)
			}
			if err := r.Finish(); err != nil {
				t.Fatal(err)
			}
			s := openWith(t, dir, o)
			defer s.Close()
			got := dump(t, s)
			maps.DeleteFunc(got, func(k string, _ []byte) bool { return !strings.HasPrefix(k, "t/") }) // the store's own
			if len(got) != tc.keys-1 {
				t.Errorf("restored %d keys, want %d", len(got), tc.keys-1)
			}
			for k := range tc.keys {
				v, ok := got[fmt.Sprintf("t/k%05d", k)]
				if want := value(k, tc.rewrites-1); k != 1 && (!ok || !bytes.Equal(v, want)) {
					t.Errorf("key %d: %q (present %v), want %q", k, v, ok, want)
				}
			}
		})
	}
}
