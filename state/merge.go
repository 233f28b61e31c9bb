package state

import (
	"cmp"
	"slices"
)

// mergeFrom adds o, the profile of a key linked to p's, to p. Counts add
// up; first times keep the earliest, last times the latest; traits and
// consent choices keep the latest (their histories interleave); what is
// kept in bounded lists stays within the same bounds as when events add
// to them. Segment memberships are left to a re-evaluation, wake-ups to a
// rescheduling.
func (p *Profile) mergeFrom(o *Profile, m *Model, d Dedup, now int64) {
	p.addAnonymousID(o.Key)
	for _, id := range o.AnonymousIDs {
		if id != p.Key {
			p.addAnonymousID(id)
		}
	}
	for name, t := range o.Traits {
		cur, exists := p.Traits[name]
		if exists && cur.UpdatedAt >= t.UpdatedAt || !exists && len(p.Traits) >= MaxTraits {
			continue
		}
		if p.Traits == nil {
			p.Traits = make(map[string]Trait)
		}
		p.Traits[name] = t
	}
	if o.FirstSeen != 0 && (p.FirstSeen == 0 || o.FirstSeen < p.FirstSeen) {
		p.FirstSeen = o.FirstSeen
	}
	p.LastSeen = max(p.LastSeen, o.LastSeen)
	for i, n := range o.TypeCounts {
		p.TypeCounts[i] += n
	}
	for name, n := range o.EventCounts {
		if p.EventCounts == nil {
			p.EventCounts = make(map[string]uint64)
			p.EventLast = make(map[string]int64)
		}
		if _, ok := p.EventCounts[name]; !ok && len(p.EventCounts) >= MaxEventNames {
			name = OtherEvents
		}
		p.EventCounts[name] += n
		p.EventLast[name] = max(p.EventLast[name], o.EventLast[name])
	}
	p.Orders += o.Orders
	p.Revenue = p.Revenue.Add(o.Revenue)
	p.LastOrderAt = max(p.LastOrderAt, o.LastOrderAt)
	p.Refunds += o.Refunds
	p.RefundedAmount = p.RefundedAmount.Add(o.RefundedAmount)
	p.orderLog = mergeByTime(p.orderLog, o.orderLog, MaxOrderLog, func(r orderRecord) int64 { return r.at })
	if o.recent.len() > 0 {
		maxIDs := p.recent.len() + o.recent.len()
		if d.MaxIDs > 0 {
			maxIDs = d.MaxIDs
		}
		p.recent = newMessageLog(mergeByTime(p.recent.list(), o.recent.list(), maxIDs, func(m seenMessage) int64 { return m.receivedAt }))
	}

	var w Windowed
	var packed []byte
	for _, agg := range m.Aggregates.List() {
		ost := o.aggs.state(agg)
		if ost == nil || ost.bucketCount() == 0 {
			continue
		}
		w.unpack(p.aggs.state(agg))
		for r := ost.buckets(); ; {
			bk, hashes, more := r.next()
			if !more {
				break
			}
			w.mergeBucket(agg.Spec, bk, hashes)
		}
		w.Expire(agg.Spec, now)
		packed = p.aggs.store(agg, &w, packed)
	}
	if c := m.Interests; c != nil {
		for category, i := range o.interests {
			p.addInterest(category, i.score, i.at, c)
		}
	}
	p.mergeConsents(o)
	p.mergeOffers(o.offers)
	if c := m.Products; c != nil {
		p.viewed = mergeRecent(o.viewed, p.viewed, c.RecentlyViewed)
		p.bought = mergeRecent(o.bought, p.bought, c.Bought)
	}
}

// mergeByTime merges two lists in time order, keeping the latest n.
func mergeByTime[T any](a, b []T, n int, at func(T) int64) []T {
	if len(b) == 0 {
		return a
	}
	out := append(slices.Clone(a), b...)
	slices.SortStableFunc(out, func(x, y T) int { return cmp.Compare(at(x), at(y)) })
	if len(out) > n {
		out = slices.Delete(out, 0, len(out)-n)
	}
	return out
}

// mergeRecent merges two lists of product ids, most recent last, taking
// later the ids of the second; each id once, at most n.
func mergeRecent(earlier, later []string, n int) []string {
	var out []string
	for _, list := range [2][]string{earlier, later} {
		for _, id := range list {
			out = pushRecent(out, id, n)
		}
	}
	return out
}

// mergeOffers adds the offer histories of a merged profile: decisions
// once each (by id), the latest click, conversion and feedback.
func (p *Profile) mergeOffers(offers map[string]*offerHistory) {
	for id, oh := range offers {
		if p.offers == nil {
			p.offers = make(map[string]*offerHistory)
		}
		h := p.offers[id]
		if h == nil {
			cp := *oh
			cp.decisions = slices.Clone(oh.decisions)
			p.offers[id] = &cp
			continue
		}
		for _, dm := range oh.decisions {
			i := slices.IndexFunc(h.decisions, func(m decisionMark) bool { return m.hash == dm.hash })
			if i >= 0 {
				h.decisions[i].seen |= dm.seen
				continue
			}
			h.decisions = append(h.decisions, dm)
		}
		slices.SortStableFunc(h.decisions, func(x, y decisionMark) int { return cmp.Compare(x.at, y.at) })
		if len(h.decisions) > MaxOfferDecisions {
			h.decisions = slices.Delete(h.decisions, 0, len(h.decisions)-MaxOfferDecisions)
		}
		h.clickedAt = max(h.clickedAt, oh.clickedAt)
		h.convertedAt = max(h.convertedAt, oh.convertedAt)
		h.touched = max(h.touched, oh.touched)
	}
	for len(p.offers) > MaxOffers {
		p.dropStalestOffer()
	}
}
