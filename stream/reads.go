package stream

import (
	"errors"
	"fmt"
	"time"

	"github.com/tailorcdp/tailor/state"
)

// Reads is the read-only view of what a processor holds, which the
// engine hands to serve and decide: profiles from the stores applied
// here (or kept from a lost group session, or standby replicas), the
// statistics of every partition (these and those other instances
// publish), products, where a key is held, readiness and the cluster.
// It changes nothing; the Processor itself consumes, applies and writes.
type Reads struct{ p *Processor }

// Reads returns the processor's read-only view.
func (p *Processor) Reads() Reads { return Reads{p} }

// Profile returns the profile of key from the store of its partition,
// or, for a key whose profile was merged into another, that profile; a
// store kept from a lost group session answers what it had applied
// (Stale), and a standby replica what its changelog had (ReadFrom). It returns ErrNotOwned when that partition is not assigned
// here, a *FencedError when its store is fenced, a
// *state.MergedError when the profile it was merged into is held by
// another instance, and state.ErrNotFound for a key never seen.
func (r Reads) Profile(key string) (*state.Profile, error) {
	var prof *state.Profile
	err := r.follow(key, func(s *state.Store, key string) (err error) {
		prof, err = s.Profile(key)
		return err
	})
	return prof, err
}

// follow calls read with the store of key's partition, then, while read
// returns state.ErrNotFound and the store links key to another, with the
// store of that one (Profile says which errors it returns besides read's).
func (r Reads) follow(key string, read func(s *state.Store, key string) error) error {
	p := r.p
	p.mu.RLock()
	defer p.mu.RUnlock()
	asked := key
	for hops := 0; ; hops++ {
		id := PartitionOf(key, p.cfg.Partitions)
		if err := p.fencedError(id); err != nil {
			return err
		}
		store := p.storeLocked(id)
		if store == nil {
			store = p.standby.store(id)
		}
		if store == nil {
			if hops > 0 {
				return &state.MergedError{Key: asked, Into: key}
			}
			return fmt.Errorf("key %q is in partition %d: %w", key, id, ErrNotOwned)
		}
		err := read(store, key)
		if !errors.Is(err, state.ErrNotFound) || hops == maxAliasHops {
			return err
		}
		to, ok, aerr := store.Alias(key)
		if aerr != nil {
			return aerr
		}
		if !ok {
			return err
		}
		key = to
	}
}

// ReadFrom says where a read of key is answered from here: "" from the
// store that applies its partition, "stale" from one kept from a lost
// group session, "standby" from a standby replica (standby.go), which
// reflects what its owner had committed by its last changelog fetch.
func (r Reads) ReadFrom(key string) string {
	p := r.p
	id := PartitionOf(key, p.cfg.Partitions)
	p.mu.RLock()
	defer p.mu.RUnlock()
	switch {
	case p.parts[id] != nil:
		return ""
	case p.stale[id] != nil:
		return "stale"
	case p.standby.store(id) != nil:
		return "standby"
	}
	return ""
}

// maxAliasHops bounds the links followed to find a merged profile (a key
// merged into one later merged into another...).
const maxAliasHops = 8

// ProfileView returns the JSON form of key's profile, with the
// aggregates' values now.
func (r Reads) ProfileView(key string) (state.View, error) {
	prof, err := r.Profile(key)
	if err != nil {
		return state.View{}, err
	}
	d, now := r.derived()
	return prof.View(d, now), nil
}

// Export returns the access export of key's profile (state.Export),
// following links like Profile, with the same errors.
func (r Reads) Export(key string) (state.Export, error) {
	var x state.Export
	d, now := r.derived()
	err := r.follow(key, func(s *state.Store, key string) (err error) {
		x, err = s.Export(key, d, now)
		return err
	})
	return x, err
}

// derived returns what views compute beyond the stored facts, and now.
func (r Reads) derived() (state.Derived, time.Time) {
	p := r.p
	now := time.Now
	if p.cfg.Store.Now != nil {
		now = p.cfg.Store.Now
	}
	m := p.model.Load()
	return state.Derived{Aggregates: m.Aggregates, Interests: m.Interests, Quintiles: p.quintilesWithin(200 * time.Millisecond)}, now()
}

// Quintiles returns the RFM quintile boundaries of the profiles in the
// partitions this instance holds, recomputed when the population changed
// and the last computation is older than a second (rules read them on
// every event).
func (r Reads) Quintiles() state.RFMQuintiles { return r.p.quintilesWithin(time.Second) }

// quintilesWithin recomputes the quintiles when the population changed and
// the cached ones are older than maxAge.
func (p *Processor) quintilesWithin(maxAge time.Duration) state.RFMQuintiles {
	gen := p.populationGen()
	c := p.quintiles.Load()
	if c == nil || c.gen != gen && time.Since(c.at) >= maxAge {
		c = &cachedQuintiles{q: p.population().Quintiles(), at: time.Now(), gen: gen}
		p.quintiles.Store(c)
	}
	q := c.q
	q.Horizon = p.model.Load().RFMHorizon
	return q
}

type cachedQuintiles struct {
	q   state.RFMQuintiles
	at  time.Time
	gen uint64
}

func (p *Processor) populationGen() uint64 {
	p.mu.RLock()
	var gen uint64
	p.eachStoreLocked(func(id int32, s *state.Store) {
		gen += s.PopulationGen() + uint64(id)<<48 // a partition moving changes it too
	})
	p.mu.RUnlock()
	p.shared.mu.RLock()
	defer p.shared.mu.RUnlock()
	return gen + p.shared.gen<<32
}

// population returns the RFM histograms of every partition: those held
// here, live, and the others' latest published snapshots.
func (p *Processor) population() state.Population {
	pop := state.NewPopulation()
	p.eachPartitionStats(
		func(s *state.Store) { pop.Add(s.Population()) },
		func(s *partitionStats) { pop.Add(s.population()) })
	return pop
}

// SegmentSizes returns the members of each segment over every partition:
// those held here, live, and the others' latest published snapshots
// (about a second behind).
func (r Reads) SegmentSizes() map[string]int64 {
	p := r.p
	total := make(map[string]int64)
	add := func(sizes map[string]int64) {
		for name, n := range sizes {
			total[name] += n
		}
	}
	p.eachPartitionStats(
		func(s *state.Store) { add(s.SegmentSizes()) },
		func(s *partitionStats) { add(s.Sizes) })
	return total
}

// OfferStats returns the offer statistics over every partition, like
// SegmentSizes.
func (r Reads) OfferStats() map[state.OfferStatKey]state.OfferCounts {
	p := r.p
	total := make(map[state.OfferStatKey]state.OfferCounts)
	add := func(stats map[state.OfferStatKey]state.OfferCounts) {
		for k, c := range stats {
			t := total[k]
			t.Add(c)
			total[k] = t
		}
	}
	p.eachPartitionStats(
		func(s *state.Store) { add(s.OfferStats()) },
		func(s *partitionStats) { add(s.offerStats()) })
	return total
}

// Products returns what each assigned partition knows of a product:
// products are not keyed like profiles, every partition sees some of
// their events.
func (r Reads) Products(id string) []*state.Product {
	p := r.p
	p.mu.RLock()
	defer p.mu.RUnlock()
	var out []*state.Product
	p.eachStoreLocked(func(_ int32, s *state.Store) {
		if prod := s.Product(id); prod != nil {
			out = append(out, prod)
		}
	})
	return out
}

// EachProduct calls fn for every product of every assigned partition.
func (r Reads) EachProduct(fn func(*state.Product)) {
	p := r.p
	p.mu.RLock()
	defer p.mu.RUnlock()
	p.eachStoreLocked(func(_ int32, s *state.Store) { s.EachProduct(fn) })
}

// Applied returns the next offset to apply of each assigned partition.
func (r Reads) Applied() map[int32]int64 {
	p := r.p
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make(map[int32]int64, len(p.parts))
	for id, part := range p.parts {
		out[id] = part.next.Load()
	}
	return out
}

func (p *Processor) cacheStats() (hits, misses uint64) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	hits, misses = p.closedHits.Load(), p.closedMisses.Load()
	p.eachStoreLocked(func(_ int32, s *state.Store) {
		h, m := s.CacheStats()
		hits += h
		misses += m
	})
	return hits, misses
}
