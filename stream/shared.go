package stream

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/state"
)

// Each partition store keeps its own statistics: segment sizes, the RFM
// population histograms and the offer statistics. Every instance needs
// them summed over all partitions, its own and the other instances', so
// that segment sizes, RFM quintiles and the learner's click rates agree
// everywhere. Each instance publishes a snapshot of a partition's
// statistics to the compacted stats topic when they have changed (at most
// once per statsInterval), and reads everyone's snapshots; the latest
// snapshot of each partition counts, except for the partitions an
// instance holds itself, whose live statistics it reads directly. The
// snapshots are whole values, not deltas, so a lost or repeated one does
// no harm, and a partition that moves keeps its last figures until its new
// owner publishes.

// statsInterval is how often changed statistics are published.
const statsInterval = time.Second

// partitionStats is a published snapshot.
type partitionStats struct {
	Partition int32 `json:"partition"`
	// Owner is the HTTP address of the instance that holds the partition
	// (ProcessorConfig.Advertise), where its profiles are read.
	Owner  string           `json:"owner,omitempty"`
	Sizes  map[string]int64 `json:"sizes,omitempty"`
	Days   map[int64]int64  `json:"days,omitempty"`
	Orders map[int64]int64  `json:"orders,omitempty"`
	Money  map[int64]int64  `json:"money,omitempty"`
	Offers []offerStat      `json:"offers,omitempty"`
}

type offerStat struct {
	Offer     string `json:"offer"`
	Placement string `json:"placement"`
	Control   bool   `json:"control,omitempty"`
	state.OfferCounts
}

func (s *partitionStats) population() state.Population {
	pop := state.NewPopulation()
	pop.Add(state.Population{Days: s.Days, Orders: s.Orders, Money: s.Money})
	return pop
}

func (s *partitionStats) offerStats() map[state.OfferStatKey]state.OfferCounts {
	out := make(map[state.OfferStatKey]state.OfferCounts, len(s.Offers))
	for _, o := range s.Offers {
		k := state.OfferStatKey{Offer: o.Offer, Placement: o.Placement}
		if o.Control {
			k.Arm = state.Control
		}
		out[k] = o.OfferCounts
	}
	return out
}

func snapshot(id int32, store *state.Store, owner string) *partitionStats {
	pop := store.Population()
	s := &partitionStats{Partition: id, Owner: owner, Sizes: store.SegmentSizes(), Days: pop.Days, Orders: pop.Orders, Money: pop.Money}
	for k, c := range store.OfferStats() {
		s.Offers = append(s.Offers, offerStat{Offer: k.Offer, Placement: k.Placement, Control: k.Arm == state.Control, OfferCounts: c})
	}
	return s
}

// sharedStats holds the other partitions' latest snapshots.
type sharedStats struct {
	mu        sync.RWMutex
	remote    map[int32]*partitionStats
	gen       uint64                // counts snapshots read, for caches
	published map[*partition]uint64 // the publisher's: StatsGen last published, per assignment
}

// publishStats publishes the changed statistics of the partitions held
// here, every statsInterval until ctx ends.
func (p *Processor) publishStats(ctx context.Context) {
	t := time.NewTicker(statsInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var records []*kgo.Record
		gens := make(map[*partition]uint64)
		p.mu.RLock()
		for part := range p.shared.published {
			if p.parts[part.id] != part {
				delete(p.shared.published, part) // revoked
			}
		}
		for id, part := range p.parts {
			// A new assignment publishes at once, if only to say who
			// holds the partition now.
			gen := part.store.StatsGen()
			if last, ok := p.shared.published[part]; ok && last == gen {
				continue
			}
			value, err := json.Marshal(snapshot(id, part.store, p.cfg.Advertise))
			if err != nil {
				continue
			}
			gens[part] = gen
			records = append(records, &kgo.Record{Topic: p.cfg.Topics.Stats, Key: []byte(p.cfg.Topics.Events + "/" + strconv.Itoa(int(id))), Value: value})
		}
		p.mu.RUnlock()
		if len(records) == 0 {
			continue
		}
		if err := p.cl.ProduceSync(ctx, records...).FirstErr(); err != nil {
			if ctx.Err() == nil {
				p.log.Warn("publish partition statistics", "topic", p.cfg.Topics.Stats, "err", err)
			}
			continue
		}
		for part, gen := range gens {
			p.shared.published[part] = gen
		}
	}
}

// followStats reads every instance's snapshots from the stats topic until
// ctx ends.
func (p *Processor) followStats(ctx context.Context) {
	cl, err := kgo.NewClient(append(p.cfg.Client.Opts(),
		kgo.ConsumeTopics(p.cfg.Topics.Stats),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)...)
	if err != nil {
		p.log.Error("read partition statistics", "topic", p.cfg.Topics.Stats, "err", err)
		return
	}
	defer cl.Close()
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return
		}
		fetches.EachError(func(topic string, part int32, err error) {
			p.log.Warn("read partition statistics", "topic", topic, "partition", part, "err", err)
		})
		fetches.EachRecord(func(r *kgo.Record) {
			var s partitionStats
			if err := json.Unmarshal(r.Value, &s); err != nil {
				p.log.Warn("partition statistics record", "offset", r.Offset, "err", err)
				return
			}
			p.shared.mu.Lock()
			p.shared.remote[s.Partition] = &s
			p.shared.gen++
			p.shared.mu.Unlock()
		})
	}
}

// eachPartitionStats calls local for each partition held here and remote
// for the latest snapshot of every other partition.
func (p *Processor) eachPartitionStats(local func(*state.Store), remote func(*partitionStats)) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	p.eachStoreLocked(func(_ int32, s *state.Store) { local(s) })
	p.shared.mu.RLock()
	defer p.shared.mu.RUnlock()
	for id, s := range p.shared.remote {
		if p.storeLocked(id) == nil {
			remote(s)
		}
	}
}

// Owner says where key's profile is held: here (local: applied, kept
// from a lost group session, or fenced), or at the HTTP address of the
// instance that last published its partition ("" when no instance has
// yet).
func (r Reads) Owner(key string) (addr string, local bool) {
	return r.PartitionOwner(PartitionOf(key, r.p.cfg.Partitions))
}
