package state

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/tailorcdp/tailor/money"
)

// Packed aggregate states
//
// A profile keeps all its aggregate states in one byte slice, in the
// layout in which they are stored (fieldAggregates), so that reading,
// copying and writing a profile never takes them apart: a stored
// profile's states are one copy out of Badger's value, a clone shares them
// until it changes one, and writing them back is one append. The slice
// holds no pointers, so the garbage collector does not look into it.
// Rules read a state where it lies. An event that falls in a bucket the
// state has changes that bucket's count and value where they lie; one that
// adds a bucket or a value hash unpacks the state into a Windowed, changes
// that and packs it back in its place.
//
// Each state is a header
//
//	id       8 bytes: aggregateID
//	fn       1 byte: AggregateFunc
//	buckets  4 bytes: how many follow, in order of their start
//
// followed by its buckets, each
//
//	start    8 bytes: Unix ms
//	n        8 bytes: the events counted
//	v        8 bytes, for the functions that keep a value: Sum's int64
//	         millionths (bucket.sum), the others' float64 bits (bucket.v);
//	         Sum's were float64 bits too in states stored in
//	         fieldAggregates, converted when read (exactSums)
//	hashes   Distinct only: 1 byte k, then k 8-byte value hashes, ascending
//
// Integers are little endian.

const (
	packedHeader = 13 // id, fn, bucket count
	packedBucket = 16 // start and n: what every function keeps
)

// keepsValue reports whether fn's buckets keep a value besides the count.
func (fn AggregateFunc) keepsValue() bool { return fn != Count && fn != Distinct }

// packedBucketSize returns the size of one of fn's packed buckets but for
// value hashes: their start and count, and the value fn keeps.
func (fn AggregateFunc) packedBucketSize() int {
	if fn.keepsValue() {
		return packedBucket + 8
	}
	return packedBucket
}

// packedState is one packed aggregate state, header first; it may run on
// into the states that follow it.
type packedState []byte

func (s packedState) id() uint64        { return binary.LittleEndian.Uint64(s) }
func (s packedState) fn() AggregateFunc { return AggregateFunc(s[8]) }
func (s packedState) bucketCount() int  { return int(binary.LittleEndian.Uint32(s[9:])) }
func (s packedState) nameHash() uint64  { return s.id() >> idFingerprintBits }
func (s packedState) buckets() bucketReader {
	return bucketReader{b: s[packedHeader:], fn: s.fn(), left: s.bucketCount()}
}

// size returns the length of the state, which must be well formed
// (checked by checkPacked when the profile was read).
func (s packedState) size() int {
	fn, n := s.fn(), s.bucketCount()
	if fn != Distinct {
		return packedHeader + n*fn.packedBucketSize()
	}
	off := packedHeader
	for range n {
		off += packedBucket + 1 + 8*int(s[off+packedBucket])
	}
	return off
}

// bucketReader reads a packed state's buckets in order.
type bucketReader struct {
	b    []byte
	fn   AggregateFunc
	left int
}

// next returns the next bucket and, for Distinct, its value hashes; ok is
// false past the last one.
func (r *bucketReader) next() (bk bucket, hashes packedHashes, ok bool) {
	if r.left == 0 {
		return bucket{}, nil, false
	}
	r.left--
	bk.start, bk.n = int64(binary.LittleEndian.Uint64(r.b)), binary.LittleEndian.Uint64(r.b[8:])
	r.b = r.b[packedBucket:]
	switch {
	case r.fn == Sum:
		bk.sum = money.Millionths(int64(binary.LittleEndian.Uint64(r.b)))
		r.b = r.b[8:]
	case r.fn.keepsValue():
		bk.v = math.Float64frombits(binary.LittleEndian.Uint64(r.b))
		r.b = r.b[8:]
	case r.fn == Distinct:
		k := int(r.b[0])
		hashes, r.b = packedHashes(r.b[1:1+8*k]), r.b[1+8*k:]
	}
	return bk, hashes, true
}

// packedHashes are a bucket's value hashes as packed: 8 bytes each.
type packedHashes []byte

func (h packedHashes) len() int        { return len(h) / 8 }
func (h packedHashes) at(i int) uint64 { return binary.LittleEndian.Uint64(h[8*i:]) }

// value returns the aggregate at now under spec; ok is false when no
// event counts (a count and a distinct count are then 0 with ok true).
// A sum is the float64 nearest to it (sum gives it exactly).
func (s packedState) value(spec WindowSpec, now int64) (v float64, ok bool) {
	if spec.Func == Sum {
		sum, ok := s.sum(spec, now)
		return sum.Float64(), ok
	}
	width := spec.width()
	cut := int64(math.MinInt64)
	if width > 0 {
		cut = now - spec.Window.Milliseconds()
	}
	total := emptyBucket(0, spec.Func)
	// The union of the buckets' smallest hashes, kept to DistinctExact:
	// one more than that fits, so that it stays on the stack.
	var buf [DistinctExact + 1]uint64
	union := buf[:0]
	if s != nil {
		for r := s.buckets(); ; {
			bk, hashes, more := r.next()
			if !more {
				break
			}
			if width > 0 && bk.start+width <= cut {
				continue
			}
			total.merge(spec.Func, bk)
			for i := range hashes.len() {
				union = addSmallest(union, hashes.at(i), DistinctExact)
			}
		}
	}
	switch {
	case spec.Func == Count:
		return float64(total.n), true
	case spec.Func == Distinct:
		return distinctEstimate(union), true
	case total.n == 0:
		return 0, false
	}
	return total.v, true
}

// sum returns a Sum aggregate at now under spec, exactly; ok is false
// when no event counts.
func (s packedState) sum(spec WindowSpec, now int64) (sum money.Amount, ok bool) {
	if s == nil {
		return sum, false
	}
	cut := int64(math.MinInt64)
	width := spec.width()
	if width > 0 {
		cut = now - spec.Window.Milliseconds()
	}
	var n uint64
	for r := s.buckets(); ; {
		bk, _, more := r.next()
		if !more {
			return sum, n > 0
		}
		if width > 0 && bk.start+width <= cut {
			continue
		}
		sum, n = sum.Add(bk.sum), n+bk.n
	}
}

// exactSums converts the values of the Sum states in b, whole packed
// states as stored in fieldAggregates (float64 bits), to millionths, in
// place: the float noise of the old sums within half a millionth goes.
func exactSums(b []byte) {
	for off := 0; off < len(b); {
		s := packedState(b[off:])
		if s.fn() == Sum {
			at := off + packedHeader
			for range s.bucketCount() {
				v := b[at+packedBucket:]
				f := math.Float64frombits(binary.LittleEndian.Uint64(v))
				binary.LittleEndian.PutUint64(v, uint64(money.FromFloat(f).Millionths()))
				at += Sum.packedBucketSize()
			}
		}
		off += s.size()
	}
}

// nextChange returns when the value next changes at now with no new
// event: when the oldest bucket still in the window leaves it. ok is false
// when time alone changes nothing (no buckets left, or all time).
func (s packedState) nextChange(spec WindowSpec, now int64) (at int64, ok bool) {
	width := spec.width()
	if width == 0 || s == nil {
		return 0, false
	}
	for r := s.buckets(); ; {
		bk, _, more := r.next()
		if !more {
			return 0, false
		}
		if end := bk.start + width + spec.Window.Milliseconds(); end > now {
			return end, true
		}
	}
}

// appendPacked appends w packed as the state id of function fn.
func appendPacked(b []byte, id uint64, fn AggregateFunc, w *Windowed) []byte {
	b = binary.LittleEndian.AppendUint64(b, id)
	b = append(b, byte(fn))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(w.buckets)))
	for i, bk := range w.buckets {
		b = binary.LittleEndian.AppendUint64(b, uint64(bk.start))
		b = binary.LittleEndian.AppendUint64(b, bk.n)
		switch {
		case fn == Sum:
			b = binary.LittleEndian.AppendUint64(b, uint64(bk.sum.Millionths()))
		case fn.keepsValue():
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(bk.v))
		case fn == Distinct:
			b = append(b, byte(len(w.hashes[i])))
			for _, h := range w.hashes[i] {
				b = binary.LittleEndian.AppendUint64(b, h)
			}
		}
	}
	return b
}

// unpack sets w to the buckets of s, reusing w's memory.
func (w *Windowed) unpack(s packedState) {
	w.buckets, w.hashes = w.buckets[:0], w.hashes[:0]
	if s == nil {
		return
	}
	distinct := s.fn() == Distinct
	if distinct {
		// Room for every hash at once, so that the arena does not move
		// while the buckets' hashes are cut from it.
		w.arena = slices.Grow(w.arena[:0], len(s)/8)
	}
	for r := s.buckets(); ; {
		bk, hashes, more := r.next()
		if !more {
			return
		}
		w.buckets = append(w.buckets, bk)
		if distinct {
			from := len(w.arena)
			for i := range hashes.len() {
				w.arena = append(w.arena, hashes.at(i))
			}
			// Capped at its length, so that adding a hash (addSmallest)
			// copies them rather than overwrite the next bucket's.
			w.hashes = append(w.hashes, w.arena[from:len(w.arena):len(w.arena)])
		}
	}
}

// checkPacked checks that b holds whole, well-formed packed states.
func checkPacked(b []byte) error {
	for off := 0; off < len(b); {
		s := b[off:]
		if len(s) < packedHeader {
			return fmt.Errorf("%w: aggregate state at %d: %d bytes, short of a header", errCorrupt, off, len(s))
		}
		st := packedState(s)
		fn := st.fn()
		if st.id() == 0 || fn < Count || fn > LastSeen {
			return fmt.Errorf("%w: aggregate state at %d: id %#x, function %d", errCorrupt, off, st.id(), fn)
		}
		size, prev := packedHeader, int64(0)
		for i := range st.bucketCount() {
			need := fn.packedBucketSize()
			if fn == Distinct {
				if len(s) <= size+packedBucket {
					return fmt.Errorf("%w: aggregate state at %d: bucket %d runs past the end", errCorrupt, off, i)
				}
				k := int(s[size+packedBucket])
				if k > DistinctExact {
					return fmt.Errorf("%w: aggregate state at %d: bucket %d keeps %d value hashes", errCorrupt, off, i, k)
				}
				need += 1 + 8*k
			}
			if len(s) < size+need {
				return fmt.Errorf("%w: aggregate state at %d: bucket %d runs past the end", errCorrupt, off, i)
			}
			start := int64(binary.LittleEndian.Uint64(s[size:]))
			if i > 0 && start <= prev {
				return fmt.Errorf("%w: aggregate state at %d: bucket %d is out of order", errCorrupt, off, i)
			}
			prev = start
			size += need
		}
		off += size
	}
	return nil
}

// aggHints is how many of a model's aggregates a profile finds without a
// search: the first ones; the others are looked for.
const aggHints = 16

// aggStates are a profile's aggregate states, packed.
type aggStates struct {
	data []byte
	// hint[i] is 1 + the offset in data of the state of model's
	// aggregate i, under any function and window (0: none). In the
	// profile itself rather than beside data, so that finding a state
	// touches no memory but the state's.
	hint  [aggHints]uint32
	model *Aggregates // the hints are for; nil: none kept
	// shared: data is shared with the profile this one was cloned from,
	// and copied before a change.
	shared bool
}

// find returns the offset in data of the state of agg's name, under its
// function and window or another, or -1.
func (a *aggStates) find(agg *Aggregate) int {
	if agg.model != nil && agg.model == a.model && agg.index < aggHints {
		return int(a.hint[agg.index]) - 1
	}
	name := agg.nameHash()
	for off := 0; off < len(a.data); {
		s := packedState(a.data[off:])
		if s.nameHash() == name {
			return off
		}
		off += s.size()
	}
	return -1
}

// state returns agg's state for reading, nil when there is none or only
// one under another function or window.
func (a *aggStates) state(agg *Aggregate) packedState {
	off := a.find(agg)
	if off < 0 {
		return nil
	}
	s := packedState(a.data[off:])
	if s.id() != agg.id || s.fn() != agg.Spec.Func {
		return nil
	}
	return s[:s.size()]
}

// add counts an event at event time t (Unix ms) with the value x in agg's
// state, as seen at now, as Windowed.Add does,
// and reports whether it counted. Most events fall in a bucket the state
// has, with all its buckets still in the window: those change the state
// where it lies; the others unpack it into scratch, change it there and
// pack it back.
func (a *aggStates) add(agg *Aggregate, t int64, x sample, now int64, scratch *aggScratch) bool {
	spec := agg.Spec
	width := spec.width()
	if width > 0 && t <= now-spec.Window.Milliseconds() {
		return false // older than the window
	}
	if off, ok := a.bucketOf(agg, t, x.h, now); ok {
		a.own()
		b := a.data[off:]
		bk := bucket{n: binary.LittleEndian.Uint64(b[8:])}
		switch {
		case spec.Func == Sum:
			bk.sum = money.Millionths(int64(binary.LittleEndian.Uint64(b[packedBucket:])))
		case spec.Func.keepsValue():
			bk.v = math.Float64frombits(binary.LittleEndian.Uint64(b[packedBucket:]))
		}
		bk.add(spec.Func, t, x)
		binary.LittleEndian.PutUint64(b[8:], bk.n)
		switch {
		case spec.Func == Sum:
			binary.LittleEndian.PutUint64(b[packedBucket:], uint64(bk.sum.Millionths()))
		case spec.Func.keepsValue():
			binary.LittleEndian.PutUint64(b[packedBucket:], math.Float64bits(bk.v))
		}
		return true
	}
	w := &scratch.window
	w.unpack(a.state(agg))
	w.Add(spec, t, x, now)
	scratch.packed = a.store(agg, w, scratch.packed)
	return true
}

// bucketOf returns the offset in data of the bucket of agg's state that
// an event at t (in the window at now) falls in, when there is one, no
// bucket has left the window, and, for Distinct, the bucket has the
// event's value hash h already or keeps smaller ones only: then counting
// the event changes the bucket's count and value only.
func (a *aggStates) bucketOf(agg *Aggregate, t int64, h uint64, now int64) (int, bool) {
	off := a.find(agg)
	if off < 0 {
		return 0, false
	}
	s := packedState(a.data[off:])
	n := s.bucketCount()
	if s.id() != agg.id || s.fn() != agg.Spec.Func || n == 0 {
		return 0, false
	}
	spec := agg.Spec
	start := spec.bucketStart(t, now)
	if width := spec.width(); width > 0 {
		if first := int64(binary.LittleEndian.Uint64(s[packedHeader:])); first+width <= now-spec.Window.Milliseconds() {
			return 0, false // expiry is due
		}
	}
	if spec.Func != Distinct {
		// Fixed-size buckets: from the newest, where most events fall.
		size := spec.Func.packedBucketSize()
		for i := n - 1; i >= 0; i-- {
			at := packedHeader + i*size
			if b := int64(binary.LittleEndian.Uint64(s[at:])); b <= start {
				return off + at, b == start
			}
		}
		return 0, false
	}
	for r, at := s.buckets(), packedHeader; ; {
		bk, hashes, more := r.next()
		switch {
		case !more || bk.start > start:
			return 0, false
		case bk.start == start:
			if i, found := searchHashes(hashes, h); !found && i < DistinctExact {
				return 0, false // a new value: the hashes grow
			}
			return off + at, true
		}
		at += packedBucket + 1 + len(hashes)
	}
}

// searchHashes returns where h is or would be among the ascending packed
// hashes, and whether it is there.
func searchHashes(hashes packedHashes, h uint64) (int, bool) {
	lo, hi := 0, hashes.len()
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if hashes.at(m) < h {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < hashes.len() && hashes.at(lo) == h
}

// aggScratch is where add changes a state that it unpacks.
type aggScratch struct {
	window Windowed
	packed []byte
}

// store packs w as agg's state, in place of the state of agg's name
// (or after the others), packing it in scratch first; it returns scratch
// for reuse.
func (a *aggStates) store(agg *Aggregate, w *Windowed, scratch []byte) []byte {
	scratch = appendPacked(scratch[:0], agg.id, agg.Spec.Func, w)
	off, old := a.find(agg), 0
	if off < 0 {
		off = len(a.data)
	} else {
		old = packedState(a.data[off:]).size()
	}
	a.own()
	a.data = slices.Replace(a.data, off, off+old, scratch...)
	if agg.model == nil || agg.model != a.model {
		a.index(agg.model)
		return scratch
	}
	if delta := len(scratch) - old; delta != 0 {
		for i, h := range a.hint {
			if int(h) > off+1 {
				a.hint[i] = uint32(int(h) + delta)
			}
		}
	}
	if agg.index < aggHints {
		a.hint[agg.index] = uint32(off + 1)
	}
	return scratch
}

// own copies the states before a change when they are shared with the
// profile this one was cloned from, with room to spare: the events after
// this one change states of the profile too, and buckets come and go.
func (a *aggStates) own() {
	if a.shared {
		a.data = append(make([]byte, 0, len(a.data)+packedSpare), a.data...)
		a.shared = false
	}
}

// packedSpare is the room a profile's copy of its states has to grow.
const packedSpare = 64

// index sets the hints for model's aggregates (none for a nil model).
func (a *aggStates) index(model *Aggregates) {
	a.hint, a.model = [aggHints]uint32{}, model
	if model == nil {
		return
	}
	for off := 0; off < len(a.data); {
		s := packedState(a.data[off:])
		if agg := model.names[s.nameHash()]; agg != nil && agg.index < aggHints {
			a.hint[agg.index] = uint32(off + 1)
		}
		off += s.size()
	}
}
