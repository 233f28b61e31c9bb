package state

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestHeldWrites: whatever the order of writes and compactions, the held
// writes end as the last write of each key, sorted by key; keys sharing
// their first 8 bytes included.
func TestHeldWrites(t *testing.T) {
	for _, tc := range []struct {
		name    string
		keys    int
		writes  int
		compact float64 // chance of a compaction after a write
	}{
		{"no compaction", 50, 2000, 0},
		{"compactions", 50, 2000, 0.01},
		{"many keys", 5000, 20000, 0.001},
		{"one key", 1, 100, 0.1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(tc.keys)))
			h := newHeldWrites(1 << 20)
			want := make(map[string]Write)
			for i := range tc.writes {
				k := fmt.Sprintf("p/prefix-%d", rng.IntN(tc.keys)) // the first 8 bytes are the same
				w := Write{Key: []byte(k), Value: fmt.Appendf(nil, "v%d", i)}
				if rng.IntN(10) == 0 {
					w = Write{Key: w.Key, Deleted: true}
				}
				h.put(w)
				want[k] = w
				if rng.Float64() < tc.compact {
					h.compact()
				}
			}
			h.dedup()
			if len(h.writes) != len(want) {
				t.Fatalf("%d writes held, want %d", len(h.writes), len(want))
			}
			for i, w := range h.writes {
				k := string(h.key(w))
				if i > 0 && string(h.key(h.writes[i-1])) >= k {
					t.Fatalf("write %d, key %s, not after %s", i, k, h.key(h.writes[i-1]))
				}
				if ww := want[k]; ww.Deleted != w.deleted || string(ww.Value) != string(h.value(w)) {
					t.Errorf("key %s: held %q (deleted %v), want %q (deleted %v)", k, h.value(w), w.deleted, ww.Value, ww.Deleted)
				}
			}
		})
	}
}
