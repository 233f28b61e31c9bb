package state

import (
	"encoding/json"
	"maps"
	"slices"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/valyala/fastjson"

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/money"
)

// Bounds on what one profile keeps, so that a misbehaving sender cannot grow
// a profile without limit.
const (
	// MaxAnonymousIDs is how many anonymous ids a profile remembers (the
	// most recent ones).
	MaxAnonymousIDs = 32
	// MaxEventNames is how many distinct track event names a profile counts
	// by name; later names are counted under OtherEvents.
	MaxEventNames = 512
	// MaxTraits is how many distinct traits a profile keeps; identify calls
	// that would add more are applied without the extra traits.
	MaxTraits = 512
)

// OtherEvents is the event-count name for track events past MaxEventNames.
const OtherEvents = "(other)"

// Trait is one profile trait: its JSON value (as sent, or normalised:
// traits.go), the event time of the identify call that set it (the latest
// event time wins) and where that call came from.
type Trait struct {
	Value     json.RawMessage
	UpdatedAt int64 // Unix milliseconds
	// Source is the SDK's context.library.name, SourceImport or
	// SourceAPI; "" for a trait stored before sources were kept.
	Source string
	// Unnormalised says why Value is kept as sent though the trait is
	// one that is normalised; "" otherwise.
	Unnormalised string
}

// Profile is everything tailor knows about one customer. Times are Unix
// milliseconds of event time. A Profile read from a Store is shared and
// must not be modified; the applier changes its own clones.
type Profile struct {
	Key    string
	UserID string
	// AnonymousIDs are the other ids linked to the profile (the most
	// recent MaxAnonymousIDs): the anonymousIds its events carried, the
	// previousIds of its alias calls, the keys of the profiles merged
	// into it.
	AnonymousIDs []string
	Traits       map[string]Trait
	FirstSeen    int64
	LastSeen     int64
	// TypeCounts counts calls by type, indexed by event.Type.
	TypeCounts [len(event.Types) + 1]uint64
	// EventCounts counts track calls by event name, and EventLast holds
	// the latest event time of each name (for since() in rules).
	EventCounts map[string]uint64
	EventLast   map[string]int64

	Orders         uint64       // Order Completed, once per order_id
	Revenue        money.Amount // sum of the completed orders' amounts
	LastOrderAt    int64
	Refunds        uint64       // Order Refunded events
	RefundedAmount money.Amount // sum of the refunds' amounts

	// Segments holds the segments the profile is in, with the time it
	// entered each (Unix ms). Read only: a clone shares it with its
	// original until a membership changes (enterSegment, leaveSegment).
	Segments       map[string]int64
	segmentsShared bool
	// member caches Segments for the model memberOf, so that rules test a
	// membership without a map lookup: bit i is set when the profile is in
	// the schema's segment i. memberOf is nil when not worked out (a
	// decoded profile); member is shared with the clone's original like
	// Segments.
	memberOf *Segments
	member   bitset
	// WakeAt is when time alone may next change a segment membership (a
	// window sliding past an event, a since() bound reached), Unix ms; 0
	// for never. The store's schedule holds the profile at that instant.
	WakeAt int64
	// retimed: the batch changing the profile evaluated a segment that
	// time changes, so its wake-up must be worked out again at commit.
	retimed bool

	// interests holds the decayed affinity per category; consents the
	// latest choice per consent purpose, consentLog the changes of choice,
	// oldest first (consent.go).
	interests   map[string]interest
	interestSum interestSum // their sum, for Affinity
	consents    map[string]consent
	consentLog  []consentChange

	// offers holds the feedback on the offers shown to the profile, by
	// offer id; viewed and bought the product ids viewed and bought, most
	// recent last.
	offers map[string]*offerHistory
	viewed []string
	bought []string

	// aggs holds the aggregate states, packed; a clone shares them with
	// its original until it changes one.
	aggs aggStates

	// orderLog holds the most recent counted orders (at most MaxOrderLog),
	// oldest first, for RFM over a horizon; rfm is where the profile was
	// last counted in the partition's RFM histograms (rfmRecorded false:
	// written before the order log, counted with all-time values).
	orderLog    []orderRecord
	rfm         rfmPoint
	rfmRecorded bool
	// rfmScores are the scores the profile's segments reading them were
	// last evaluated on (rfmScored), which View shows: the same scores,
	// whatever the quintiles did since (Profile.rescore).
	rfmScores rfmScores
	rfmScored bool

	// movedOrders, in a profile taken out by Batch.Link only, are the
	// order ids its store counted for it, which move with it (Merge).
	movedOrders []movedOrder

	// recent holds the messageIds applied within the dedup horizon, so
	// a retried event applies once.
	recent messageLog

	// encodedSize is the size of the profile's last encoding, to estimate
	// the size of a write transaction before encoding.
	encodedSize int
}

// MaxOrderLog bounds the orders a profile remembers for RFM over a
// horizon: the most recent ones. A customer with more orders inside the
// horizon has a frequency of MaxOrderLog, which is in the top fifth
// anywhere.
const MaxOrderLog = 100

// orderRecord is one counted order.
type orderRecord struct {
	at     int64 // event time, Unix ms
	amount money.Amount
}

// uncountOrder takes back an order counted twice (by a merge) with its
// amount and event time.
func (p *Profile) uncountOrder(amount money.Amount, at int64) {
	if p.Orders == 0 {
		return
	}
	p.Orders--
	p.Revenue = p.Revenue.Sub(amount)
	for i, o := range p.orderLog {
		if o.at == at && o.amount == amount {
			p.orderLog = slices.Delete(p.orderLog, i, i+1) // the batch's own: Clone copies it
			break
		}
	}
}

// movedOrder is an order id counted for a profile that moves into
// another, with the order's amount and event time (Unix ms) when known
// (known false: counted before order ids kept them).
type movedOrder struct {
	id     string
	amount money.Amount
	at     int64
	known  bool
}

// Dedup bounds how long and how many messageIds a profile remembers.
type Dedup struct {
	// Horizon is how long, in receive time, a messageId is remembered.
	Horizon time.Duration
	// MaxIDs bounds the messageIds remembered per profile (the most
	// recent); 0 means no bound.
	MaxIDs int
}

// FirstDelivery reports whether the event's messageId is new to this
// profile within the dedup bounds, and remembers it. Expiry follows the
// events' receive times, not the clock, so a replay decides the same way.
func (p *Profile) FirstDelivery(ev *event.Event, d Dedup) bool {
	if ev.MessageID == "" {
		return true
	}
	h := xxhash.Sum64String(ev.MessageID)
	if p.recent.contains(h) {
		return false
	}
	at := ev.ReceivedAt.UnixMilli()
	keep := -1
	if d.MaxIDs > 0 {
		keep = d.MaxIDs - 1
	}
	p.recent.forget(at-d.Horizon.Milliseconds(), keep)
	p.recent.add(seenMessage{hash: h, receivedAt: at}, d.MaxIDs)
	return true
}

// setSegment records that the profile entered segment seg of model s at
// (Unix ms), or left it.
func (p *Profile) setSegment(s *Segments, seg *Segment, in bool, at int64) {
	p.members(s) // worked out from the memberships before this change
	p.ownSegments()
	if in {
		p.Segments[seg.Name] = at
		p.member.add(seg.index)
	} else {
		delete(p.Segments, seg.Name)
		p.member.remove(seg.index)
	}
}

// leaveSegment records that the profile left segment name, which the
// current model may not declare.
func (p *Profile) leaveSegment(name string) {
	p.ownSegments()
	delete(p.Segments, name)
	p.memberOf = nil
}

// ownSegments gives the profile memberships of its own to change.
func (p *Profile) ownSegments() {
	switch {
	case p.Segments == nil:
		p.Segments = make(map[string]int64)
	case p.segmentsShared:
		p.Segments = maps.Clone(p.Segments)
		p.member = slices.Clone(p.member)
	}
	p.segmentsShared = false
}

// members returns which of s's segments the profile is in (bit i: the
// schema's segment i), working it out when not known for s.
func (p *Profile) members(s *Segments) bitset {
	if p.memberOf != s {
		m := newBitset(len(s.names))
		for name := range p.Segments {
			if i, ok := slices.BinarySearch(s.names, name); ok {
				m.add(i)
			}
		}
		p.memberOf, p.member = s, m
	}
	return p.member
}

// Clone returns a copy that the caller may modify through this package's
// methods. Aggregate states and segment memberships are shared with p
// until the copy changes them, so p itself must not change afterwards (a
// profile published to readers never does).
func (p *Profile) Clone() *Profile {
	c := *p
	c.recent = p.recent.clone()
	c.aggs.shared = true // most events change one or two aggregates, or none
	c.retimed = false
	c.segmentsShared = true // memberships change far less often than profiles
	c.interests = maps.Clone(p.interests)
	c.consents = maps.Clone(p.consents)
	c.consentLog = slices.Clone(p.consentLog)
	c.offers = cloneOffers(p.offers)
	c.viewed = slices.Clone(p.viewed)
	c.orderLog = slices.Clone(p.orderLog)
	c.bought = slices.Clone(p.bought)
	c.AnonymousIDs = slices.Clone(p.AnonymousIDs)
	c.Traits = maps.Clone(p.Traits)
	c.EventCounts = maps.Clone(p.EventCounts)
	c.EventLast = maps.Clone(p.EventLast)
	return &c
}

// Apply changes the profile by one event, normalising traits by the zero
// TraitRules. countOrder says whether an Order Completed event is a new
// order (the caller knows which order ids it has seen); it is ignored for
// other events.
func (p *Profile) Apply(ev *event.Event, countOrder bool) {
	p.apply(ev, countOrder, TraitRules{})
}

// apply is Apply with the traits normalised by r.
func (p *Profile) apply(ev *event.Event, countOrder bool, r TraitRules) {
	t := ev.Time.UnixMilli()
	if p.Key == "" {
		p.Key = ev.Key()
	}
	if ev.UserID != "" {
		p.UserID = ev.UserID
	}
	if ev.AnonymousID != "" && ev.AnonymousID != p.Key {
		p.addAnonymousID(ev.AnonymousID)
	}
	if ev.Type == event.Alias && ev.PreviousID != "" && ev.PreviousID != p.Key {
		// Linked to the profile (Batch.Link) whether or not it had a
		// profile to merge: listed with the others.
		p.addAnonymousID(ev.PreviousID)
	}
	if p.FirstSeen == 0 || t < p.FirstSeen {
		p.FirstSeen = t
	}
	if t > p.LastSeen {
		p.LastSeen = t
	}
	if int(ev.Type) < len(p.TypeCounts) {
		p.TypeCounts[ev.Type]++
	}
	p.applyConsent(ev)

	switch ev.Type {
	case event.Identify:
		p.mergeTraits(ev, t, r)
	case event.Track:
		p.countEvent(ev.Name, t)
		switch ev.Name {
		case event.OrderCompleted:
			if !countOrder {
				return
			}
			p.Orders++
			amount, _ := ev.OrderAmount()
			p.Revenue = p.Revenue.Add(amount)
			if t > p.LastOrderAt {
				p.LastOrderAt = t
			}
			p.logOrder(t, amount)
		case event.OrderRefunded:
			p.Refunds++
			if amount, ok := ev.OrderAmount(); ok {
				p.RefundedAmount = p.RefundedAmount.Add(amount.Abs())
			}
		}
	}
}

// logOrder remembers an order in time order, keeping the most recent.
func (p *Profile) logOrder(at int64, amount money.Amount) {
	i := len(p.orderLog)
	for i > 0 && p.orderLog[i-1].at > at {
		i--
	}
	p.orderLog = slices.Insert(p.orderLog, i, orderRecord{at: at, amount: amount})
	if len(p.orderLog) > MaxOrderLog {
		p.orderLog = slices.Delete(p.orderLog, 0, len(p.orderLog)-MaxOrderLog)
	}
}

func (p *Profile) addAnonymousID(id string) {
	if slices.Contains(p.AnonymousIDs, id) {
		return
	}
	if len(p.AnonymousIDs) >= MaxAnonymousIDs {
		p.AnonymousIDs = slices.Delete(p.AnonymousIDs, 0, 1)
	}
	p.AnonymousIDs = append(p.AnonymousIDs, id)
}

func (p *Profile) countEvent(name string, t int64) {
	if p.EventCounts == nil {
		p.EventCounts = make(map[string]uint64)
		p.EventLast = make(map[string]int64)
	}
	if _, ok := p.EventCounts[name]; !ok && len(p.EventCounts) >= MaxEventNames {
		name = OtherEvents
	}
	p.EventCounts[name]++
	if t > p.EventLast[name] {
		p.EventLast[name] = t
	}
}

// mergeTraits merges an identify call's traits, normalised by r: each trait
// takes the value of the call with the latest event time, so replays and
// late events cannot overwrite newer values.
func (p *Profile) mergeTraits(ev *event.Event, t int64, r TraitRules) {
	if ev.Traits == nil {
		return
	}
	obj, err := ev.Traits.Object()
	if err != nil {
		return
	}
	source := ""
	obj.Visit(func(key []byte, v *fastjson.Value) {
		name := string(key)
		old, exists := p.Traits[name]
		if exists && old.UpdatedAt > t {
			return
		}
		if !exists && len(p.Traits) >= MaxTraits {
			return
		}
		if p.Traits == nil {
			p.Traits = make(map[string]Trait)
		}
		if source == "" {
			source = traitSource(ev)
		}
		var prev *Trait
		if exists {
			prev = &old
		}
		value, problem := r.normalise(name, v, prev)
		p.Traits[name] = Trait{Value: value, UpdatedAt: t, Source: source, Unnormalised: problem}
	})
}

// View is the JSON form of a profile served by the profile API and written
// by export.
type View struct {
	Key          string                     `json:"key"`
	UserID       string                     `json:"userId,omitempty"`
	AnonymousIDs []string                   `json:"anonymousIds"`
	Traits       map[string]json.RawMessage `json:"traits"`
	// TraitSources says where each trait's value came from and when.
	TraitSources map[string]TraitSourceView `json:"traitSources"`
	FirstSeen    time.Time                  `json:"firstSeen"`
	LastSeen     time.Time                  `json:"lastSeen"`
	Calls        map[string]uint64          `json:"calls"`
	Events       map[string]uint64          `json:"events"`
	Orders       OrdersView                 `json:"orders"`
	// Aggregates are the declared aggregates' values now: numbers (sums
	// exact, as money.Amount), times for first_seen and last_seen, null
	// when no event counts.
	Aggregates map[string]any `json:"aggregates"`
	// Segments are the segments the profile is in, with when it entered.
	Segments map[string]time.Time `json:"segments"`
	// Interests are the strongest category affinities (shares of 1).
	Interests []Affinity `json:"interests"`
	// Consent is the latest choice per purpose.
	Consent map[string]bool `json:"consent"`
	// RFM is null for a profile without orders (in the RFM horizon).
	RFM *RFMView `json:"rfm"`
	// RecentlyViewed are the products viewed, most recent first;
	// Bought the products bought (the latest ones).
	RecentlyViewed []string `json:"recentlyViewed"`
	Bought         []string `json:"bought"`
	// Offers is the feedback on each offer shown to the profile.
	Offers map[string]OfferView `json:"offers"`
}

// OfferView is what a profile remembers of one offer.
type OfferView struct {
	// Impressions are those remembered (the latest MaxOfferDecisions).
	Impressions    int        `json:"impressions"`
	LastClick      *time.Time `json:"lastClick"`
	LastConversion *time.Time `json:"lastConversion"`
}

// RFMView is the RFM part of View: raw values and 1-5 scores. A score is
// absent (0, left out of the JSON) while the population has too few
// distinct values for its quintiles (MinRFMValues). Where segments read
// the scores, they are those the segments were last evaluated on, so that
// a profile's RFM segments always agree with the scores it shows.
type RFMView struct {
	Recency   float64      `json:"recency"` // days since the last order
	Frequency float64      `json:"frequency"`
	Monetary  money.Amount `json:"monetary"`
	R         float64      `json:"r,omitempty"`
	F         float64      `json:"f,omitempty"`
	M         float64      `json:"m,omitempty"`
}

// Derived is what View computes beyond the stored facts, from the
// configuration and the population.
type Derived struct {
	Aggregates *Aggregates
	Interests  *Interests
	Quintiles  RFMQuintiles
}

// TopInterests is how many interests View shows.
const TopInterests = 5

// OrdersView is the order facts part of View.
type OrdersView struct {
	Count          uint64       `json:"count"`
	Revenue        money.Amount `json:"revenue"`
	LastOrderAt    *time.Time   `json:"lastOrderAt"`
	Refunds        uint64       `json:"refunds"`
	RefundedAmount money.Amount `json:"refundedAmount"`
}

// View returns the profile's JSON form, with the derived values at now.
func (p *Profile) View(d Derived, now time.Time) View {
	aggs, interests := d.Aggregates, d.Interests
	v := View{
		Key:          p.Key,
		UserID:       p.UserID,
		AnonymousIDs: p.AnonymousIDs,
		Traits:       make(map[string]json.RawMessage, len(p.Traits)),
		FirstSeen:    time.UnixMilli(p.FirstSeen).UTC(),
		LastSeen:     time.UnixMilli(p.LastSeen).UTC(),
		Calls:        make(map[string]uint64),
		Events:       p.EventCounts,
		Orders: OrdersView{
			Count:          p.Orders,
			Revenue:        p.Revenue,
			Refunds:        p.Refunds,
			RefundedAmount: p.RefundedAmount,
		},
	}
	if v.AnonymousIDs == nil {
		v.AnonymousIDs = []string{}
	}
	if v.Events == nil {
		v.Events = map[string]uint64{}
	}
	for name, t := range p.Traits {
		v.Traits[name] = t.Value
	}
	v.TraitSources = p.traitSources()
	for _, t := range event.Types {
		if n := p.TypeCounts[t]; n > 0 {
			v.Calls[t.String()] = n
		}
	}
	if p.LastOrderAt != 0 {
		t := time.UnixMilli(p.LastOrderAt).UTC()
		v.Orders.LastOrderAt = &t
	}
	v.Interests = p.Affinities(interests, now)
	if len(v.Interests) > TopInterests {
		v.Interests = v.Interests[:TopInterests]
	}
	if v.Interests == nil {
		v.Interests = []Affinity{}
	}
	if rec, ok := p.RFM(3, d.Quintiles, now); ok {
		v.RFM = &RFMView{Recency: rec}
		v.RFM.Frequency, v.RFM.Monetary, _ = p.rfmValues(now.UnixMilli(), d.Quintiles.Horizon)
		// The scores the segments were evaluated on, when segments read
		// them; else as the quintiles give them now.
		scores := p.rfmScores
		if !p.rfmScored {
			scores = p.scoresAt(d.Quintiles, now)
		}
		v.RFM.R, v.RFM.F, v.RFM.M = float64(scores[0]), float64(scores[1]), float64(scores[2])
	}
	v.Consent = make(map[string]bool, len(p.consents))
	for purpose, c := range p.consents {
		v.Consent[purpose] = c.granted
	}
	v.Segments = make(map[string]time.Time, len(p.Segments))
	for name, at := range p.Segments {
		v.Segments[name] = time.UnixMilli(at).UTC()
	}
	v.RecentlyViewed = p.RecentlyViewed()
	v.Bought = slices.Clone(p.bought)
	if v.Bought == nil {
		v.Bought = []string{}
	}
	v.Offers = make(map[string]OfferView, len(p.offers))
	for id, h := range p.offers {
		ov := OfferView{Impressions: p.Impressions(id, 0)}
		if h.clickedAt != 0 {
			t := time.UnixMilli(h.clickedAt).UTC()
			ov.LastClick = &t
		}
		if h.convertedAt != 0 {
			t := time.UnixMilli(h.convertedAt).UTC()
			ov.LastConversion = &t
		}
		v.Offers[id] = ov
	}
	v.Aggregates = make(map[string]any, len(aggs.List()))
	for _, agg := range aggs.List() {
		x, ok := p.AggregateValue(agg, now)
		switch {
		case !ok:
			v.Aggregates[agg.Name] = nil
		case agg.Spec.Func == FirstSeen || agg.Spec.Func == LastSeen:
			v.Aggregates[agg.Name] = time.UnixMilli(int64(x)).UTC()
		case agg.Spec.Func == Sum:
			v.Aggregates[agg.Name], _ = p.aggs.state(agg).sum(agg.Spec, now.UnixMilli())
		default:
			v.Aggregates[agg.Name] = x
		}
	}
	return v
}
