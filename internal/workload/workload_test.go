package workload

import (
	"bytes"
	"math"
	"sort"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/event"
)

func TestReproducible(t *testing.T) {
	a, b := New(DefaultConfig()), New(DefaultConfig())
	cfg := DefaultConfig()
	cfg.Seed = 2
	c := New(cfg)
	same := 0
	for i := range 5000 {
		ka, va := a.Next()
		kb, vb := b.Next()
		if ka != kb || !bytes.Equal(va, vb) {
			t.Fatalf("event %d differs for the same seed:\n%s\n%s", i, va, vb)
		}
		if _, vc := c.Next(); bytes.Equal(va, vc) {
			same++
		}
	}
	if same > 0 {
		t.Errorf("%d of 5000 events equal under another seed", same)
	}
}

// TestDistributions checks what the generator claims: valid Segment
// events keyed by profile key, the funnel rates, skewed customer activity,
// anonymous visitors some of whom identify.
func TestDistributions(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Customers = 10_000
	g := New(cfg)
	p := event.NewParser(event.DefaultLimits())
	counts := map[string]int{}
	perCustomer := map[string]int{}
	anonymous, identifiedAnon := 0, 0
	seenAnon := map[string]bool{}
	var last time.Time
	const n = 200_000
	for range n {
		key, value := g.Next()
		ev, err := p.Parse(value, 0, cfg.Start.Add(365*24*time.Hour))
		if err != nil {
			t.Fatalf("invalid event %s: %v", value, err)
		}
		if ev.Key() != key {
			t.Fatalf("key %q, event's profile key %q", key, ev.Key())
		}
		if ev.Time.Before(last.Add(-time.Hour)) {
			t.Fatalf("event time went back over an hour: %v after %v", ev.Time, last)
		}
		last = ev.Time
		name := ev.Type.String()
		if ev.Type == event.Track {
			name = ev.Name
		}
		counts[name]++
		if ev.UserID != "" {
			perCustomer[ev.UserID]++
			if seenAnon[ev.AnonymousID] && ev.Type == event.Identify {
				identifiedAnon++
			}
		} else {
			anonymous++
			seenAnon[ev.AnonymousID] = true
		}
	}
	near := func(name string, got, want, tol float64) {
		if math.Abs(got-want) > tol {
			t.Errorf("%s: %.3f, want %.3f ± %.3f", name, got, want, tol)
		}
	}
	near("add-to-cart per product view", float64(counts["Product Added"])/float64(counts["Product Viewed"]), cfg.AddToCartRate, 0.01)
	near("orders per checkout", float64(counts["Order Completed"])/float64(counts["Checkout Started"]), cfg.OrderRate, 0.03)
	if counts["page"] == 0 || counts["identify"] == 0 || anonymous == 0 || identifiedAnon == 0 {
		t.Errorf("missing kinds of traffic: %v, %d anonymous events, %d anonymous visitors identified", counts, anonymous, identifiedAnon)
	}
	// Zipf: the busiest customer is far busier than the median one.
	var active []int
	for _, c := range perCustomer {
		active = append(active, c)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(active)))
	if median := active[len(active)/2]; active[0] < 50*median {
		t.Errorf("customer activity not skewed: top %d, median %d", active[0], median)
	}
}
