package state

import (
	"math"
	"slices"
	"sort"
	"time"

	"github.com/tailorcdp/tailor/money"
)

// AggregateFunc is what an aggregate computes over the events it counts.
type AggregateFunc uint8

// The aggregate functions.
const (
	Count     AggregateFunc = iota + 1 // number of events
	Sum                                // sum of a numeric property
	Min                                // smallest value of a numeric property
	Max                                // largest value of a numeric property
	Distinct                           // distinct values of a property (estimated past DistinctExact)
	FirstSeen                          // earliest event time
	LastSeen                           // latest event time
)

// ParseAggregateFunc maps a config name to its function.
func ParseAggregateFunc(s string) (AggregateFunc, bool) {
	switch s {
	case "count":
		return Count, true
	case "sum":
		return Sum, true
	case "min":
		return Min, true
	case "max":
		return Max, true
	case "distinct":
		return Distinct, true
	case "first_seen":
		return FirstSeen, true
	case "last_seen":
		return LastSeen, true
	}
	return 0, false
}

// WindowBuckets is how many time buckets a sliding window is kept in: a
// window slides in steps of 1/WindowBuckets of its length (about 2 minutes
// for an hour, 5 hours for a week), which bounds the storage of every
// aggregate whatever the event rate.
const WindowBuckets = 30

// DistinctExact is how many distinct values an aggregate counts exactly;
// past it, it keeps that many smallest value hashes per bucket and
// estimates (a k-minimum-values sketch, about 1/sqrt(k) relative error).
const DistinctExact = 64

// WindowSpec says what an aggregate computes and over which window of
// event time; a zero Window means all time.
type WindowSpec struct {
	Func   AggregateFunc
	Window time.Duration
}

// width returns the bucket width in milliseconds, 0 for all time.
func (s WindowSpec) width() int64 {
	if s.Window <= 0 {
		return 0
	}
	return max(s.Window.Milliseconds()/WindowBuckets, 1)
}

// Windowed is the state of one aggregate of one profile, unpacked for a
// change (a profile keeps its states packed, aggStates): time buckets in
// order of their start, each summarising the events that fell in it, and
// for Distinct each bucket's smallest value hashes (hashes[i] for
// buckets[i]; nil for the other functions).
type Windowed struct {
	buckets []bucket
	hashes  [][]uint64
	arena   []uint64 // holds the hashes unpacked
}

type bucket struct {
	start int64 // Unix ms, a multiple of the width (0 for all time)
	n     uint64
	// v is what Min, Max, FirstSeen and LastSeen keep besides the count:
	// the smallest or largest value, or the first or last event time
	// (Unix ms); sum is what Sum keeps, exactly.
	v   float64
	sum money.Amount
}

// sample is what one event gives an aggregate: a number (Min, Max), an
// exact amount (Sum) or a value hash (Distinct).
type sample struct {
	v      float64
	amount money.Amount
	h      uint64
}

// emptyBucket returns a bucket of function fn starting at start that
// counts no event.
func emptyBucket(start int64, fn AggregateFunc) bucket {
	b := bucket{start: start}
	switch fn {
	case Min, FirstSeen:
		b.v = math.Inf(1)
	case Max, LastSeen:
		b.v = math.Inf(-1)
	}
	return b
}

// add counts an event at t (Unix ms) with value x in the bucket.
func (b *bucket) add(fn AggregateFunc, t int64, x sample) {
	b.n++
	switch fn {
	case Sum:
		b.sum = b.sum.Add(x.amount)
	case Min:
		b.v = math.Min(b.v, x.v)
	case Max:
		b.v = math.Max(b.v, x.v)
	case FirstSeen:
		b.v = math.Min(b.v, float64(t))
	case LastSeen:
		b.v = math.Max(b.v, float64(t))
	}
}

// merge adds another bucket of the same function and start.
func (b *bucket) merge(fn AggregateFunc, o bucket) {
	b.n += o.n
	switch fn {
	case Sum:
		b.sum = b.sum.Add(o.sum)
	case Min, FirstSeen:
		b.v = math.Min(b.v, o.v)
	case Max, LastSeen:
		b.v = math.Max(b.v, o.v)
	}
}

// find returns the index of the bucket starting at start, inserting an
// empty one there when there is none.
func (w *Windowed) find(s WindowSpec, start int64) int {
	// Events mostly arrive in time order: the newest bucket first.
	i := len(w.buckets) - 1
	if i >= 0 && w.buckets[i].start == start {
		return i
	}
	i = sort.Search(len(w.buckets), func(i int) bool { return w.buckets[i].start >= start })
	if i == len(w.buckets) || w.buckets[i].start != start {
		w.buckets = slices.Insert(w.buckets, i, emptyBucket(start, s.Func))
		if s.Func == Distinct {
			w.hashes = slices.Insert(w.hashes, i, nil)
		}
	}
	return i
}

// bucketStart returns the start of the bucket an event at t counts in, as
// seen at now: 0 for all time. An event dated after now (a sender's clock
// ahead) counts in now's bucket, so that a window's buckets never reach
// past now and stay at most WindowBuckets+1 whatever the event times.
func (s WindowSpec) bucketStart(t, now int64) int64 {
	width := s.width()
	if width == 0 {
		return 0
	}
	t = min(t, now)
	return t - mod(t, width)
}

// Add counts an event at event time t (Unix ms) with the value x (its
// number for Min and Max, amount for Sum, value hash for Distinct), as
// seen at now. An event already older than the window is not counted; Add
// reports whether it was.
func (w *Windowed) Add(s WindowSpec, t int64, x sample, now int64) bool {
	if s.width() > 0 && t <= now-s.Window.Milliseconds() {
		return false
	}
	w.Expire(s, now)
	i := w.find(s, s.bucketStart(t, now))
	w.buckets[i].add(s.Func, t, x)
	if s.Func == Distinct {
		w.hashes[i] = addSmallest(w.hashes[i], x.h, DistinctExact)
	}
	return true
}

// mergeBucket adds another state's bucket o, with its value hashes, to w
// (of the same aggregate).
func (w *Windowed) mergeBucket(s WindowSpec, o bucket, hashes packedHashes) {
	i := w.find(s, o.start)
	w.buckets[i].merge(s.Func, o)
	if s.Func == Distinct {
		for j := range hashes.len() {
			w.hashes[i] = addSmallest(w.hashes[i], hashes.at(j), DistinctExact)
		}
	}
}

// Expire drops the buckets that have left the window at now.
func (w *Windowed) Expire(s WindowSpec, now int64) {
	width := s.width()
	if width == 0 {
		return
	}
	cut := now - s.Window.Milliseconds()
	n := 0
	for n < len(w.buckets) && w.buckets[n].start+width <= cut {
		n++
	}
	if n > 0 {
		w.buckets = slices.Delete(w.buckets, 0, n)
		if s.Func == Distinct {
			w.hashes = slices.Delete(w.hashes, 0, n)
		}
	}
}

// addSmallest inserts h into the sorted set, keeping at most k smallest.
func addSmallest(set []uint64, h uint64, k int) []uint64 {
	i, found := slices.BinarySearch(set, h)
	if found || i >= k {
		return set
	}
	set = slices.Insert(set, i, h)
	if len(set) > k {
		set = set[:k]
	}
	return set
}

// distinctEstimate counts the values behind a set of smallest hashes:
// exactly while the set is not full, else by the k-minimum-values estimate
// (k-1) / (kth smallest hash as a fraction of the hash space).
func distinctEstimate(hashes []uint64) float64 {
	if len(hashes) < DistinctExact {
		return float64(len(hashes))
	}
	kth := float64(hashes[DistinctExact-1]) / math.Exp2(64)
	return math.Round(float64(DistinctExact-1) / kth)
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}
