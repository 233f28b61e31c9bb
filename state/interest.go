package state

import (
	"math"
	"sort"
	"time"

	"github.com/valyala/fastjson"

	"github.com/tailorcdp/tailor/event"
)

// Interests configures the per-category affinity kept in each profile:
// the psychographic signal of what a customer looks at and buys.
type Interests struct {
	// Weights says how much each track event adds to the affinity of the
	// category it is about (events not listed add nothing).
	Weights map[string]float64
	// Property is the event property naming the category; order events
	// also count the categories of their products[].
	Property string
	// HalfLife is how fast an interest fades: its score halves in this time.
	HalfLife time.Duration
	// Max bounds the categories a profile keeps (the strongest).
	Max int
}

// DefaultInterests weighs product views, cart adds and orders.
func DefaultInterests() *Interests {
	return &Interests{
		Weights:  map[string]float64{"Product Viewed": 1, "Product Added": 3, "Order Completed": 5},
		Property: "category",
		HalfLife: 30 * 24 * time.Hour,
		Max:      32,
	}
}

// interest is one category's score, decayed to time at (Unix ms).
type interest struct {
	score float64
	at    int64
}

// decayed returns the score at time t.
func (i interest) decayed(t int64, halfLife time.Duration) float64 {
	return i.score * math.Exp2(-float64(t-i.at)/float64(halfLife.Milliseconds()))
}

// apply adds the weight of ev to the categories it is about.
func (c *Interests) apply(p *Profile, ev *event.Event) {
	if c == nil || ev.Type != event.Track || ev.Properties == nil {
		return
	}
	w, ok := c.Weights[ev.Name]
	if !ok || w == 0 {
		return
	}
	t := ev.Time.UnixMilli()
	add := func(v *fastjson.Value) {
		if v == nil || v.Type() != fastjson.TypeString {
			return
		}
		p.addInterest(string(v.GetStringBytes()), w, t, c)
	}
	add(ev.Properties.Get(c.Property))
	if products := ev.Properties.Get("products"); products != nil && products.Type() == fastjson.TypeArray {
		items, _ := products.Array()
		for _, item := range items {
			add(item.Get(c.Property))
		}
	}
}

func (p *Profile) addInterest(category string, weight float64, t int64, c *Interests) {
	if category == "" {
		return
	}
	if p.interests == nil {
		p.interests = make(map[string]interest)
	}
	cur, ok := p.interests[category]
	switch {
	case !ok:
		cur = interest{score: weight, at: t}
	case t >= cur.at:
		cur = interest{score: cur.decayed(t, c.HalfLife) + weight, at: t}
	default: // a late event: its weight, decayed to the newer time
		cur.score += interest{score: weight, at: t}.decayed(cur.at, c.HalfLife)
	}
	p.interests[category] = cur
	if p.interestSum.halfLife == c.HalfLife {
		p.interestSum = p.interestSum.add(weight, t)
	}
	if c.Max > 0 && len(p.interests) > c.Max {
		// Drop the weakest, compared at the newest time.
		weakest, lowest := "", math.Inf(1)
		for name, i := range p.interests {
			if s := i.decayed(t, c.HalfLife); s < lowest {
				weakest, lowest = name, s
			}
		}
		delete(p.interests, weakest)
		p.interestSum = interestSum{} // worked out again when next read
	}
}

// interestSum is the sum of a profile's interests decayed to at (the
// newest time counted), under halfLife (0: not worked out). Every score
// decays at the same rate, so a category's share of the sum is the same
// at any instant: Affinity needs the sum at one instant only, kept up to
// date as interests are added instead of summed on every read.
type interestSum struct {
	score    float64
	at       int64
	halfLife time.Duration
}

// add returns the sum with score at time at added.
func (s interestSum) add(score float64, at int64) interestSum {
	switch {
	case s.score == 0:
		s.score, s.at = score, at
	case at >= s.at:
		s.score, s.at = interest{score: s.score, at: s.at}.decayed(at, s.halfLife)+score, at
	default:
		s.score += interest{score: score, at: at}.decayed(s.at, s.halfLife)
	}
	return s
}

// interestTotal returns the sum of p's interests under c's half-life.
func (p *Profile) interestTotal(c *Interests) interestSum {
	if p.interestSum.halfLife != c.HalfLife {
		sum := interestSum{halfLife: c.HalfLife}
		for _, i := range p.interests {
			sum = sum.add(i.score, i.at)
		}
		p.interestSum = sum
	}
	return p.interestSum
}

// Affinity is one category's share of a profile's interests.
type Affinity struct {
	Category string  `json:"category"`
	Affinity float64 `json:"affinity"`
}

// Affinities returns the profile's interests at now, strongest first: each
// category's decayed score as a share of all of them (so they sum to 1).
func (p *Profile) Affinities(c *Interests, now time.Time) []Affinity {
	if c == nil || len(p.interests) == 0 {
		return nil
	}
	t := now.UnixMilli()
	out := make([]Affinity, 0, len(p.interests))
	total := 0.0
	for name, i := range p.interests {
		s := i.decayed(t, c.HalfLife)
		total += s
		out = append(out, Affinity{Category: name, Affinity: s})
	}
	if total <= 0 || math.IsInf(total, 0) || math.IsNaN(total) {
		return nil
	}
	for i := range out {
		out[i].Affinity /= total
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Affinity != out[j].Affinity {
			return out[i].Affinity > out[j].Affinity
		}
		return out[i].Category < out[j].Category
	})
	return out
}

// Affinity returns one category's share of the profile's interests, the
// same at every instant (they all decay at the same rate).
func (p *Profile) Affinity(c *Interests, category string) float64 {
	if c == nil {
		return 0
	}
	i, ok := p.interests[category]
	if !ok {
		return 0
	}
	total := p.interestTotal(c)
	if total.score <= 0 {
		return 0
	}
	return i.decayed(total.at, c.HalfLife) / total.score
}

// TopInterest returns the profile's strongest category at now.
func (p *Profile) TopInterest(c *Interests, now time.Time) (string, bool) {
	if c == nil || len(p.interests) == 0 {
		return "", false
	}
	t := now.UnixMilli()
	best, score := "", 0.0
	for name, i := range p.interests {
		if s := i.decayed(t, c.HalfLife); s > score || s == score && name < best {
			best, score = name, s
		}
	}
	return best, best != ""
}
