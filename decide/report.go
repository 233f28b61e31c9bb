package decide

import (
	"slices"

	"github.com/tailorcdp/tailor/state"
)

// Rates are feedback counts with the rates they give.
type Rates struct {
	state.OfferCounts
	// CTR is clicks per impression, ConversionRate conversions per
	// impression; 0 without impressions.
	CTR            float64 `json:"ctr"`
	ConversionRate float64 `json:"conversion_rate"`
}

func rates(c state.OfferCounts) Rates {
	r := Rates{OfferCounts: c}
	if c.Impressions > 0 {
		r.CTR = float64(c.Clicks) / float64(c.Impressions)
		r.ConversionRate = float64(c.Conversions) / float64(c.Impressions)
	}
	return r
}

// Lift compares a treatment with its placement's control group: the
// relative difference of the rates (0.25 is 25% better). Nil when the
// control group has no impressions or no responses of that kind.
type Lift struct {
	CTR            *float64 `json:"ctr"`
	ConversionRate *float64 `json:"conversion_rate"`
}

func lift(treatment, control Rates) *Lift {
	if control.Impressions == 0 {
		return nil
	}
	l := &Lift{}
	if control.CTR > 0 {
		v := treatment.CTR/control.CTR - 1
		l.CTR = &v
	}
	if control.ConversionRate > 0 {
		v := treatment.ConversionRate/control.ConversionRate - 1
		l.ConversionRate = &v
	}
	return l
}

// OfferReport is one offer's results in one placement.
type OfferReport struct {
	Offer     string `json:"offer"`
	Placement string `json:"placement"`
	Rates
	// Lift is against the placement's control group (nil without one).
	Lift *Lift `json:"lift,omitempty"`
}

// PlacementReport sums a placement's offers per arm.
type PlacementReport struct {
	Placement   string `json:"placement"`
	Kind        string `json:"kind"`
	Arbitration string `json:"arbitration,omitempty"`
	Treatment   Rates  `json:"treatment"`
	// Control is what the control group (shown the fallback) did.
	Control *Rates `json:"control,omitempty"`
	Lift    *Lift  `json:"lift,omitempty"`
}

// Report is the answer of GET /v1/offers.
type Report struct {
	Offers     []OfferReport     `json:"offers"`
	Placements []PlacementReport `json:"placements"`
}

// Report returns the offers' statistics now (summed over the partitions
// this instance holds), with their lift against control groups.
func (d *Decider) Report() Report {
	c := d.cur.Load()
	counts := d.src.OfferStats()
	var r Report
	for _, pl := range c.cfg.Catalog.Placements() {
		pr := PlacementReport{Placement: pl.Name, Kind: pl.Kind}
		if pl.Kind == KindOffers {
			pr.Arbitration = pl.Arbitration
		}
		var treatment, control state.OfferCounts
		for k, c := range counts {
			if k.Placement != pl.Name {
				continue
			}
			if k.Arm == state.Control {
				control.Add(c)
			} else {
				treatment.Add(c)
			}
		}
		pr.Treatment = rates(treatment)
		if pl.Control > 0 {
			c := rates(control)
			pr.Control = &c
			pr.Lift = lift(pr.Treatment, c)
		}
		offers := pl.offers
		if pl.fallback != nil && !slices.Contains(offers, pl.fallback) {
			offers = append(offers[:len(offers):len(offers)], pl.fallback)
		}
		for _, o := range offers {
			or := OfferReport{Offer: o.ID, Placement: pl.Name, Rates: rates(counts[state.OfferStatKey{Offer: o.ID, Placement: pl.Name}])}
			if pr.Control != nil {
				or.Lift = lift(or.Rates, *pr.Control)
			}
			r.Offers = append(r.Offers, or)
		}
		if pl.Kind != KindOffers {
			r.Offers = append(r.Offers, OfferReport{Offer: pl.Kind, Placement: pl.Name, Rates: pr.Treatment})
		}
		r.Placements = append(r.Placements, pr)
	}
	return r
}
