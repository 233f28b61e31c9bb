package decide

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/rules"
	"github.com/tailorcdp/tailor/state"
)

// Placement kinds: a slot of offers, or a list of recommended products.
const (
	KindOffers         = "offers"
	KindRecentlyViewed = "recently_viewed"
	KindTrending       = "trending"
	KindBoughtTogether = "bought_together"
)

// Arbitration methods of an offers placement.
const (
	ByPriority = "priority" // the highest-priority eligible offers win
	ByScore    = "score"    // the offers whose score expression is highest win
	ByLearning = "learn"    // Thompson sampling over each offer's response rate
)

// PlacementConfig declares a placement: a slot of a page or screen.
type PlacementConfig struct {
	Name string
	// Kind is KindOffers (the default) or a recommendation kind.
	Kind string
	// Arbitration chooses among eligible offers: ByPriority (default),
	// ByScore or ByLearning.
	Arbitration string
	// Count is how many offers (default 1) or products (default 4) to answer.
	Count int
	// Fallback is the offer answered when none is eligible, to unknown
	// visitors, to visitors without consent and to the control group.
	Fallback string
	// Control is the share of profiles (0 to 0.5) held out: they always
	// get the fallback, so the offers' lift can be measured.
	Control float64
	// Reward is what learning maximises: "click" (default) or "conversion".
	Reward string
	// ExcludeBought leaves out products the visitor bought.
	ExcludeBought bool
	// ByInterest restricts trending products to the visitor's top
	// interest category, when the visitor has one.
	ByInterest bool
}

// OfferConfig declares an offer.
type OfferConfig struct {
	ID         string
	Placements []string
	// When is the eligibility rule ("" : always eligible).
	When string
	// Priority orders offers under ByPriority (higher first) and breaks
	// ties otherwise.
	Priority float64
	// Score is a number rule for ByScore placements.
	Score string
	// Content is handed back as is.
	Content json.RawMessage
	// Trusted marks the content as safe to insert as markup: answers say
	// "trusted":true and tailor.js then inserts its html field as HTML.
	// Content must be a JSON object, its html (if any) a string.
	Trusted bool
	// Start and End bound when the offer runs (zero: unbounded).
	Start, End time.Time
	// CapImpressions impressions per CapPer at most (0: no cap).
	CapImpressions int
	CapPer         time.Duration
	// Cooldown keeps the offer away for this long after the profile
	// responded to it: CooldownAfter is "click", "conversion" (default)
	// or "any".
	Cooldown      time.Duration
	CooldownAfter string
}

// Offer is a compiled offer.
type Offer struct {
	ID         string
	Placements []string
	When       *rules.Rule // nil: always eligible
	Priority   float64
	Score      *rules.Rule // nil: Priority is the score
	Content    json.RawMessage
	Trusted    bool
	Start, End time.Time
	Cap        int
	CapPer     time.Duration
	Cooldown   time.Duration
	// cooldownClick and cooldownConversion say which responses start it.
	cooldownClick, cooldownConversion bool
	// content is Content as it is written into answers.
	content []byte
}

// Placement is a compiled placement.
type Placement struct {
	PlacementConfig
	// offers are the placement's offers, highest priority first.
	offers   []*Offer
	fallback *Offer
	// control is Control as a threshold on a 32-bit hash.
	control uint32
}

// Catalog is a compiled set of placements and offers.
type Catalog struct {
	placements map[string]*Placement
	offers     []*Offer // by id
	byID       map[string]*Offer
}

// Compile checks and compiles placements and offers; rules read what
// segments may read (schema). Every problem is reported, naming the offer
// or placement, and for rules the position.
func Compile(placements []PlacementConfig, offers []OfferConfig, schema *rules.Schema) (*Catalog, error) {
	c := &Catalog{placements: make(map[string]*Placement), byID: make(map[string]*Offer)}
	var errs problems
	for _, pc := range placements {
		c.addPlacement(pc, &errs)
	}
	for _, oc := range offers {
		c.addOffer(oc, schema, &errs)
	}
	c.checkPlacements(len(errs) == 0, &errs) // else a placement may miss offers that failed
	sort.Slice(c.offers, func(i, j int) bool { return c.offers[i].ID < c.offers[j].ID })
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// problems collects every problem of a configuration, so that one load
// reports them all.
type problems []error

func (ps *problems) add(format string, a ...any) { *ps = append(*ps, fmt.Errorf(format, a...)) }

// addPlacement checks a placement, fills in its defaults and adds it.
func (c *Catalog) addPlacement(pc PlacementConfig, errs *problems) {
	p := &Placement{PlacementConfig: pc}
	if err := event.ValidName(pc.Name); err != nil {
		errs.add("placement name: %w", err)
		return
	}
	if _, dup := c.placements[pc.Name]; dup {
		errs.add("placement %q is declared twice", pc.Name)
		return
	}
	if !placementKind(p, errs) {
		return
	}
	if pc.Control > 0 && p.Kind != KindOffers {
		errs.add("placement %q: control groups are for offers placements", pc.Name)
	}
	if p.Count < 1 || p.Count > 50 {
		errs.add("placement %q: count %d: want 1 to 50", pc.Name, p.Count)
	}
	if pc.Control < 0 || pc.Control > 0.5 {
		errs.add("placement %q: control %v: want a share from 0 to 0.5", pc.Name, pc.Control)
	}
	p.control = uint32(pc.Control * math.MaxUint32)
	c.placements[pc.Name] = p
}

// placementKind checks the options of p's kind and fills in their
// defaults; false for an unknown kind.
func placementKind(p *Placement, errs *problems) bool {
	if p.Kind == "" {
		p.Kind = KindOffers
	}
	switch p.Kind {
	case KindOffers:
		if p.Count == 0 {
			p.Count = 1
		}
		switch p.Arbitration {
		case "":
			p.Arbitration = ByPriority
		case ByPriority, ByScore, ByLearning:
		default:
			errs.add("placement %q: arbitration %q: want priority, score or learn", p.Name, p.Arbitration)
		}
		switch p.Reward {
		case "":
			p.Reward = "click"
		case "click", "conversion":
		default:
			errs.add("placement %q: reward %q: want click or conversion", p.Name, p.Reward)
		}
	case KindRecentlyViewed, KindTrending, KindBoughtTogether:
		if p.Count == 0 {
			p.Count = 4
		}
		if p.Arbitration != "" || p.Fallback != "" {
			errs.add("placement %q: a %s placement recommends products: arbitration and fallback are for offers", p.Name, p.Kind)
		}
	default:
		errs.add("placement %q: kind %q: want offers, recently_viewed, trending or bought_together", p.Name, p.Kind)
		return false
	}
	return true
}

// addOffer compiles an offer and adds it to its placements, which must be
// declared before.
func (c *Catalog) addOffer(oc OfferConfig, schema *rules.Schema, errs *problems) {
	o, err := compileOffer(oc, schema)
	if err != nil {
		*errs = append(*errs, err)
		return
	}
	if _, dup := c.byID[o.ID]; dup {
		errs.add("offer %q is declared twice", o.ID)
		return
	}
	c.byID[o.ID] = o
	c.offers = append(c.offers, o)
	for _, name := range o.Placements {
		p := c.placements[name]
		switch {
		case p == nil:
			errs.add("offer %q: placement %q is not declared under placements", o.ID, name)
		case p.Kind != KindOffers:
			errs.add("offer %q: placement %q recommends products (%s), it has no offers", o.ID, name, p.Kind)
		default:
			p.offers = append(p.offers, o)
		}
	}
}

// checkPlacements links each offers placement to its fallback, checks that
// it has something to show (when all offers compiled: offersOK), and sorts
// its offers by priority.
func (c *Catalog) checkPlacements(offersOK bool, errs *problems) {
	for _, p := range c.placements {
		if p.Kind != KindOffers {
			continue
		}
		if p.Fallback != "" {
			p.fallback = c.byID[p.Fallback]
			if p.fallback == nil {
				errs.add("placement %q: fallback offer %q is not declared", p.Name, p.Fallback)
			}
		}
		if offersOK && len(p.offers) == 0 && p.Fallback == "" {
			errs.add("placement %q has no offers and no fallback", p.Name)
		}
		if p.Control > 0 && p.fallback == nil {
			errs.add("placement %q: a control group needs a fallback offer to show it", p.Name)
		}
		sort.SliceStable(p.offers, func(i, j int) bool { return p.offers[i].Priority > p.offers[j].Priority })
	}
}

func compileOffer(oc OfferConfig, schema *rules.Schema) (*Offer, error) {
	if err := event.ValidName(oc.ID); err != nil {
		return nil, fmt.Errorf("offer id: %w", err)
	}
	o := &Offer{ID: oc.ID, Placements: oc.Placements, Priority: oc.Priority, Trusted: oc.Trusted, Start: oc.Start, End: oc.End,
		Cap: oc.CapImpressions, CapPer: oc.CapPer, Cooldown: oc.Cooldown}
	var errs []error
	fail := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("offer %q: "+format, append([]any{oc.ID}, a...)...))
	}
	if len(oc.Placements) == 0 {
		fail("placements is empty: name the placements it may fill")
	}
	if oc.When != "" {
		r, err := rules.Compile("offers."+oc.ID+".when", oc.When, schema, rules.TypeBool)
		if err != nil {
			errs = append(errs, err)
		}
		o.When = r
	}
	if oc.Score != "" {
		r, err := rules.Compile("offers."+oc.ID+".score", oc.Score, schema, rules.TypeNumber)
		if err != nil {
			errs = append(errs, err)
		}
		o.Score = r
	}
	if len(oc.Content) == 0 {
		o.content = []byte("null")
	} else {
		var compact []byte
		if !json.Valid(oc.Content) {
			fail("content is not valid JSON")
		} else {
			b, _ := json.Marshal(oc.Content) // compacts
			compact = b
		}
		o.Content, o.content = oc.Content, compact
	}
	if oc.Trusted && (len(oc.Content) == 0 || json.Valid(oc.Content)) {
		if err := trustedContent(oc.Content); err != nil {
			fail("trusted: %v", err)
		}
	}
	if !oc.Start.IsZero() && !oc.End.IsZero() && !oc.End.After(oc.Start) {
		fail("end %s is not after start %s", oc.End.Format(time.RFC3339), oc.Start.Format(time.RFC3339))
	}
	switch {
	case oc.CapImpressions < 0 || oc.CapImpressions > state.MaxOfferDecisions:
		fail("cap.impressions %d: want 0 (no cap) to %d", oc.CapImpressions, state.MaxOfferDecisions)
	case oc.CapImpressions > 0 && oc.CapPer <= 0:
		fail("cap.per is required with cap.impressions (e.g. 24h)")
	}
	if oc.Cooldown < 0 {
		fail("cooldown.for must not be negative")
	}
	switch oc.CooldownAfter {
	case "", "conversion":
		o.cooldownConversion = true
	case "click":
		o.cooldownClick = true
	case "any":
		o.cooldownClick, o.cooldownConversion = true, true
	default:
		fail("cooldown.after %q: want click, conversion or any", oc.CooldownAfter)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return o, nil
}

// Offers returns the offers, by id.
func (c *Catalog) Offers() []*Offer { return c.offers }

// Placements returns the placements, by name.
func (c *Catalog) Placements() []*Placement {
	out := make([]*Placement, 0, len(c.placements))
	for _, p := range c.placements {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// FeedbackIDs returns the ids whose feedback the stores count: the
// offers, and the recommendation kinds (a product placement's decisions
// name their kind as the offer).
func (c *Catalog) FeedbackIDs() map[string]bool {
	ids := make(map[string]bool, len(c.offers)+3)
	for _, o := range c.offers {
		ids[o.ID] = true
	}
	for _, p := range c.placements {
		if p.Kind != KindOffers {
			ids[p.Kind] = true
		}
	}
	return ids
}

// running reports whether the offer's schedule includes now.
func (o *Offer) running(now time.Time) bool {
	return (o.Start.IsZero() || !now.Before(o.Start)) && (o.End.IsZero() || now.Before(o.End))
}

// coolingDown reports whether the profile responded to the offer within
// its cooldown.
func (o *Offer) coolingDown(p *state.Profile, now int64) bool {
	if o.Cooldown <= 0 {
		return false
	}
	clicked, converted := p.LastResponse(o.ID)
	since := now - o.Cooldown.Milliseconds()
	return o.cooldownClick && clicked > since || o.cooldownConversion && converted > since
}

// trustedContent checks the content of an offer marked trusted: an
// object, whose html field, if any, is a string (tailor.js inserts it as
// markup).
func trustedContent(content json.RawMessage) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(content, &fields); err != nil || fields == nil {
		return errors.New("content must be an object (title, link, html, ...)")
	}
	if h, ok := fields["html"]; ok {
		var s string
		if err := json.Unmarshal(h, &s); err != nil {
			return errors.New("content.html must be a string of HTML")
		}
	}
	return nil
}
