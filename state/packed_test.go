package state

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/money"
)

// TestPackedStates changes a profile's aggregate states through a clone,
// under one model and then under another that declares the aggregates in
// another order and one of them with another window: each state is found
// where it lies, the original keeps its own, and a state of the same name
// under another window starts afresh in place of the old one.
func TestPackedStates(t *testing.T) {
	compile := func(decls []AggregateConfig) *Aggregates {
		t.Helper()
		aggs, err := CompileAggregates(decls)
		if err != nil {
			t.Fatal(err)
		}
		return aggs
	}
	first := compile([]AggregateConfig{
		{Name: "a_views", Event: "E", Func: "count", Window: time.Hour},
		{Name: "b_kinds", Event: "E", Func: "distinct", Property: "kind", Window: time.Hour},
		{Name: "c_spend", Event: "E", Func: "sum", Property: "total"},
	})
	// Renamed so that the order changes; c_spend under a window now.
	second := compile([]AggregateConfig{
		{Name: "a_new", Event: "E", Func: "max", Property: "total"},
		{Name: "b_kinds", Event: "E", Func: "distinct", Property: "kind", Window: time.Hour},
		{Name: "c_spend", Event: "E", Func: "sum", Property: "total", Window: time.Hour},
		{Name: "d_views", Event: "E", Func: "count", Window: time.Hour},
	})
	now := at(time.Hour)
	orig := &Profile{Key: "k"}
	for i, agg := range first.List() {
		for j := range i + 1 { // different sizes, so that offsets move
			addEvent(orig, agg, now-int64(j)*60_000, 2, uint64(10+j), now)
		}
	}
	decoded, err := decodeProfile(orig.AppendEncode(nil), first)
	if err != nil {
		t.Fatal(err)
	}
	c := decoded.Clone()
	addEvent(c, first.List()[0], now, 0, 0, now)      // grows the first state: the others move
	addEvent(c, first.List()[1], now, 0, 99, now)     // a new value hash
	addEvent(c, second.List()[2], now, 5, 0, now)     // c_spend under its new window
	addEvent(c, second.List()[0], now, 7, 0, now)     // a new state
	addEvent(c, first.List()[0], now-1000, 0, 0, now) // under the first model again

	value := func(p *Profile, agg *Aggregate) float64 {
		v, _ := p.AggregateValue(agg, time.UnixMilli(now))
		return v
	}
	for _, tc := range []struct {
		name string
		p    *Profile
		agg  *Aggregate
		want float64
	}{
		{"original count", decoded, first.List()[0], 1},
		{"original distinct", decoded, first.List()[1], 2},
		{"original sum", decoded, first.List()[2], 6},
		{"clone count", c, first.List()[0], 3},
		{"clone distinct", c, first.List()[1], 3},
		{"clone distinct, second model", c, second.List()[1], 3},
		{"clone sum, old window", c, first.List()[2], 0},
		{"clone sum, new window", c, second.List()[2], 5},
		{"clone max", c, second.List()[0], 7},
		{"clone, undeclared before", c, second.List()[3], 0},
	} {
		if got := value(tc.p, tc.agg); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	// Written and read back under either model (or none), the states are
	// where their hints say, and found alike without them.
	for _, model := range []*Aggregates{first, second, nil} {
		back, err := decodeProfile(c.AppendEncode(nil), model)
		if err != nil {
			t.Fatal(err)
		}
		for _, aggs := range []*Aggregates{first, second} {
			for _, agg := range aggs.List() {
				if got, want := value(back, agg), value(c, agg); got != want {
					t.Errorf("read back under model %p: %s is %v, want %v", model, agg.Name, got, want)
				}
				hinted := back.aggs.find(agg)
				back.aggs.model = nil
				if searched := back.aggs.find(agg); hinted != searched {
					t.Errorf("%s: hint says %d, search finds %d", agg.Name, hinted, searched)
				}
				back.aggs.model = model
			}
		}
	}
	if n := countStates(t, c.aggs.data); n != 4 {
		t.Errorf("the clone keeps %d states, want 4 (one per name)", n)
	}
}

// countStates returns how many packed states data holds.
func countStates(t *testing.T, data []byte) int {
	t.Helper()
	if err := checkPacked(data); err != nil {
		t.Fatal(err)
	}
	n := 0
	for off := 0; off < len(data); off += packedState(data[off:]).size() {
		n++
	}
	return n
}

func TestCheckPacked(t *testing.T) {
	count := appendPacked(nil, 1<<63, Count, &Windowed{buckets: []bucket{{start: 1, n: 1}, {start: 2, n: 1}}})
	distinct := appendPacked(nil, 1<<63, Distinct, &Windowed{buckets: []bucket{{start: 1, n: 1}}, hashes: [][]uint64{{7}}})
	for name, data := range map[string][]byte{
		"short header":         count[:packedHeader-1],
		"short bucket":         count[:len(count)-1],
		"zero id":              append(make([]byte, 8), count[8:]...),
		"unknown function":     append(append(count[:8:8], 9), count[9:]...),
		"distinct, no k":       distinct[:packedHeader+packedBucket],
		"distinct, short hash": distinct[:len(distinct)-1],
		"out of order":         appendPacked(nil, 1<<63, Count, &Windowed{buckets: []bucket{{start: 2}, {start: 1}}}),
		"too many hashes": appendPacked(nil, 1<<63, Distinct, &Windowed{
			buckets: []bucket{{start: 1}}, hashes: [][]uint64{make([]uint64, DistinctExact+1)},
		}),
	} {
		if err := checkPacked(data); !errors.Is(err, errCorrupt) {
			t.Errorf("%s: %v, want errCorrupt", name, err)
		}
	}
	if err := checkPacked(append(count, distinct...)); err != nil {
		t.Errorf("well formed: %v", err)
	}
}

// TestPackedAddMatchesWindowed: counting events in a packed state, where
// it lies or unpacked, leaves the state Windowed.Add leaves, whatever the
// function, the window and the order of the events, through clones too.
func TestPackedAddMatchesWindowed(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for fn := Count; fn <= LastSeen; fn++ {
		for _, window := range []time.Duration{0, time.Hour} {
			agg := &Aggregate{Name: "a", Spec: WindowSpec{Func: fn, Window: window}, id: aggregateID("a", 1)}
			var w Windowed
			p := &Profile{Key: "k"}
			now := at(0)
			for i := range 2000 {
				now += rng.Int64N(90_000)      // up to 1.5 minutes on
				t0 := now - rng.Int64N(60_000) // as a rule, in the newest bucket
				if rng.IntN(2) == 0 {
					t0 = now - rng.Int64N(4_000_000) + 100_000 // late, too old, or a little ahead
				}
				v := float64(rng.IntN(200))
				h := uint64(rng.IntN(100))
				x := sample{v: v, amount: money.FromFloat(v / 8), h: h}
				want := w.Add(agg.Spec, t0, x, now)
				if got := p.aggs.add(agg, t0, x, now, &aggScratch{}); got != want {
					t.Fatalf("fn %d window %v event %d: counted %v, want %v", fn, window, i, got, want)
				}
				got, packed := p.aggs.state(agg), appendPacked(nil, agg.id, fn, &w)
				if got == nil && len(w.buckets) == 0 {
					continue // nothing counted yet
				}
				if !bytes.Equal(got, packed) {
					t.Fatalf("fn %d window %v event %d: state\n%x\nwant\n%x", fn, window, i, got, packed)
				}
				if i%7 == 0 {
					p = p.Clone()
				}
			}
		}
	}
}
