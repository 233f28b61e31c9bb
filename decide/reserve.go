package decide

import (
	"slices"
	"sync"

	"github.com/cespare/xxhash/v2"

	"github.com/tailorcdp/tailor/state"
)

// reservations make frequency caps hold under concurrent decide calls:
// a decision for a capped offer counts against the cap from the moment it
// is answered until its impression has been applied to the profile (or
// the reservation expires, when the page never showed it). Without them,
// parallel calls would all see the same applied count and all answer the
// offer.
type reservations struct {
	shards [64]reservationShard
}

type reservationShard struct {
	mu      sync.Mutex
	byKey   map[string][]reservation
	inserts int
}

type reservation struct {
	offer   string
	hash    uint64 // of the decision id
	expires int64  // Unix ms
}

func (r *reservations) init() {
	for i := range r.shards {
		r.shards[i].byKey = make(map[string][]reservation)
	}
}

func (r *reservations) shard(key string) *reservationShard {
	return &r.shards[xxhash.Sum64String(key)%uint64(len(r.shards))]
}

// lock holds key's reservations for one decide call, so that counting
// and reserving are one step.
func (r *reservations) lock(key string) (unlock func()) {
	s := r.shard(key)
	s.mu.Lock()
	return s.mu.Unlock
}

// count returns the impressions of offer that count against its cap for
// the profile: those applied since since, plus the reservations whose
// impressions are not applied yet. The caller holds the key's lock.
func (r *reservations) count(key, offer string, p *state.Profile, now, since int64) int {
	s := r.shard(key)
	n := p.Impressions(offer, since)
	list := s.byKey[key]
	kept := list[:0]
	for _, res := range list {
		if res.expires <= now || p.Viewed(res.offer, res.hash) {
			continue // expired, or now counted by the profile
		}
		kept = append(kept, res)
		if res.offer == offer {
			n++
		}
	}
	if len(kept) == 0 {
		delete(s.byKey, key)
	} else {
		s.byKey[key] = kept
	}
	return n
}

// add reserves a decision of offer for key from now until expires. The
// caller holds the key's lock.
func (r *reservations) add(key, offer string, hash uint64, now, expires int64) {
	s := r.shard(key)
	s.byKey[key] = append(s.byKey[key], reservation{offer: offer, hash: hash, expires: expires})
	if s.inserts++; s.inserts >= 4096 {
		// Keys never decided again would keep their reservations: sweep
		// the expired ones now and then.
		s.inserts = 0
		for k, list := range s.byKey {
			list = slices.DeleteFunc(list, func(res reservation) bool { return res.expires <= now })
			if len(list) == 0 {
				delete(s.byKey, k)
			} else {
				s.byKey[k] = list
			}
		}
	}
}

// forget drops key's reservations: its profile was erased.
func (r *reservations) forget(key string) {
	s := r.shard(key)
	s.mu.Lock()
	delete(s.byKey, key)
	s.mu.Unlock()
}
