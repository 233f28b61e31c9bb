package state

import (
	"math"
	"slices"
	"sort"
	"time"
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

// Windowed is the state of one aggregate of one profile: time buckets in
// order of their start, each summarising the events that fell in it.
type Windowed struct {
	buckets []bucket
}

type bucket struct {
	start       int64 // Unix ms, a multiple of the width (0 for all time)
	n           uint64
	sum         float64
	min, max    float64
	first, last int64    // event times, Unix ms
	hashes      []uint64 // Distinct: the smallest value hashes, sorted
}

// emptyBucket returns a bucket starting at start that counts no event.
func emptyBucket(start int64) bucket {
	return bucket{start: start, min: math.Inf(1), max: math.Inf(-1), first: math.MaxInt64, last: math.MinInt64}
}

// clone returns a copy of w to change. The buckets are copied; their
// value hashes are shared, capped at their length so that adding one
// (addSmallest) copies them first.
func (w Windowed) clone() Windowed {
	c := Windowed{buckets: slices.Clone(w.buckets)}
	for i := range c.buckets {
		h := c.buckets[i].hashes
		c.buckets[i].hashes = h[:len(h):len(h)]
	}
	return c
}

// Add counts an event at event time t (Unix ms) with the numeric value v
// (Sum, Min, Max) or value hash h (Distinct), as seen at now. An event
// already older than the window is not counted; Add reports whether it was.
func (w *Windowed) Add(s WindowSpec, t int64, v float64, h uint64, now int64) bool {
	width := s.width()
	if width > 0 && t <= now-s.Window.Milliseconds() {
		return false
	}
	w.Expire(s, now)
	start := int64(0)
	if width > 0 {
		start = t - mod(t, width)
	}
	// Events mostly arrive in time order: the newest bucket first.
	i := len(w.buckets) - 1
	if i < 0 || w.buckets[i].start != start {
		i = sort.Search(len(w.buckets), func(i int) bool { return w.buckets[i].start >= start })
		if i == len(w.buckets) || w.buckets[i].start != start {
			w.buckets = slices.Insert(w.buckets, i, emptyBucket(start))
		}
	}
	b := &w.buckets[i]
	b.n++
	b.sum += v
	b.min = math.Min(b.min, v)
	b.max = math.Max(b.max, v)
	b.first = min(b.first, t)
	b.last = max(b.last, t)
	if s.Func == Distinct {
		b.hashes = addSmallest(b.hashes, h, DistinctExact)
	}
	return true
}

// mergeBucket adds another state's bucket (of the same aggregate) to w.
func (w *Windowed) mergeBucket(s WindowSpec, o bucket) {
	i := sort.Search(len(w.buckets), func(i int) bool { return w.buckets[i].start >= o.start })
	if i == len(w.buckets) || w.buckets[i].start != o.start {
		o.hashes = slices.Clone(o.hashes)
		w.buckets = slices.Insert(w.buckets, i, o)
		return
	}
	b := &w.buckets[i]
	b.n += o.n
	b.sum += o.sum
	b.min, b.max = math.Min(b.min, o.min), math.Max(b.max, o.max)
	b.first, b.last = min(b.first, o.first), max(b.last, o.last)
	if s.Func == Distinct {
		for _, h := range o.hashes {
			b.hashes = addSmallest(b.hashes, h, DistinctExact)
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
	}
}

// Value returns the aggregate at now; ok is false when no event counts
// (a count is then 0 with ok true).
func (w *Windowed) Value(s WindowSpec, now int64) (v float64, ok bool) {
	width := s.width()
	cut := int64(math.MinInt64)
	if width > 0 {
		cut = now - s.Window.Milliseconds()
	}
	var (
		n      uint64
		sum    float64
		lo, hi = math.Inf(1), math.Inf(-1)
		first  = int64(math.MaxInt64)
		last   = int64(math.MinInt64)
		hashes []uint64
	)
	for _, b := range w.buckets {
		if width > 0 && b.start+width <= cut {
			continue
		}
		n += b.n
		sum += b.sum
		lo, hi = math.Min(lo, b.min), math.Max(hi, b.max)
		first, last = min(first, b.first), max(last, b.last)
		for _, h := range b.hashes {
			hashes = addSmallest(hashes, h, DistinctExact)
		}
	}
	switch s.Func {
	case Count:
		return float64(n), true
	case Distinct:
		return distinctEstimate(hashes), true
	}
	if n == 0 {
		return 0, false
	}
	switch s.Func {
	case Sum:
		return sum, true
	case Min:
		return lo, true
	case Max:
		return hi, true
	case FirstSeen:
		return float64(first), true
	case LastSeen:
		return float64(last), true
	}
	return 0, false
}

// NextChange returns when the value next changes at now with no new
// event: when the oldest bucket still in the window leaves it. ok is false
// when time alone changes nothing (no buckets left, or all time).
func (w *Windowed) NextChange(s WindowSpec, now int64) (at int64, ok bool) {
	width := s.width()
	if width == 0 {
		return 0, false
	}
	for _, b := range w.buckets {
		if end := b.start + width + s.Window.Milliseconds(); end > now {
			return end, true
		}
	}
	return 0, false
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
