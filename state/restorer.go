package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

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
	// streamKeys is the number of keys one stream of the StreamWriter
	// takes: streams cover disjoint ranges of the sorted keys and build
	// their tables in parallel (streamKeys; tests make it smaller).
	streamKeys int
}

// restoreMemTable is the memtable size of a store being restored.
const restoreMemTable = 64 << 20

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
	r := &Restorer{dir: dir, tmp: tmp, db: db, budget: o.RestoreMemory, streamKeys: streamKeys}
	if r.budget > 0 {
		r.held = newHeldWrites(r.budget)
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
	if r.held.size() <= r.budget {
		return nil
	}
	// Over budget: keeping only the last write of each key frees enough
	// while those use at most three quarters of it (a changelog Kafka has
	// not compacted yet holds several writes of a busy key); else the
	// state outgrows memory.
	r.held.compact()
	if r.held.size() > r.budget/4*3 {
		return r.spill()
	}
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
	h.dedup()
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

// Sorted reports whether the restore writes the store sorted, straight
// into its tables: its state has fit in Options.RestoreMemory so far.
func (r *Restorer) Sorted() bool { return r.wb == nil }

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
// The sorted writes are split into as many contiguous parts as there are
// processors (at most streamWorkers), each encoded and handed over by a
// goroutine of its own: StreamWriter.Write decodes what it is given
// before it takes its lock, so the parts are decoded in parallel too.
func (r *Restorer) streamHeld() error {
	h := r.held
	h.dedup()
	sw := r.db.NewStreamWriter()
	if err := sw.Prepare(); err != nil {
		return fmt.Errorf("prepare the stream writer: %w", err)
	}
	workers := max(1, min(runtime.GOMAXPROCS(0), streamWorkers, len(h.writes)/r.streamKeys))
	part := (len(h.writes) + workers - 1) / workers
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for i := range workers {
		writes := h.writes[min(i*part, len(h.writes)):min((i+1)*part, len(h.writes))]
		wg.Go(func() { errs[i] = streamPart(sw, h, writes, uint32(i)<<20, r.streamKeys) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		sw.Cancel()
		return err
	}
	r.held = nil
	if err := sw.Flush(); err != nil {
		return fmt.Errorf("flush the restored keys: %w", err)
	}
	return nil
}

// streamWorkers bounds the goroutines of streamHeld.
const streamWorkers = 4

// streamPart writes sorted writes to sw in streams numbered from first,
// keys keys a stream.
func streamPart(sw *badger.StreamWriter, h *heldWrites, writes []heldWrite, first uint32, keys int) error {
	buf := z.NewBuffer(streamFlush+(1<<20), "tailor.Restorer")
	defer buf.Release()
	n := 0
	for _, w := range writes {
		if w.deleted {
			continue // the new store holds nothing to delete
		}
		// Version 1: the store's first transaction after the restore
		// reads at a later one (StreamWriter.Flush sets the oracle past
		// the highest version written).
		badger.KVToBuffer(&pb.KV{Key: h.key(w), Value: h.value(w), Version: 1, StreamId: first + uint32(n/keys)}, buf)
		n++
		if buf.LenNoPadding() >= streamFlush {
			if err := sw.Write(buf); err != nil {
				return fmt.Errorf("stream the restored keys: %w", err)
			}
			buf.Reset()
		}
	}
	if err := sw.Write(buf); err != nil {
		return fmt.Errorf("stream the restored keys: %w", err)
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
