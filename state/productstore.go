package state

import (
	"math"
	"slices"

	"github.com/tailorcdp/tailor/event"
	"github.com/valyala/fastjson"
)

// applyProducts updates the products an event names and the profile's
// viewed and bought lists. newOrder says whether an Order Completed event
// is an order not counted before, so a re-sent order counts once.
func (b *Batch) applyProducts(p *Profile, ev *event.Event, newOrder bool) {
	c := b.m.Products
	if c == nil || ev.Type != event.Track || ev.Properties == nil {
		return
	}
	t := ev.Time.UnixMilli()
	w := c.Weights[ev.Name]
	if ev.Name == event.OrderCompleted {
		if !newOrder {
			return
		}
		var items []*fastjson.Value
		if v := ev.Properties.Get("products"); v != nil && v.Type() == fastjson.TypeArray {
			items, _ = v.Array()
		}
		// Only the first OrderItems products count, so that one event
		// changes a bounded number of products (a store transaction has
		// a size limit).
		ids := make([]string, 0, min(len(items), c.OrderItems))
		for _, item := range items {
			id := ProductID(item)
			if id == "" || slices.Contains(ids, id) {
				continue
			}
			if len(ids) == c.OrderItems {
				break
			}
			ids = append(ids, id)
			prod := b.product(id)
			b.size += prod.describe(item, t)
			if w != 0 {
				prod.addPopularity(w, t, c.HalfLife)
			}
			p.bought = pushRecent(p.bought, id, c.Bought)
		}
		for _, a := range ids {
			prod := b.product(a)
			for _, other := range ids {
				if other != a {
					b.size += prod.addTogether(other, c.Together)
				}
			}
		}
		return
	}
	id := ProductID(ev.Properties)
	if id == "" {
		return
	}
	prod := b.product(id)
	b.size += prod.describe(ev.Properties, t)
	if w != 0 {
		prod.addPopularity(w, t, c.HalfLife)
	}
	if ev.Name == "Product Viewed" {
		p.viewed = pushRecent(p.viewed, id, c.RecentlyViewed)
	}
}

// product returns the batch's modifiable copy of a product.
func (b *Batch) product(id string) *Product {
	if p, ok := b.products[id]; ok {
		return p
	}
	var p *Product
	if cur := b.s.Product(id); cur != nil {
		p = cur.clone()
	} else {
		p = &Product{ID: id}
	}
	b.size += p.sizeBound()
	if b.products == nil {
		b.products = make(map[string]*Product)
	}
	b.products[id] = p
	return p
}

// Product returns what this partition knows of a product, or nil. The
// product must not be modified.
func (s *Store) Product(id string) *Product {
	s.productsMu.RLock()
	defer s.productsMu.RUnlock()
	return s.products[id]
}

// EachProduct calls fn for every product this partition knows, under a
// read lock: fn must be quick. Products are never modified once stored
// (commits replace them), so fn may keep them but must not modify them.
func (s *Store) EachProduct(fn func(*Product)) {
	s.productsMu.RLock()
	defer s.productsMu.RUnlock()
	for _, p := range s.products {
		fn(p)
	}
}

// evictProducts chooses the products to drop so that the store keeps at
// most Max after adding the batch's new ones: the least popular of a
// sample, which is cheap and keeps the popular ones.
func (b *Batch) evictProducts(now int64) []string {
	c := b.m.Products
	if c == nil || c.Max <= 0 {
		return nil
	}
	b.s.productsMu.RLock()
	defer b.s.productsMu.RUnlock()
	added := 0
	for id := range b.products {
		if _, ok := b.s.products[id]; !ok {
			added++
		}
	}
	excess := len(b.s.products) + added - c.Max
	var out []string
	for excess > 0 {
		weakest, lowest, sampled := "", math.Inf(1), 0
		for id, p := range b.s.products { // map order is random: a sample
			if _, touched := b.products[id]; touched || slices.Contains(out, id) {
				continue
			}
			if s := p.popularity.decayed(now, c.HalfLife); s < lowest {
				weakest, lowest = id, s
			}
			if sampled++; sampled == 8 {
				break
			}
		}
		if weakest == "" {
			break // everything is in the batch: let it grow past Max once
		}
		out = append(out, weakest)
		excess--
	}
	return out
}
