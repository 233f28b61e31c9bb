package state

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"slices"
	"unsafe"
)

// heldWrites are a restore's writes held in memory to be written sorted
// (Restorer): keys and values copied into large chunks, each write a
// fixed-size record pointing into them. Nothing in them is a pointer but
// the chunks, so the garbage collector has almost nothing to follow, and
// there is no map: the writes are sorted by key, later writes after
// earlier ones, and only the last of each key is kept (dedup).
type heldWrites struct {
	writes []heldWrite
	chunks [][]byte
	// chunk is the size of a new chunk: heldChunk, less for a small
	// budget.
	chunk int
	// chunked is the bytes of the chunks in use.
	chunked int64
	// sorted is how many writes, from the first, are sorted and hold one
	// write a key (the last dedup).
	sorted int
}

// heldWrite is a write whose key and value are in a chunk.
type heldWrite struct {
	prefix          uint64 // the key's first 8 bytes, big-endian: most comparisons end here
	seq             uint32 // order of the write among those of its key
	chunk           uint32
	off, klen, vlen uint32
	deleted         bool
}

// heldWriteSize is the memory one heldWrite takes.
const heldWriteSize = int64(unsafe.Sizeof(heldWrite{}))

// heldChunk is the size of a chunk of held keys and values.
const heldChunk = 4 << 20

// newHeldWrites returns the writes held within budget bytes.
func newHeldWrites(budget int64) *heldWrites {
	return &heldWrites{chunk: int(min(heldChunk, max(budget/16, 1<<10)))}
}

// size returns the memory held: the chunks and the writes.
func (h *heldWrites) size() int64 {
	return h.chunked + int64(cap(h.writes))*heldWriteSize
}

// put keeps a copy of w.
func (h *heldWrites) put(w Write) {
	hw := h.append(w.Key, w.Value, w.Deleted)
	hw.seq = uint32(len(h.writes))
	h.writes = append(h.writes, hw)
}

// append copies key and value into the last chunk, or a new one.
func (h *heldWrites) append(key, value []byte, deleted bool) heldWrite {
	n := len(key) + len(value)
	last := len(h.chunks) - 1
	if last < 0 || len(h.chunks[last])+n > cap(h.chunks[last]) {
		c := make([]byte, 0, max(h.chunk, n))
		h.chunks = append(h.chunks, c)
		h.chunked += int64(cap(c))
		last++
	}
	c := h.chunks[last]
	var p [8]byte
	copy(p[:], key)
	hw := heldWrite{prefix: binary.BigEndian.Uint64(p[:]), chunk: uint32(last), off: uint32(len(c)), klen: uint32(len(key)), vlen: uint32(len(value)), deleted: deleted}
	h.chunks[last] = append(append(c, key...), value...)
	return hw
}

func (h *heldWrites) key(w heldWrite) []byte {
	return h.chunks[w.chunk][w.off : w.off+w.klen]
}

func (h *heldWrites) value(w heldWrite) []byte {
	return h.chunks[w.chunk][w.off+w.klen : w.off+w.klen+w.vlen]
}

// dedup sorts the writes by key and keeps the last write of each key.
// The writes are numbered in the order they were put (seq) and sorted
// by it among those of one key; the sorted part holds one write a key
// already, and stays before the writes put after it.
func (h *heldWrites) dedup() {
	if h.sorted == len(h.writes) {
		return
	}
	slices.SortFunc(h.writes, func(a, b heldWrite) int {
		if c := cmp.Compare(a.prefix, b.prefix); c != 0 {
			return c
		}
		if c := bytes.Compare(h.key(a), h.key(b)); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	out := h.writes[:0]
	for i, w := range h.writes {
		if i+1 < len(h.writes) && h.writes[i+1].prefix == w.prefix && bytes.Equal(h.key(h.writes[i+1]), h.key(w)) {
			continue // a later write of the key follows
		}
		out = append(out, w)
	}
	h.writes = out
	h.sorted = len(out)
}

// compact keeps the last write of each key and copies them into new
// chunks, dropping the earlier writes; later writes are numbered after
// them.
func (h *heldWrites) compact() {
	h.dedup()
	old := *h
	h.chunks, h.chunked = nil, 0 // dedup left the writes sorted, one a key
	h.writes = make([]heldWrite, len(old.writes), len(old.writes)+len(old.writes)/4)
	for i, w := range old.writes {
		nw := h.append(old.key(w), old.value(w), w.deleted)
		nw.seq = uint32(i)
		h.writes[i] = nw
	}
}
