package state

import (
	"math"
	"sort"
	"time"

	"github.com/tailorcdp/tailor/money"
)

// RFM: recency (days since the last order), frequency (orders) and monetary
// value (revenue) of every customer with an order, and 1-5 scores from the
// quintiles of the whole population. The population is kept as exact
// histograms per partition store (of last-order days, order counts and
// revenue in 0.1% bins), updated in the same transaction as the profiles:
// they merge by adding, add and remove exactly, and give the same quintiles
// wherever they are merged.

const (
	rfmDay        = 24 * time.Hour
	monetaryRatio = 1.001 // revenue bins are 0.1% wide
)

// rfmPoint is where a profile sits in the population histograms.
type rfmPoint struct {
	day, orders, money int64 // last order day; orders; revenue bin
	ok                 bool  // the profile has an order
}

// rfmPointAt returns where the profile belongs in the histograms at now
// (Unix ms): with a horizon, only the orders of its last horizon count,
// and a profile without any is not counted; without one (0), all of them.
// A profile written before the order log was kept falls back to its
// all-time values.
func (p *Profile) rfmPointAt(now int64, horizon time.Duration) rfmPoint {
	orders, revenue, ok := p.rfmValues(now, horizon)
	if !ok {
		return rfmPoint{}
	}
	return rfmPoint{
		day:    floorDiv(p.LastOrderAt, rfmDay.Milliseconds()),
		orders: int64(orders),
		money:  moneyBin(revenue.Float64()),
		ok:     true,
	}
}

// rfmValues returns frequency and monetary value at now (Unix ms): over
// the horizon, or all time for 0 or a profile written before the order log
// was kept; ok is false without orders (in the horizon).
func (p *Profile) rfmValues(now int64, horizon time.Duration) (orders float64, revenue money.Amount, ok bool) {
	if p.Orders == 0 {
		return 0, money.Amount{}, false
	}
	if horizon <= 0 || len(p.orderLog) == 0 {
		return float64(p.Orders), p.Revenue, true
	}
	cut := now - horizon.Milliseconds()
	for _, o := range p.orderLog {
		if o.at > cut {
			orders++
			revenue = revenue.Add(o.amount)
		}
	}
	return orders, revenue, orders > 0
}

// orderExit returns when the oldest order still inside the horizon at now
// (Unix ms) leaves it, plus a millisecond; 0 when none will.
func (p *Profile) orderExit(now int64, horizon time.Duration) int64 {
	if horizon <= 0 {
		return 0
	}
	for _, o := range p.orderLog {
		if exit := o.at + horizon.Milliseconds(); exit >= now {
			return exit + 1
		}
	}
	return 0
}

// moneyBin maps revenue to its 0.1% bin; revenue of 1 or less (refunds can
// leave it at or below zero) shares bin 0.
func moneyBin(v float64) int64 {
	if v <= 1 {
		return 0
	}
	return int64(math.Ceil(math.Log(v) / math.Log(monetaryRatio)))
}

// moneyOfBin is the upper edge of a revenue bin.
func moneyOfBin(b int64) float64 {
	if b <= 0 {
		return 1
	}
	return math.Pow(monetaryRatio, float64(b))
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// Population is the histograms of one or more partitions.
type Population struct {
	Days, Orders, Money map[int64]int64 // bin -> profiles
}

// NewPopulation returns an empty population, ready to Add to.
func NewPopulation() Population {
	return Population{Days: map[int64]int64{}, Orders: map[int64]int64{}, Money: map[int64]int64{}}
}

func (pop Population) move(from, to rfmPoint) {
	if from == to {
		return
	}
	if from.ok {
		pop.Days[from.day]--
		pop.Orders[from.orders]--
		pop.Money[from.money]--
	}
	if to.ok {
		pop.Days[to.day]++
		pop.Orders[to.orders]++
		pop.Money[to.money]++
	}
}

// Add adds another population's counts to this one.
func (pop Population) Add(other Population) {
	for _, pair := range [3][2]map[int64]int64{{pop.Days, other.Days}, {pop.Orders, other.Orders}, {pop.Money, other.Money}} {
		for bin, n := range pair[1] {
			pair[0][bin] += n
		}
	}
}

// RFMQuintiles are the population's quintile boundaries: the lower 20%,
// 40%, 60% and 80% quantiles of last-order day, orders and revenue, and
// the horizon over which orders count (0: all time).
type RFMQuintiles struct {
	Days, Orders, Money [4]float64
	Horizon             time.Duration
	// ok says, for days, orders and money, whether the population has
	// quintiles of it: at least MinRFMValues distinct values.
	ok [3]bool
}

// MinRFMValues is how many distinct values (last-order days, order counts,
// revenue bins) the customers must show before a score is given on them:
// with fewer, quintiles cannot put customers in five groups, and the
// scores would mislead (the first customer of a store, alone with its
// values, scored 1 1 1 and landed in "lost"). Below it the score is
// absent: rules reading it see no value, the RFM segments hold nobody on
// it, and the profile shows none.
const MinRFMValues = 5

// Quintiles computes the boundaries.
func (pop Population) Quintiles() RFMQuintiles {
	q := RFMQuintiles{}
	var n int64
	for _, c := range pop.Orders {
		n += c
	}
	if n == 0 {
		return q
	}
	q.Days, q.ok[0] = quantiles(pop.Days, n, func(b int64) float64 { return float64(b) })
	q.Orders, q.ok[1] = quantiles(pop.Orders, n, func(b int64) float64 { return float64(b) })
	q.Money, q.ok[2] = quantiles(pop.Money, n, moneyOfBin)
	return q
}

// quantiles returns, for p = 0.2, 0.4, 0.6, 0.8, the smallest value whose
// cumulative count reaches p of n, and whether the histogram has at least
// MinRFMValues values to take them from.
func quantiles(h map[int64]int64, n int64, value func(int64) float64) (_ [4]float64, ok bool) {
	bins := make([]int64, 0, len(h))
	for b, c := range h {
		if c > 0 {
			bins = append(bins, b)
		}
	}
	if len(bins) < MinRFMValues {
		return [4]float64{}, false
	}
	sort.Slice(bins, func(i, j int) bool { return bins[i] < bins[j] })
	var out [4]float64
	var cum int64
	k := 0
	for _, b := range bins {
		cum += h[b]
		for k < 4 && float64(cum) >= float64(n)*float64(k+1)/5 {
			out[k] = value(b)
			k++
		}
	}
	return out, true
}

// score is 1 plus the number of boundaries v is above: 5 for the top fifth.
func score(v float64, q [4]float64) float64 {
	s := 1.0
	for _, b := range q {
		if v > b {
			s++
		}
	}
	return s
}

// RFM returns a profile's RFM field (rules.RFMRecencyScore and so on) at
// now; ok is false for a profile without orders (in the horizon), and for
// a score the population has no quintiles for (MinRFMValues).
func (p *Profile) RFM(field int, q RFMQuintiles, now time.Time) (float64, bool) {
	pt := p.rfmPointAt(now.UnixMilli(), q.Horizon)
	if !pt.ok {
		return 0, false
	}
	switch field {
	case 0: // r: more recent is better
		return score(float64(pt.day), q.Days), q.ok[0]
	case 1:
		return score(float64(pt.orders), q.Orders), q.ok[1]
	case 2:
		return score(moneyOfBin(pt.money), q.Money), q.ok[2]
	case 3: // recency in whole days
		return float64(floorDiv(now.UnixMilli()-p.LastOrderAt, rfmDay.Milliseconds())), true
	case 4, 5:
		orders, revenue, _ := p.rfmValues(now.UnixMilli(), q.Horizon)
		if field == 4 {
			return orders, true
		}
		return revenue.Float64(), true
	}
	return 0, false
}

// rfmScores are the 1-5 scores r, f and m that a profile's segments were
// last evaluated on; 0 for a score absent (no orders, or no quintiles).
type rfmScores [3]uint8

// scoresAt returns the profile's scores at now under q.
func (p *Profile) scoresAt(q RFMQuintiles, now time.Time) rfmScores {
	var s rfmScores
	for i := range s {
		if v, ok := p.RFM(i, q, now); ok {
			s[i] = uint8(v)
		}
	}
	return s
}

// rescore works out the profile's scores at now under q, which its
// segments reading them are about to be evaluated on, records them for
// the profile's view, and reports whether they changed: the segments
// reading them must then be evaluated (Inputs.Scores), so that the
// scores a profile shows and its RFM segments always agree.
func (p *Profile) rescore(q RFMQuintiles, now time.Time) bool {
	s := p.scoresAt(q, now)
	if p.rfmScored && s == p.rfmScores || !p.rfmScored && p.Orders == 0 {
		return false // no change; or no orders yet, nothing to show
	}
	p.rfmScores, p.rfmScored = s, true
	return true
}

// encodeScores packs recorded scores in a varint: 1<<12 | m<<8 | f<<4 | r.
func (s rfmScores) encode() uint64 {
	return 1<<12 | uint64(s[2])<<8 | uint64(s[1])<<4 | uint64(s[0])
}

// decodeScores reads what encode wrote; a score past 5 reads as absent.
func decodeScores(v uint64) rfmScores {
	var s rfmScores
	for i := range s {
		if x := uint8(v >> (4 * i) & 0xf); x <= 5 {
			s[i] = x
		}
	}
	return s
}
