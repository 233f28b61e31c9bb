package state

import (
	"slices"

	"github.com/cespare/xxhash/v2"

	"github.com/tailorcdp/tailor/event"
)

// Bounds on the offer history a profile keeps.
const (
	// MaxOfferDecisions is how many recent decisions a profile remembers
	// per offer: frequency caps can count at most this many impressions.
	MaxOfferDecisions = 32
	// MaxOffers is how many offers a profile keeps a history of (the most
	// recently active).
	MaxOffers = 64
)

// Arm is the side of an experiment a decision was on.
type Arm uint8

// The arms: profiles in a placement's control group get its fallback.
const (
	Treatment Arm = iota
	Control
)

func (a Arm) String() string {
	if a == Control {
		return "control"
	}
	return "treatment"
}

// Feedback is what an event reported about a decision.
type Feedback uint8

// The feedback kinds, as flags on a remembered decision.
const (
	Impression Feedback = 1 << iota
	Click
	Conversion
)

// offerHistory is what a profile remembers of one offer: its recent
// decisions (for caps and exactly-once feedback) and the last click and
// conversion (for cooldowns). Times are Unix ms of event time.
type offerHistory struct {
	decisions   []decisionMark // oldest first
	clickedAt   int64
	convertedAt int64
	touched     int64 // the latest feedback, to keep the most active offers
}

type decisionMark struct {
	hash uint64 // of the decision id
	at   int64  // event time of the first feedback
	seen Feedback
}

func cloneOffers(m map[string]*offerHistory) map[string]*offerHistory {
	if m == nil {
		return nil
	}
	c := make(map[string]*offerHistory, len(m))
	for id, h := range m {
		cp := *h
		cp.decisions = slices.Clone(h.decisions)
		c[id] = &cp
	}
	return c
}

// DecisionHash is the hash under which a profile remembers a decision id.
func DecisionHash(id string) uint64 { return xxhash.Sum64String(id) }

// applyFeedback records what ev reports about a decision of a known offer.
// It returns the kind of feedback and the decision when the event counts:
// once per decision and kind, however often it is sent.
func (p *Profile) applyFeedback(ev *event.Event, known map[string]bool) (Feedback, event.Decision, bool) {
	if ev.Type != event.Track {
		return 0, event.Decision{}, false
	}
	var kind Feedback
	switch ev.Name {
	case event.OfferViewed:
		kind = Impression
	case event.OfferClicked:
		kind = Click
	case event.OrderCompleted:
		kind = Conversion
	default:
		return 0, event.Decision{}, false
	}
	d, ok := ev.Decision()
	if !ok || !known[d.Offer] {
		return 0, event.Decision{}, false
	}
	idBytes := ev.Prop(event.DecisionProperty).GetStringBytes()
	hash := xxhash.Sum64(idBytes)
	t := ev.Time.UnixMilli()
	if p.offers == nil {
		p.offers = make(map[string]*offerHistory)
	}
	h := p.offers[d.Offer]
	if h == nil {
		h = &offerHistory{}
		p.offers[d.Offer] = h
	}
	i := slices.IndexFunc(h.decisions, func(m decisionMark) bool { return m.hash == hash })
	if i < 0 {
		if len(h.decisions) >= MaxOfferDecisions {
			h.decisions = slices.Delete(h.decisions, 0, 1)
		}
		h.decisions = append(h.decisions, decisionMark{hash: hash, at: t})
		i = len(h.decisions) - 1
	}
	m := &h.decisions[i]
	if m.seen&kind != 0 {
		return 0, event.Decision{}, false
	}
	m.seen |= kind
	switch kind {
	case Click:
		h.clickedAt = max(h.clickedAt, t)
	case Conversion:
		h.convertedAt = max(h.convertedAt, t)
	}
	h.touched = max(h.touched, t)
	if len(p.offers) > MaxOffers {
		p.dropStalestOffer()
	}
	return kind, d, true
}

// Impressions returns how many impressions of offer the profile has had
// at or after since (Unix ms), counting at most MaxOfferDecisions.
func (p *Profile) Impressions(offer string, since int64) int {
	h := p.offers[offer]
	if h == nil {
		return 0
	}
	n := 0
	for _, m := range h.decisions {
		if m.seen&Impression != 0 && m.at >= since {
			n++
		}
	}
	return n
}

// Viewed reports whether the impression of the decision with the given
// hash (DecisionHash) has been applied.
func (p *Profile) Viewed(offer string, hash uint64) bool {
	h := p.offers[offer]
	if h == nil {
		return false
	}
	for _, m := range h.decisions {
		if m.hash == hash {
			return m.seen&Impression != 0
		}
	}
	return false
}

// LastResponse returns the time (Unix ms) of the profile's last click on
// offer and of its last conversion from it; 0 when none.
func (p *Profile) LastResponse(offer string) (clicked, converted int64) {
	if h := p.offers[offer]; h != nil {
		return h.clickedAt, h.convertedAt
	}
	return 0, 0
}

// OfferStatKey names one counter set of the offer statistics.
type OfferStatKey struct {
	Offer     string
	Placement string
	Arm       Arm
}

// OfferCounts are the feedback counts of one offer in one placement and arm.
type OfferCounts struct {
	Impressions uint64 `json:"impressions"`
	Clicks      uint64 `json:"clicks"`
	Conversions uint64 `json:"conversions"`
}

// Add adds other to c.
func (c *OfferCounts) Add(other OfferCounts) {
	c.Impressions += other.Impressions
	c.Clicks += other.Clicks
	c.Conversions += other.Conversions
}

func (c *OfferCounts) count(f Feedback) {
	switch f {
	case Impression:
		c.Impressions++
	case Click:
		c.Clicks++
	case Conversion:
		c.Conversions++
	}
}

// dropStalestOffer forgets the history of the offer with the oldest
// feedback.
func (p *Profile) dropStalestOffer() {
	oldest, at := "", int64(1<<63-1)
	for id, o := range p.offers {
		if o.touched < at {
			oldest, at = id, o.touched
		}
	}
	delete(p.offers, oldest)
}
