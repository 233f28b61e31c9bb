package state

import (
	"cmp"
	"slices"
	"time"

	"github.com/tailorcdp/tailor/money"
)

// Export is everything tailor holds about one person, for an access
// request (GET /v1/profiles/{key}/export, decision 0028): the profile
// answer (View) with every interest rather than the strongest, and what
// the answer leaves out: the consent history, the time of each event
// name's latest event, the order ids counted and the order log, the
// decisions remembered per offer, and how many messageIds are remembered
// for deduplication (their hashes only).
type Export struct {
	View
	// ConsentHistory holds the changes of consent choices, oldest first.
	ConsentHistory []ConsentChange `json:"consentHistory"`
	// EventsLast is the time of the latest event of each counted name.
	EventsLast map[string]time.Time `json:"eventsLast"`
	// CountedOrders are the order ids the store counted for the profile
	// (each order once), by id.
	CountedOrders []CountedOrder `json:"countedOrders"`
	// OrderLog is the most recent counted orders (at most MaxOrderLog),
	// oldest first: what RFM over a horizon reads.
	OrderLog []LoggedOrder `json:"orderLog"`
	// OfferDecisions are the decisions remembered per offer (at most
	// MaxOfferDecisions each), oldest first.
	OfferDecisions map[string][]DecisionView `json:"offerDecisions"`
	// MessageIDs counts the messageIds remembered to drop retried events:
	// kept as hashes, they cannot be shown.
	MessageIDs int `json:"rememberedMessageIds"`
	// ExportedAt is when the export was made.
	ExportedAt time.Time `json:"exportedAt"`
}

// CountedOrder is an order id counted for a profile, with the order's
// amount and event time; both are absent for an order counted before
// they were kept.
type CountedOrder struct {
	ID     string        `json:"id"`
	Amount *money.Amount `json:"amount"`
	At     *time.Time    `json:"at"`
}

// newCountedOrder returns the CountedOrder of order id with its amount
// and time when known.
func newCountedOrder(id string, amount money.Amount, at int64, known bool) CountedOrder {
	o := CountedOrder{ID: id}
	if known {
		t := time.UnixMilli(at).UTC()
		o.Amount, o.At = &amount, &t
	}
	return o
}

// LoggedOrder is one order of the order log.
type LoggedOrder struct {
	At     time.Time    `json:"at"`
	Amount money.Amount `json:"amount"`
}

// DecisionView is one decision a profile remembers of an offer: when its
// first feedback came and which feedback came (impression, click,
// conversion).
type DecisionView struct {
	At       time.Time `json:"at"`
	Feedback []string  `json:"feedback"`
}

// Export returns the access export of the profile at now, with orders,
// the order ids its store counted for it.
func (p *Profile) Export(d Derived, now time.Time, orders []CountedOrder) Export {
	x := Export{View: p.View(d, now), ExportedAt: now.UTC(), MessageIDs: p.recent.len()}
	if all := p.Affinities(d.Interests, now); all != nil {
		x.Interests = all
	}
	x.ConsentHistory = p.ConsentHistory()
	x.EventsLast = make(map[string]time.Time, len(p.EventLast))
	for name, at := range p.EventLast {
		x.EventsLast[name] = time.UnixMilli(at).UTC()
	}
	x.CountedOrders = slices.SortedFunc(slices.Values(orders), func(a, b CountedOrder) int { return cmp.Compare(a.ID, b.ID) })
	if x.CountedOrders == nil {
		x.CountedOrders = []CountedOrder{}
	}
	x.OrderLog = make([]LoggedOrder, len(p.orderLog))
	for i, o := range p.orderLog {
		x.OrderLog[i] = LoggedOrder{At: time.UnixMilli(o.at).UTC(), Amount: o.amount}
	}
	x.OfferDecisions = make(map[string][]DecisionView, len(p.offers))
	for id, h := range p.offers {
		ds := make([]DecisionView, len(h.decisions))
		for i, m := range h.decisions {
			ds[i] = DecisionView{At: time.UnixMilli(m.at).UTC(), Feedback: m.seen.names()}
		}
		x.OfferDecisions[id] = ds
	}
	return x
}

// names returns the feedback kinds of f.
func (f Feedback) names() []string {
	out := []string{}
	for _, k := range []struct {
		f    Feedback
		name string
	}{{Impression, "impression"}, {Click, "click"}, {Conversion, "conversion"}} {
		if f&k.f != 0 {
			out = append(out, k.name)
		}
	}
	return out
}
