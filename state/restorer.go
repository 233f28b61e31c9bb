package state

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/pb"
	"github.com/dgraph-io/ristretto/v2/z"
)

// Restorer writes a store from its writes (a changelog) into a new
// directory beside dir, and replaces dir with it once all are written:
// a crash before leaves dir as it was and the new directory, which the
// next Restorer for dir removes, unfinished.
//
// While the state the writes leave fits in Options.RestoreMemory, the
// Restorer keeps the last write of each key in memory and, at Finish,
// writes the keys in order straight into the store's tables (Badger's
// StreamWriter: no memtable, no write-ahead log, no compaction), several
// times faster than writing them one by one. Beyond that it writes what
// it holds and every later write through a WriteBatch.
type Restorer struct {
	dir, tmp string
	db       *badger.DB
	n        int64

	// held is the last write of each key while they fit in budget; nil
	// once they have outgrown it and gone to wb.
	held   *heldWrites
	budget int64
	wb     *badger.WriteBatch
}

// restoreMemTable is the memtable size of a store being restored.
const restoreMemTable = 64 << 20

// heldOverhead is what a held write costs beside its key and value: its
// map entry (the key's string header, its index) and its heldWrite.
const heldOverhead = 64

// heldWrites are the last write of each key, their keys and values
// copied into large chunks: a few pointers for the garbage collector to
// follow, not three a write.
type heldWrites struct {
	index  map[string]uint32 // key (a copy): its write in writes
	writes []heldWrite
	chunks [][]byte
	// size is the memory held: the chunks, the copies of the keys in
	// index, heldOverhead a key; live is the part the last writes use
	// (the chunks also hold the earlier writes of keys written again).
	size, live int64
}

// heldWrite is a write whose key and value are in a chunk.
type heldWrite struct {
	chunk           uint32
	off, klen, vlen uint32
	deleted         bool
}

// heldChunk is the size of a chunk of held keys and values.
const heldChunk = 4 << 20

func newHeldWrites() *heldWrites {
	return &heldWrites{index: make(map[string]uint32)}
}

// put keeps a copy of w in place of the earlier write of its key.
func (h *heldWrites) put(w Write) {
	hw := h.append(w.Key, w.Value, w.Deleted)
	h.size += int64(len(w.Key) + len(w.Value))
	h.live += int64(len(w.Key) + len(w.Value))
	if i, ok := h.index[string(w.Key)]; ok {
		old := h.writes[i]
		h.live -= int64(old.klen + old.vlen)
		h.writes[i] = hw
		return
	}
	h.index[string(w.Key)] = uint32(len(h.writes))
	h.writes = append(h.writes, hw)
	h.size += int64(len(w.Key) + heldOverhead)
	h.live += int64(len(w.Key) + heldOverhead)
}

// append copies key and value into the last chunk, or a new one.
func (h *heldWrites) append(key, value []byte, deleted bool) heldWrite {
	n := len(key) + len(value)
	last := len(h.chunks) - 1
	if last < 0 || len(h.chunks[last])+n > cap(h.chunks[last]) {
		h.chunks = append(h.chunks, make([]byte, 0, max(heldChunk, n)))
		last++
	}
	c := h.chunks[last]
	hw := heldWrite{chunk: uint32(last), off: uint32(len(c)), klen: uint32(len(key)), vlen: uint32(len(value)), deleted: deleted}
	h.chunks[last] = append(append(c, key...), value...)
	return hw
}

// compact copies the last writes into new chunks, dropping the earlier
// writes of keys written again.
func (h *heldWrites) compact() {
	old := *h
	h.chunks = nil
	for i, w := range old.writes {
		h.writes[i] = h.append(old.key(w), old.value(w), w.deleted)
	}
	h.size = h.live
}

func (h *heldWrites) key(w heldWrite) []byte {
	return h.chunks[w.chunk][w.off : w.off+w.klen]
}

func (h *heldWrites) value(w heldWrite) []byte {
	return h.chunks[w.chunk][w.off+w.klen : w.off+w.klen+w.vlen]
}

// NewRestorer starts restoring the store of dir, to be opened with o.
func NewRestorer(dir string, o Options) (*Restorer, error) {
	tmp := dir + ".restoring"
	if err := os.RemoveAll(tmp); err != nil {
		return nil, fmt.Errorf("remove the unfinished restore %s: %w", tmp, err)
	}
	// Larger memtables than a store's: a restore beyond RestoreMemory
	// writes hundreds of MB at once, and flushes less often so (synced
	// once, at Finish).
	o.MemTableSize = max(o.MemTableSize, restoreMemTable)
	// The StreamWriter sizes its tables for the last level, the base
	// table size times the multiplier for each level above: 512 MB with
	// Badger's multiplier, each built in a zeroed buffer of that size.
	// A multiplier of 1 keeps them at the base size; the store reopened
	// later sizes new tables as usual.
	bo := badgerOptions(tmp, o).WithSyncWrites(false)
	bo.TableSizeMultiplier = 1
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("open the store to restore into, %s: %w", tmp, err)
	}
	r := &Restorer{dir: dir, tmp: tmp, db: db, budget: o.RestoreMemory}
	if r.budget > 0 {
		r.held = newHeldWrites()
	} else {
		r.wb = db.NewWriteBatch()
	}
	return r, nil
}

// Put writes w over whatever the writes before it left of its key. It
// keeps neither w.Key nor w.Value: the caller may reuse them.
func (r *Restorer) Put(w Write) error {
	r.n++
	if r.held == nil {
		return r.write(w)
	}
	r.held.put(w)
	if r.held.size <= r.budget {
		return nil
	}
	// Over budget: compacting the chunks frees enough while the last
	// writes use at most half of it; else the state outgrows memory.
	if r.held.live > r.budget/2 {
		return r.spill()
	}
	r.held.compact()
	return nil
}

// write puts w into the WriteBatch.
func (r *Restorer) write(w Write) error {
	var err error
	if w.Deleted {
		err = r.wb.Delete(w.Key)
	} else {
		err = r.wb.Set(w.Key, w.Value)
	}
	if err != nil {
		return fmt.Errorf("restore key %q into %s: %w", w.Key, r.tmp, err)
	}
	return nil
}

// spill writes the held writes through a WriteBatch, which takes every
// later one: the state has outgrown the memory budget.
func (r *Restorer) spill() error {
	h := r.held
	r.held = nil
	r.wb = r.db.NewWriteBatch()
	for _, w := range h.writes {
		if w.deleted {
			continue // the new store holds nothing to delete yet
		}
		// The WriteBatch keeps key and value until it commits them: the
		// chunks stay as long as it needs them.
		if err := r.write(Write{Key: h.key(w), Value: h.value(w)}); err != nil {
			return err
		}
	}
	return nil
}

// Writes returns the number of writes Put so far.
func (r *Restorer) Writes() int64 { return r.n }

// Finish writes what is buffered, syncs the new store and puts it in
// place of dir (removing what dir held: a damaged store, or nothing).
func (r *Restorer) Finish() error {
	var err error
	if r.held != nil {
		err = r.streamHeld()
	} else {
		err = r.wb.Flush()
	}
	if err != nil {
		r.Abort()
		return fmt.Errorf("restore into %s: %w", r.tmp, err)
	}
	if err := r.db.Sync(); err != nil {
		r.Abort()
		return fmt.Errorf("sync the restored store %s: %w", r.tmp, err)
	}
	if err := r.db.Close(); err != nil {
		return fmt.Errorf("close the restored store %s: %w", r.tmp, err)
	}
	if err := os.RemoveAll(r.dir); err != nil {
		return fmt.Errorf("remove %s to restore it: %w", r.dir, err)
	}
	if err := os.Rename(r.tmp, r.dir); err != nil {
		return fmt.Errorf("put the restored store %s in place: %w", r.dir, err)
	}
	return syncDir(filepath.Dir(r.dir))
}

// streamKeys is the number of keys one stream of a StreamWriter takes:
// streams cover disjoint ranges of the sorted keys and build their tables
// in parallel.
const streamKeys = 1 << 17

// streamFlush is the size of the buffer handed to the StreamWriter at
// once.
const streamFlush = 16 << 20

// streamHeld writes the held writes, in key order, with a StreamWriter.
func (r *Restorer) streamHeld() error {
	h := r.held
	order := make([]uint32, 0, len(h.writes))
	for i, w := range h.writes {
		if !w.deleted {
			order = append(order, uint32(i))
		}
	}
	slices.SortFunc(order, func(a, b uint32) int { return bytes.Compare(h.key(h.writes[a]), h.key(h.writes[b])) })
	sw := r.db.NewStreamWriter()
	if err := sw.Prepare(); err != nil {
		return fmt.Errorf("prepare the stream writer: %w", err)
	}
	buf := z.NewBuffer(streamFlush+(1<<20), "tailor.Restorer")
	defer buf.Release()
	for i, j := range order {
		w := h.writes[j]
		// Version 1: the store's first transaction after the restore
		// reads at a later one (StreamWriter.Flush sets the oracle past
		// the highest version written).
		badger.KVToBuffer(&pb.KV{Key: h.key(w), Value: h.value(w), Version: 1, StreamId: uint32(i / streamKeys)}, buf)
		if buf.LenNoPadding() >= streamFlush {
			if err := sw.Write(buf); err != nil {
				sw.Cancel()
				return fmt.Errorf("stream the restored keys: %w", err)
			}
			buf.Reset()
		}
	}
	if err := sw.Write(buf); err != nil {
		sw.Cancel()
		return fmt.Errorf("stream the restored keys: %w", err)
	}
	r.held = nil
	if err := sw.Flush(); err != nil {
		return fmt.Errorf("flush the restored keys: %w", err)
	}
	return nil
}

// Abort drops the restore: dir stays as it was.
func (r *Restorer) Abort() {
	if r.wb != nil {
		r.wb.Cancel()
	}
	_ = r.db.Close()
	_ = os.RemoveAll(r.tmp)
}
