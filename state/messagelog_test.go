package state

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestMessageLogMatchesList runs a messageLog and the plain list it
// replaces (oldest first, scanned, a prefix cut) side by side through
// random checks, adds and expiries, with hashes drawn from a small range
// so that they collide in the index and probe runs wrap around its end,
// and compares what they remember after every step, through clones,
// growth past the index threshold, and encoding.
func TestMessageLogMatchesList(t *testing.T) {
	for _, tc := range []struct {
		name    string
		limit   int    // most ids kept; 0: no bound
		horizon int64  // ms
		hashes  uint64 // hashes drawn from [0, hashes)
	}{
		{"small, scanned", 20, 2_000, 1 << 40},
		{"bounded, colliding", 100, 2_000, 300},
		{"bounded at 1000", 1000, 1 << 40, 1 << 62},
		{"unbounded, colliding", 0, 2_000, 600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(tc.limit), tc.hashes))
			var l messageLog
			var want []seenMessage
			at := int64(1_000_000)
			for step := range 20_000 {
				at += rng.Int64N(50) - 10 // receive times mostly rising, not always
				h := rng.Uint64N(tc.hashes)
				wantSeen := slices.ContainsFunc(want, func(m seenMessage) bool { return m.hash == h })
				if got := l.contains(h); got != wantSeen {
					t.Fatalf("step %d: contains(%d) = %v, want %v", step, h, got, wantSeen)
				}
				if !wantSeen {
					cutoff := at - tc.horizon
					keep := -1
					if tc.limit > 0 {
						keep = tc.limit - 1
					}
					l.forget(cutoff, keep)
					cut := 0
					for cut < len(want) && want[cut].receivedAt < cutoff {
						cut++
					}
					if keep >= 0 && len(want)-cut > keep {
						cut = len(want) - keep
					}
					want = append(want[cut:], seenMessage{hash: h, receivedAt: at})
					l.add(seenMessage{hash: h, receivedAt: at}, tc.limit)
				}
				switch step % 997 {
				case 0:
					c := l.clone()
					c.add(seenMessage{hash: tc.hashes, receivedAt: at}, 0) // a hash never drawn
					if l.contains(tc.hashes) {
						t.Fatal("adding to a clone changed its original")
					}
				case 1:
					var p Profile
					p.recent = l
					q, err := DecodeProfile(p.AppendEncode(nil))
					if err != nil {
						t.Fatal(err)
					}
					l = q.recent
				}
				if got := l.list(); !slices.Equal(got, want) {
					t.Fatalf("step %d: log holds %d ids, want %d:\n got %v\nwant %v", step, len(got), len(want), got, want)
				}
				for _, m := range want {
					if !l.contains(m.hash) {
						t.Fatalf("step %d: remembered hash %d not found", step, m.hash)
					}
				}
			}
			if tc.limit > 0 && len(l.ring) > tc.limit {
				t.Errorf("ring of %d slots for at most %d ids", len(l.ring), tc.limit)
			}
		})
	}
}
