package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/money"
)

// TestLinkAndMerge follows a profile linked to another through the three
// steps the processor takes: the event asking for the link, the linked
// profile's partition taking it out, and the other partition merging it.
func TestLinkAndMerge(t *testing.T) {
	aggs, segs := compileModel(t, []AggregateConfig{
		{Name: "views_1h", Event: "Product Viewed", Func: "count", Window: time.Hour},
		{Name: "categories", Event: "Product Viewed", Func: "distinct", Property: "category"},
	}, []SegmentConfig{
		{"browser", `views_1h >= 3`},
		{"buyer", `rfm.frequency > 0`},
	}, 0)
	clock := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	o := testOptions()
	o.Aggregates, o.Segments, o.Interests, o.Now = aggs, segs, DefaultInterests(), func() time.Time { return clock }
	s := openWith(t, t.TempDir(), o)
	defer s.Close()
	h := &batches{t: t, s: s, p: event.NewParser(event.DefaultLimits()), clock: clock}
	run, apply := h.run, h.apply
	run(func(b *Batch) {
		for _, c := range []string{"shoes", "bags"} {
			apply(b, `"anonymousId": "a1"`, `"type": "track", "event": "Product Viewed", "properties": {"category": "`+c+`"}`)
		}
		apply(b, `"anonymousId": "a1"`, `"type": "track", "event": "Order Completed", "properties": {"order_id": "o1", "total": 10}`)
		apply(b, `"userId": "u1"`, `"type": "track", "event": "Product Viewed", "properties": {"category": "hats"}`)
		apply(b, `"userId": "u1"`, `"type": "identify", "traits": {"name": "Ann"}`)
	})
	if got := s.SegmentSizes(); got["buyer"] != 1 || got["browser"] != 0 {
		t.Fatalf("sizes before the link: %v", got)
	}

	// An event with both ids asks for the link, once.
	var links []Link
	run(func(b *Batch) {
		apply(b, `"userId": "u1", "anonymousId": "a1"`, `"type": "page", "name": "Home"`)
		apply(b, `"userId": "u1", "anonymousId": "a1"`, `"type": "page", "name": "Cart"`)
		links = b.Links()
	})
	if !slices.Equal(links, []Link{{From: "a1", To: "u1"}}) {
		t.Fatalf("links %v, want a1 -> u1 once", links)
	}

	// The linked profile's partition takes it out.
	var moved []byte
	changes := run(func(b *Batch) {
		var err error
		if moved, err = b.Link("a1", "u1"); err != nil || moved == nil {
			t.Fatalf("link: %v, moved %d bytes", err, len(moved))
		}
		if to, _ := b.Resolve("a1"); to != "u1" {
			t.Errorf("a1 resolves to %q in the linking batch", to)
		}
	})
	if want := "a1 false buyer"; strings.Join(changes, ", ") != want {
		t.Errorf("changes of the link: %q, want %q", changes, want)
	}
	if _, err := s.Profile("a1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a1's profile after the link: %v", err)
	}
	if to, ok, err := s.Alias("a1"); to != "u1" || !ok || err != nil {
		t.Errorf("alias of a1: %q %v %v", to, ok, err)
	}
	if got := s.SegmentSizes(); got["buyer"] != 0 || countProfiles(s.Population()) != 0 {
		t.Errorf("after the link: sizes %v, population %v", got, s.Population())
	}
	// Linked again (an anonymous id seen again past the profile's bound):
	// nothing left to move.
	run(func(b *Batch) {
		if again, err := b.Link("a1", "u1"); again != nil || err != nil {
			t.Errorf("second link moved %d bytes, %v", len(again), err)
		}
	})

	// The other partition merges it.
	changes = run(func(b *Batch) {
		moved, err := DecodeProfile(moved)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Merge("u1", moved); err != nil {
			t.Fatal(err)
		}
	})
	if want := "u1 true browser, u1 true buyer"; strings.Join(changes, ", ") != want {
		t.Errorf("changes of the merge: %q, want %q", changes, want)
	}
	u, err := s.Profile("u1")
	if err != nil {
		t.Fatal(err)
	}
	views, _ := u.AggregateValue(aggs.List()[1], clock)
	categories, _ := u.AggregateValue(aggs.List()[0], clock)
	if u.EventCounts["Product Viewed"] != 3 || u.Orders != 1 || u.Revenue != money.Units(10) || views != 3 || categories != 3 ||
		!slices.Contains(u.AnonymousIDs, "a1") || string(u.Traits["name"].Value) != `"Ann"` || len(u.interests) != 3 || u.TypeCounts[event.Track] != 4 {
		t.Errorf("merged profile: views %v (aggregate %v), categories %v, orders %d, revenue %v, anonymous ids %v, traits %v, interests %v, calls %v",
			u.EventCounts["Product Viewed"], views, categories, u.Orders, u.Revenue, u.AnonymousIDs, u.Traits, u.interests, u.TypeCounts)
	}
	if got := s.SegmentSizes(); got["buyer"] != 1 || got["browser"] != 1 || countProfiles(s.Population()) != 1 {
		t.Errorf("after the merge: sizes %v, population %v", got, s.Population())
	}
}

// batches applies the identity tests' events to a store, a batch at a
// time, at a fixed instant.
type batches struct {
	t      *testing.T
	s      *Store
	p      *event.Parser
	clock  time.Time
	offset int64
}

// merge merges moved, the profile a Link returned, into the profile of
// into, in a batch of its own (as the partition holding into does).
func (h *batches) merge(into string, moved []byte) {
	h.t.Helper()
	h.run(func(b *Batch) {
		p, err := DecodeProfile(moved)
		if err != nil {
			h.t.Fatal(err)
		}
		if err := b.Merge(into, p); err != nil {
			h.t.Fatal(err)
		}
	})
}

// run commits a batch doing do, and returns its segment changes.
func (h *batches) run(do func(b *Batch)) []string {
	h.t.Helper()
	b := h.s.Begin()
	do(b)
	var changes []string
	for _, c := range b.Changes() {
		changes = append(changes, fmt.Sprintf("%s %v %s", c.Key, c.Entered, c.Segment))
	}
	h.offset++
	if err := b.Commit(h.offset); err != nil {
		h.t.Fatal(err)
	}
	return changes
}

// apply applies the event of ids and body to b.
func (h *batches) apply(b *Batch, ids, body string) {
	h.t.Helper()
	ev, err := h.p.Parse([]byte(`{`+ids+`, "timestamp": "`+h.clock.Format(time.RFC3339)+`", `+body+`}`), 0, h.clock)
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := b.Apply(&ev); err != nil {
		h.t.Fatal(err)
	}
}

// TestMergeCountsOrdersOnce: the order ids counted for a linked profile
// move with it, so an order both profiles counted (a web SDK and a server
// reporting it under either id) counts once, and a later copy under
// either id does not count. Ids counted before amounts were kept move
// too, but one both profiles counted still counts twice.
func TestMergeCountsOrdersOnce(t *testing.T) {
	o := testOptions()
	s := openWith(t, t.TempDir(), o)
	defer s.Close()
	h := &batches{t: t, s: s, p: event.NewParser(event.DefaultLimits()), clock: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	order := func(b *Batch, ids, id string, total float64) {
		h.apply(b, ids, fmt.Sprintf(`"type": "track", "event": "Order Completed", "properties": {"order_id": %q, "total": %v}`, id, total))
	}
	h.run(func(b *Batch) {
		for _, o := range []struct {
			ids, id string
			total   float64
		}{
			{`"anonymousId": "a1"`, "o0", 5}, {`"anonymousId": "a1"`, "o1", 10}, {`"anonymousId": "a1"`, "o2", 20},
			{`"userId": "u1"`, "o0", 5}, {`"userId": "u1"`, "o1", 10},
		} {
			order(b, o.ids, o.id, o.total)
		}
	})
	// o0 was counted for a1 before order ids kept their amounts.
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(pairKey(prefixOrder, "a1", "o0"), nil) }); err != nil {
		t.Fatal(err)
	}
	var moved []byte
	h.run(func(b *Batch) {
		order(b, `"anonymousId": "a1"`, "o3", 7) // in the linking batch, not written yet
		var err error
		if moved, err = b.Link("a1", "u1"); err != nil || moved == nil {
			t.Fatalf("link: %v, moved %d bytes", err, len(moved))
		}
	})
	h.merge("u1", moved)
	check := func(when string, orders uint64, revenue int64) {
		t.Helper()
		u, err := s.Profile("u1")
		if err != nil {
			t.Fatal(err)
		}
		if u.Orders != orders || u.Revenue != money.Units(revenue) || len(u.orderLog) != int(orders) {
			t.Errorf("%s: %d orders, revenue %v, %d in the order log; want %d, %v", when, u.Orders, u.Revenue, len(u.orderLog), orders, revenue)
		}
	}
	check("merged", 5, 47) // o0 twice, o1, o2, o3
	h.run(func(b *Batch) {
		order(b, `"userId": "u1"`, "o2", 20) // a copy: counted for a1 before the link
		order(b, `"userId": "u1"`, "o3", 7)
	})
	check("copies of moved orders", 5, 47)
	h.run(func(b *Batch) { order(b, `"userId": "u1"`, "o4", 1) })
	check("a new order", 6, 48)
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: pairKey(prefixOrder, "a1", "")})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			t.Errorf("order id %q left with the linked key", it.Item().Key())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func countProfiles(pop Population) int64 {
	var n int64
	for _, c := range pop.Orders {
		n += c
	}
	return n
}

// TestOrderValue: a counted order's amount and time read back exactly,
// as do those written as a float64 before amounts were exact; an order id
// counted before either was kept has none.
func TestOrderValue(t *testing.T) {
	legacy := binary.BigEndian.AppendUint64(nil, math.Float64bits(5391.209999999999))
	legacy = binary.BigEndian.AppendUint64(legacy, 1700000000000)
	for _, tc := range []struct {
		name   string
		v      []byte
		amount money.Amount
		at     int64
		known  bool
	}{
		{"exact", orderValue(money.MustParse("-19.99"), 1700000000000), money.MustParse("-19.99"), 1700000000000, true},
		{"float64", legacy, money.MustParse("5391.21"), 1700000000000, true},
		{"none kept", nil, money.Amount{}, 0, false},
	} {
		amount, at, known := decodeOrderValue(tc.v)
		if amount != tc.amount || at != tc.at || known != tc.known {
			t.Errorf("%s: %s %d %v, want %s %d %v", tc.name, amount, at, known, tc.amount, tc.at, tc.known)
		}
	}
}
