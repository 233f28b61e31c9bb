package state

import (
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/tailorcdp/tailor/money"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(d time.Duration) int64 { return t0.Add(d).UnixMilli() }

// num is the sample of an event with the value v, as a number and an
// amount.
func num(v float64) sample { return sample{v: v, amount: money.FromFloat(v)} }

// TestWindowScript follows a scripted sequence with a fake clock: events
// in order and late, one too old to count, and expiry with no new event.
func TestWindowScript(t *testing.T) {
	count := WindowSpec{Func: Count, Window: time.Hour} // 2-minute buckets
	sum := WindowSpec{Func: Sum, Window: time.Hour}
	var c, s Windowed
	add := func(event, now time.Duration, v float64) bool {
		s.Add(sum, at(event), num(v), at(now))
		return c.Add(count, at(event), num(v), at(now))
	}
	check := func(now time.Duration, wantCount, wantSum float64) {
		t.Helper()
		if got, _ := valueOf(&c, count, at(now)); got != wantCount {
			t.Errorf("count at %v: %v, want %v", now, got, wantCount)
		}
		got, ok := valueOf(&s, sum, at(now))
		if wantSum == 0 && ok || wantSum != 0 && got != wantSum {
			t.Errorf("sum at %v: %v (%v), want %v", now, got, ok, wantSum)
		}
	}
	check(0, 0, 0)
	add(0, 0, 10)
	add(10*time.Minute, 10*time.Minute, 5)
	add(50*time.Minute, 50*time.Minute, 1)
	check(55*time.Minute, 3, 16)
	if !add(30*time.Minute, 55*time.Minute, 100) { // late, inside the window
		t.Error("a late event inside the window was not counted")
	}
	if add(-10*time.Minute, 55*time.Minute, 1000) { // older than the window
		t.Error("an event older than the window was counted")
	}
	check(55*time.Minute, 4, 116)
	// The first event leaves once its 2-minute bucket is wholly out of
	// the window, with no new event.
	check(61*time.Minute, 4, 116)
	check(62*time.Minute, 3, 106)
	if next, ok := nextChangeOf(&c, count, at(55*time.Minute)); !ok || next != at(62*time.Minute) {
		t.Errorf("next change %v %v, want %v", time.UnixMilli(next).UTC(), ok, t0.Add(62*time.Minute))
	}
	// Past it, before expiry has dropped the bucket: the next bucket's turn.
	if next, ok := nextChangeOf(&c, count, at(62*time.Minute)); !ok || next != at(72*time.Minute) {
		t.Errorf("next change after 62m: %v %v, want %v", time.UnixMilli(next).UTC(), ok, t0.Add(72*time.Minute))
	}
	check(72*time.Minute, 2, 101)
	check(92*time.Minute, 1, 1)
	check(112*time.Minute, 0, 0)
	c.Expire(count, at(112*time.Minute))
	if len(c.buckets) != 0 {
		t.Errorf("%d buckets left after expiry", len(c.buckets))
	}
	if _, ok := nextChangeOf(&c, count, at(112*time.Minute)); ok {
		t.Error("an empty window has a next change")
	}
}

func TestWindowFuncs(t *testing.T) {
	events := []struct {
		at time.Duration
		v  float64
	}{{time.Hour, 3}, {5 * time.Hour, -2}, {3 * time.Hour, 7}, {2 * time.Hour, 7}}
	now := 6 * time.Hour
	want := map[AggregateFunc]float64{
		Count: 4, Sum: 15, Min: -2, Max: 7, Distinct: 3,
		FirstSeen: float64(at(time.Hour)), LastSeen: float64(at(5 * time.Hour)),
	}
	for fn, wantV := range want {
		for _, window := range []time.Duration{0, 7 * 24 * time.Hour} {
			spec := WindowSpec{Func: fn, Window: window}
			var w Windowed
			for _, e := range events {
				w.Add(spec, at(e.at), sample{v: e.v, amount: money.FromFloat(e.v), h: xxhash.Sum64String(strconv.FormatFloat(e.v, 'g', -1, 64))}, at(now))
			}
			if got, ok := valueOf(&w, spec, at(now)); !ok || got != wantV {
				t.Errorf("func %d window %v: %v %v, want %v", fn, window, got, ok, wantV)
			}
			// Stored, a state keeps only the fields its function reads;
			// read back, it gives the same value before and after the
			// next event.
			// Read with the aggregate declared, the state is decoded
			// for it; read with none declared, it is decoded when an
			// aggregate reads it.
			agg := &Aggregate{Name: "a", Spec: spec, id: aggregateID("a", 1)}
			p := &Profile{Key: "k"}
			p.aggs.store(agg, &w, nil)
			stored := p.AppendEncode(nil)
			typed, err := decodeProfile(stored, declared(agg))
			if err != nil {
				t.Fatal(err)
			}
			untyped, err := DecodeProfile(stored)
			if err != nil {
				t.Fatal(err)
			}
			w.Add(spec, at(now-time.Minute), sample{v: 11, amount: money.Units(11), h: xxhash.Sum64String("11")}, at(now))
			want, _ := valueOf(&w, spec, at(now))
			for _, back := range []*Profile{typed, untyped} {
				addEvent(back, agg, at(now-time.Minute), 11, xxhash.Sum64String("11"), at(now))
				if got, ok := back.AggregateValue(agg, time.UnixMilli(at(now))); !ok || got != want {
					t.Errorf("func %d window %v: read back and added to: %v %v, want %v", fn, window, got, ok, want)
				}
			}
		}
	}
	var empty Windowed
	if _, ok := valueOf(&empty, WindowSpec{Func: Max}, 0); ok {
		t.Error("max of nothing has a value")
	}
}

func TestWindowBounded(t *testing.T) {
	spec := WindowSpec{Func: Distinct, Window: 24 * time.Hour}
	var w Windowed
	for i := range 100_000 {
		ts := time.Duration(i) * 2 * time.Second // 55 hours of events
		w.Add(spec, at(ts), sample{h: xxhash.Sum64String("v" + strconv.Itoa(i%20_000))}, at(ts))
	}
	if len(w.buckets) > WindowBuckets+1 {
		t.Errorf("%d buckets, bound is %d", len(w.buckets), WindowBuckets+1)
	}
	if len(w.hashes) != len(w.buckets) {
		t.Errorf("%d buckets, value hashes of %d", len(w.buckets), len(w.hashes))
	}
	for _, h := range w.hashes {
		if len(h) > DistinctExact {
			t.Fatalf("bucket keeps %d hashes", len(h))
		}
	}
	// Events dated up to a day ahead (senders' clocks) count in now's
	// bucket: no bucket past now.
	now := at(100_000 * 2 * time.Second)
	for i := range 1000 {
		w.Add(spec, now+int64(i)*86_400, sample{h: xxhash.Sum64String("v" + strconv.Itoa(i%20_000))}, now)
	}
	if len(w.buckets) > WindowBuckets+1 || w.buckets[len(w.buckets)-1].start > now {
		t.Errorf("after events dated ahead: %d buckets, the last starting %v after now", len(w.buckets), time.Duration(w.buckets[len(w.buckets)-1].start-now)*time.Millisecond)
	}
	// The last 24 hours hold 43,200 events over 20,000 values (and the
	// thousand ahead, of values among them).
	got, _ := valueOf(&w, spec, at(100_000*2*time.Second))
	if math.Abs(got-20_000)/20_000 > 0.3 {
		t.Errorf("distinct estimate %v, want 20,000 within 30%%", got)
	}
}

// valueOf returns the value of w under spec at now, packed as a profile
// keeps it.
func valueOf(w *Windowed, spec WindowSpec, now int64) (float64, bool) {
	return packedState(appendPacked(nil, 1<<63, spec.Func, w)).value(spec, now)
}

// nextChangeOf returns when w's value under spec next changes at now,
// packed as a profile keeps it.
func nextChangeOf(w *Windowed, spec WindowSpec, now int64) (int64, bool) {
	return packedState(appendPacked(nil, 1<<63, spec.Func, w)).nextChange(spec, now)
}

// addEvent counts an event in p's state of agg, as applying one does.
func addEvent(p *Profile, agg *Aggregate, t int64, v float64, h uint64, now int64) {
	p.aggs.add(agg, t, sample{v: v, amount: money.FromFloat(v), h: h}, now, &aggScratch{})
}
