package decide

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fastjson"

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/internal/jsonenc"
	"github.com/tailorcdp/tailor/state"
)

// Trending lists keep this many products overall and per category.
const (
	trendingOverall     = 200
	trendingPerCategory = 50
)

type scoredProduct struct {
	id    string
	score float64
	info  *state.Product // the latest description, or nil
}

// trendingSnapshot is the products' popularity summed over partitions at
// one instant, best first.
type trendingSnapshot struct {
	all        []scoredProduct
	byCategory map[string][]scoredProduct
}

// recommend answers a product placement. Without a profile (or consent)
// it answers what needs none: trending overall, and bought_together for
// the product in the request's context.
func (d *Decider) recommend(dst []byte, w *worker, pl *Placement, p *state.Profile, personal bool, ctx *fastjson.Value, now time.Time, nowMs int64) []byte {
	c := w.c
	current := state.ProductID(ctx) // the product the page shows
	exclude := func(id string) bool {
		return id == current || pl.ExcludeBought && personal && p.Bought(id)
	}
	w.ids = w.ids[:0]
	switch pl.Kind {
	case KindRecentlyViewed:
		if personal {
			for _, id := range p.RecentlyViewed() {
				if !exclude(id) && len(w.ids) < pl.Count {
					w.ids = append(w.ids, scoredProduct{id: id})
				}
			}
		}
	case KindTrending:
		// The visitor's top category first (by_interest), then overall.
		t := d.trendingNow(now)
		lists := [2][]scoredProduct{nil, t.all}
		if pl.ByInterest && personal {
			if top, ok := p.TopInterest(c.cfg.Interests, now); ok {
				lists[0] = t.byCategory[top]
			}
		}
		for _, list := range lists {
			for _, sp := range list {
				if len(w.ids) == pl.Count {
					break
				}
				if !exclude(sp.id) && !slices.ContainsFunc(w.ids, func(x scoredProduct) bool { return x.id == sp.id }) {
					w.ids = append(w.ids, sp)
				}
			}
		}
	case KindBoughtTogether:
		anchor := current
		if anchor == "" && personal {
			if viewed := p.RecentlyViewed(); len(viewed) > 0 {
				anchor = viewed[0]
			}
		}
		if anchor != "" {
			w.ids = d.boughtWith(w, anchor, pl.Count, func(id string) bool { return id == anchor || exclude(id) })
		}
	}
	dst = append(dst, `{"kind":"`...)
	dst = append(dst, pl.Kind...)
	dst = append(dst, `","decision_id":"`...)
	dst = event.Decision{Placement: pl.Name, Offer: pl.Kind, At: nowMs, Nonce: rand.Uint32()}.AppendID(dst)
	dst = append(dst, `","products":[`...)
	for i, sp := range w.ids {
		if i > 0 {
			dst = append(dst, ',')
		}
		info := sp.info
		if info == nil {
			info = d.describe(sp.id)
		}
		dst = appendProduct(dst, sp, info)
	}
	return append(dst, "]}"...)
}

// boughtWith returns the n products bought most often with anchor, summed
// over partitions, leaving out those skip rejects. It ranks by the counts
// each partition is sure of, so that a rare product that just took over a
// counter does not outrank frequent ones.
func (d *Decider) boughtWith(w *worker, anchor string, n int, skip func(string) bool) []scoredProduct {
	if w.scores == nil {
		w.scores = make(map[string]float64)
	}
	clear(w.scores)
	for _, prod := range d.src.Products(anchor) {
		for _, t := range prod.BoughtWith() {
			w.scores[t.ID] += float64(t.AtLeast())
		}
	}
	out := w.ids[:0]
	for id, s := range w.scores {
		if !skip(id) {
			out = append(out, scoredProduct{id: id, score: s})
		}
	}
	sortByScore(out)
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// describe returns the latest description of a product over partitions.
func (d *Decider) describe(id string) *state.Product {
	var best *state.Product
	for _, p := range d.src.Products(id) {
		if best == nil || p.Seen > best.Seen {
			best = p
		}
	}
	return best
}

// trendingNow returns the trending products, at most StatsMaxAge old.
func (d *Decider) trendingNow(now time.Time) *trendingSnapshot {
	c := d.cur.Load()
	return d.trending.get(now.UnixMilli(), c.cfg.StatsMaxAge.Milliseconds(), func() *trendingSnapshot { return d.buildTrending(now) })
}

// buildTrending sums the products' popularity at now over partitions.
func (d *Decider) buildTrending(now time.Time) *trendingSnapshot {
	c := d.cur.Load()
	sums := make(map[string]*scoredProduct)
	d.src.EachProduct(func(p *state.Product) {
		sp := sums[p.ID]
		if sp == nil {
			sp = &scoredProduct{id: p.ID}
			sums[p.ID] = sp
		}
		if c.cfg.Products != nil {
			sp.score += p.Popularity(c.cfg.Products, now)
		}
		if sp.info == nil || p.Seen > sp.info.Seen {
			sp.info = p
		}
	})
	all := make([]scoredProduct, 0, len(sums))
	for _, sp := range sums {
		all = append(all, *sp)
	}
	sortByScore(all)
	t := &trendingSnapshot{byCategory: make(map[string][]scoredProduct)}
	for _, sp := range all {
		if c := sp.info.Category; c != "" && len(t.byCategory[c]) < trendingPerCategory {
			t.byCategory[c] = append(t.byCategory[c], sp)
		}
	}
	t.all = all[:min(len(all), trendingOverall)]
	return t
}

// sortByScore orders products best first, ties by id (stable answers).
func sortByScore(list []scoredProduct) {
	slices.SortFunc(list, func(a, b scoredProduct) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
}

func appendProduct(dst []byte, sp scoredProduct, info *state.Product) []byte {
	dst = append(dst, `{"product_id":`...)
	dst = jsonenc.AppendString(dst, sp.id)
	if info != nil {
		for _, f := range [...]struct{ name, value string }{
			{"name", info.Name}, {"category", info.Category}, {"url", info.URL}, {"image_url", info.ImageURL},
		} {
			if f.value != "" {
				dst = append(dst, `,"`...)
				dst = append(dst, f.name...)
				dst = append(dst, `":`...)
				dst = jsonenc.AppendString(dst, f.value)
			}
		}
		if info.Price != 0 && !math.IsInf(info.Price, 0) && !math.IsNaN(info.Price) {
			dst = append(dst, `,"price":`...)
			dst = strconv.AppendFloat(dst, info.Price, 'f', -1, 64)
		}
	}
	if sp.score != 0 && !math.IsInf(sp.score, 0) && !math.IsNaN(sp.score) {
		dst = append(dst, `,"score":`...)
		dst = strconv.AppendFloat(dst, sp.score, 'g', 6, 64)
	}
	return append(dst, '}')
}
