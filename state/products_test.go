package state

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/event"
)

func TestProducts(t *testing.T) {
	dir := t.TempDir()
	o := testOptions()
	o.Products = DefaultProducts()
	o.Products.Max = 5
	s := openWith(t, dir, o)
	p := event.NewParser(event.DefaultLimits())
	n := 0
	apply := func(b *Batch, user, name, props string) {
		t.Helper()
		n++
		ev := parse(t, p, fmt.Sprintf(`{"type": "track", "userId": %q, "event": %q, "messageId": "m%d", "timestamp": "2026-05-01T10:00:00Z", "properties": %s}`, user, name, n, props))
		if _, err := b.Apply(&ev); err != nil {
			t.Fatal(err)
		}
	}
	b := s.Begin()
	apply(b, "u1", "Product Viewed", `{"product_id": "p1", "name": "Red shoe", "category": "shoes", "price": 50}`)
	apply(b, "u1", "Product Viewed", `{"product_id": "p2", "name": "Blue shoe", "category": "shoes"}`)
	apply(b, "u1", "Product Viewed", `{"product_id": "p1"}`)
	order := `{"order_id": "o1", "products": [{"product_id": "p1", "price": 50}, {"product_id": "p3", "name": "Socks"}, {"sku": 4}]}`
	apply(b, "u1", "Order Completed", order)
	apply(b, "u1", "Order Completed", order) // the same order again: counted once
	apply(b, "u2", "Order Completed", `{"order_id": "o2", "products": [{"product_id": "p1"}, {"product_id": "p3"}]}`)
	if err := b.Commit(1); err != nil {
		t.Fatal(err)
	}
	check := func(s *Store) {
		t.Helper()
		p1 := s.Product("p1")
		if p1 == nil || p1.Name != "Red shoe" || p1.Category != "shoes" || p1.Price != 50 {
			t.Fatalf("p1 is %+v", p1)
		}
		with := map[string]uint64{}
		for _, tg := range p1.BoughtWith() {
			with[tg.ID] = tg.Count
		}
		if fmt.Sprint(with) != "map[4:1 p3:2]" {
			t.Errorf("bought with p1: %v, want p3 twice and 4 once", with)
		}
		now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
		// p1: two views (1 each) and two orders (5 each).
		if got := p1.Popularity(o.Products, now); got != 12 {
			t.Errorf("p1 popularity %v, want 12", got)
		}
		if got := p1.Popularity(o.Products, now.Add(7*24*time.Hour)); got != 6 {
			t.Errorf("p1 popularity a half-life later %v, want 6", got)
		}
		prof, err := s.Profile("u1")
		if err != nil {
			t.Fatal(err)
		}
		if got := prof.RecentlyViewed(); !slices.Equal(got, []string{"p1", "p2"}) {
			t.Errorf("recently viewed %v", got)
		}
		if !prof.Bought("p3") || !prof.Bought("4") || prof.Bought("p2") {
			t.Error("bought products wrong")
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openWith(t, dir, o)
	defer s.Close()
	check(s)

	// Past Max, the least popular products make room.
	b = s.Begin()
	for i := range 3 {
		apply(b, "u3", "Product Viewed", fmt.Sprintf(`{"product_id": "new%d"}`, i))
	}
	if err := b.Commit(2); err != nil {
		t.Fatal(err)
	}
	count := 0
	s.EachProduct(func(*Product) { count++ })
	if count != 5 {
		t.Errorf("%d products kept, want Max = 5", count)
	}
	if s.Product("p1") == nil {
		t.Error("the most popular product was evicted")
	}
}

func TestSpaceSavingKeepsHeavyHitters(t *testing.T) {
	p := &Product{ID: "a"}
	for i := range 10000 {
		id := fmt.Sprintf("rare%d", i)
		if i%4 == 0 {
			id = "frequent"
		}
		p.addTogether(id, 8)
	}
	if len(p.together) != 8 {
		t.Fatalf("%d counters, want 8", len(p.together))
	}
	for _, c := range p.together {
		if c.ID == "frequent" && c.Count >= 2500 {
			return
		}
	}
	t.Errorf("the frequent item is lost: %v", p.together)
}
