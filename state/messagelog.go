package state

import (
	"iter"
	"math"
	"math/bits"
	"slices"
)

// seenMessage is one remembered messageId.
type seenMessage struct {
	hash       uint64
	receivedAt int64 // Unix milliseconds
}

// messageLog is a profile's memory of the messageIds it applied (see
// Profile.FirstDelivery): their hashes and receive times, oldest first.
//
// A busy profile remembers up to store.dedup_ids of them (1,000 by
// default) and checks and remembers one with every event, so both are
// constant time: the ids lie in a ring, where forgetting the oldest moves
// nothing, and past scanMax of them an index of the hashes (open
// addressing, linear probing) answers whether one is there without a scan.
// Only the ids are stored; the index is built when a profile is read.
type messageLog struct {
	ring  []seenMessage // the i-th oldest id is ring[(head+i)%len(ring)], i < n
	head  int
	n     int
	index []uint16 // ring slot+1 of each id at its hash's place, 0 for none; nil unless indexed(len(ring))
}

// indexed reports whether a ring of size slots has an index: past 32 ids
// a scan is slower than the index, and past 65,535 (dedup_ids set that
// high) the index's slot numbers would not fit 16 bits. Small slot
// numbers keep the index small, and with it the copy that every batch
// changing a profile makes.
func indexed(size int) bool { return size > 32 && size <= math.MaxUint16 }

// newMessageLog returns a log of ids, oldest first. It keeps ids.
func newMessageLog(ids []seenMessage) messageLog {
	l := messageLog{ring: ids, n: len(ids)}
	l.reindex()
	return l
}

// len returns how many ids the log remembers.
func (l *messageLog) len() int { return l.n }

// all yields the ids, oldest first.
func (l *messageLog) all() iter.Seq[seenMessage] {
	return func(yield func(seenMessage) bool) {
		end := l.head + l.n
		wrapped := max(0, end-len(l.ring))
		for _, m := range l.ring[l.head : end-wrapped] {
			if !yield(m) {
				return
			}
		}
		for _, m := range l.ring[:wrapped] {
			if !yield(m) {
				return
			}
		}
	}
}

// list returns a copy of the ids, oldest first.
func (l *messageLog) list() []seenMessage {
	return slices.AppendSeq(make([]seenMessage, 0, l.n), l.all())
}

// contains reports whether the log remembers an id with hash h.
func (l *messageLog) contains(h uint64) bool {
	if l.index == nil {
		for m := range l.all() {
			if m.hash == h {
				return true
			}
		}
		return false
	}
	mask := uint64(len(l.index) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := l.index[i]
		if s == 0 {
			return false
		}
		if l.ring[s-1].hash == h {
			return true
		}
	}
}

// forget drops the oldest ids while they were received before cutoff,
// then more of the oldest until at most keep remain (no bound when keep is
// negative).
func (l *messageLog) forget(cutoff int64, keep int) {
	for l.n > 0 && l.ring[l.head].receivedAt < cutoff {
		l.dropOldest()
	}
	for keep >= 0 && l.n > keep {
		l.dropOldest()
	}
}

func (l *messageLog) dropOldest() {
	l.unindex(l.head)
	l.head++
	if l.head == len(l.ring) {
		l.head = 0
	}
	l.n--
}

// add remembers m as the newest id. limit bounds the ring's growth (the
// most ids kept; 0 for no bound), so that a full ring is never larger
// than needed.
func (l *messageLog) add(m seenMessage, limit int) {
	if l.n == len(l.ring) {
		l.grow(limit)
	}
	slot := l.slot(l.n)
	l.ring[slot] = m
	l.n++
	if l.index != nil {
		l.insert(slot)
	}
}

// slot returns the ring slot of the i-th oldest id; slot(n), when the
// ring has room, is where the next id goes.
func (l *messageLog) slot(i int) int {
	slot := l.head + i
	if slot >= len(l.ring) {
		slot -= len(l.ring)
	}
	return slot
}

// grow makes room for at least one more id: twice the room, or limit.
func (l *messageLog) grow(limit int) {
	size := max(8, 2*len(l.ring))
	if limit > 0 {
		size = min(size, limit)
	}
	size = max(size, l.n+1)
	ring := slices.AppendSeq(make([]seenMessage, 0, size), l.all())
	l.ring, l.head = ring[:size], 0
	l.reindex()
}

// reindex builds the index for the ring's size: room for twice the ids
// the ring holds, so that probe runs stay short.
func (l *messageLog) reindex() {
	if !indexed(len(l.ring)) {
		l.index = nil
		return
	}
	l.index = make([]uint16, 1<<bits.Len(uint(2*len(l.ring)-1)))
	for i := range l.n {
		l.insert(l.slot(i))
	}
}

// insert indexes the id at ring slot.
func (l *messageLog) insert(slot int) {
	mask := uint64(len(l.index) - 1)
	i := l.ring[slot].hash & mask
	for l.index[i] != 0 {
		i = (i + 1) & mask
	}
	l.index[i] = uint16(slot + 1)
}

// unindex removes the id at ring slot from the index, moving the ids
// after it in its probe run back where a lookup passing the emptied place
// would no longer reach them (backward-shift deletion: no tombstones, so
// lookups never slow down however many ids come and go).
func (l *messageLog) unindex(slot int) {
	if l.index == nil {
		return
	}
	mask := uint64(len(l.index) - 1)
	hole := l.ring[slot].hash & mask
	for l.index[hole] != uint16(slot+1) {
		hole = (hole + 1) & mask
	}
	for j := (hole + 1) & mask; l.index[j] != 0; j = (j + 1) & mask {
		home := l.ring[l.index[j]-1].hash & mask
		// The id at j stays when its home lies cyclically in (hole, j]:
		// a lookup from there reaches it without passing the hole.
		if (j-home)&mask < (j-hole)&mask {
			continue
		}
		l.index[hole] = l.index[j]
		hole = j
	}
	l.index[hole] = 0
}

// clone returns a copy that changes independently of l.
func (l *messageLog) clone() messageLog {
	c := *l
	if l.ring != nil {
		c.ring = append([]seenMessage(nil), l.ring...)
	}
	if l.index != nil {
		c.index = append([]uint16(nil), l.index...)
	}
	return c
}
