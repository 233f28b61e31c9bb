package stream

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/state"
)

// errChangelogIncomplete is returned by a restore from a changelog that
// does not hold every write since its store was empty: one that began
// while the store already held profiles (state.IsChangelogBase).
var errChangelogIncomplete = errors.New("the changelog does not go back to an empty store (it was turned on while the store held state)")

// openedStore is a store opened for a newly assigned partition, or why
// it could not be.
type openedStore struct {
	store *state.Store
	err   error
}

// openAssigned opens the stores of the partitions of ids neither held
// nor kept from a lost session (openStore), one after the other.
func (p *Processor) openAssigned(ctx context.Context, ids []int32) map[int32]openedStore {
	p.mu.RLock()
	var open []int32
	for _, id := range ids {
		if p.parts[id] == nil && p.stale[id] == nil {
			open = append(open, id)
		}
	}
	p.mu.RUnlock()
	opened := make(map[int32]openedStore, len(open))
	for _, id := range open {
		p.standby.release(id) // its replica, caught up next
		store, err := p.openStore(ctx, id, p.storeDir(id), p.storeOptions())
		opened[id] = openedStore{store: store, err: err}
	}
	return opened
}

// storeOptions are the options a partition's store is opened with.
func (p *Processor) storeOptions() state.Options {
	opts := p.cfg.Store
	opts.Model = *p.model.Load()
	opts.Logger = p.log
	opts.Quintiles = p.Reads().Quintiles
	return opts
}

// storeDir is the directory of partition id's store.
func (p *Processor) storeDir(id int32) string { return StoreDir(p.cfg.DataDir, p.cfg.Topics, id) }

// StoreDir is the directory of partition id's store under dataDir.
func StoreDir(dataDir string, t Topics, id int32) string {
	return filepath.Join(dataDir, t.Events+"-"+strconv.Itoa(int(id)))
}

// openStore opens the store of partition id in dir. With a changelog, a
// store that is missing (no directory, or one that has committed
// nothing), damaged (state.ErrDamaged), or behind the start of the
// events topic (the records it has yet to apply are gone, as after a
// restore from an old disk) is restored from the changelog first
// (restore), replacing it. A changelog that cannot rebuild the store
// (errChangelogIncomplete) leaves it as it was: a missing store is
// rebuilt from the events topic, a behind one goes on from there, both
// as without a changelog, and a damaged one is fenced.
func (p *Processor) openStore(ctx context.Context, id int32, dir string, opts state.Options) (*state.Store, error) {
	if !p.cfg.Store.Changelog {
		return state.Open(dir, opts)
	}
	store, why, err := p.openPresent(ctx, id, dir, opts)
	if err != nil || why == "" {
		return store, err
	}
	p.log.Info("store "+why+": restoring it from the changelog", "partition", id, "store", dir)
	err = p.restore(ctx, id, dir, opts)
	if errors.Is(err, errChangelogIncomplete) && why != whyDamaged {
		p.log.Warn("store "+why+" and the changelog cannot rebuild it: applying the events topic", "partition", id, "store", dir, "err", err)
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("partition %d: restore %s from %s: %w", id, dir, p.cfg.Topics.Changelog, err)
	}
	return state.Open(dir, opts)
}

// Why a store is restored.
const (
	whyMissing = "missing"
	whyDamaged = "damaged"
	whyBehind  = "behind the start of the events topic"
	// whyGone: the changelog records after the offset the store reflects
	// are gone (deleted from the start of the changelog partition).
	whyGone = "behind the start of the changelog"
)

// openPresent opens the store of dir, unless it is to be restored: then
// it says why.
func (p *Processor) openPresent(ctx context.Context, id int32, dir string, opts state.Options) (store *state.Store, why string, err error) {
	present, err := state.Present(dir)
	if err != nil || !present {
		return nil, whyMissing, err
	}
	store, err = state.Open(dir, opts)
	if errors.Is(err, state.ErrDamaged) {
		p.log.Warn("store damaged", "partition", id, "store", dir, "err", err)
		return nil, whyDamaged, nil
	}
	if err != nil {
		return nil, "", err
	}
	store, why, err = p.caughtUp(ctx, id, dir, opts, store)
	if store == nil {
		return nil, why, err
	}
	next, ok, err := store.NextOffset()
	if err == nil && ok {
		var start int64
		start, _, err = partitionBounds(ctx, p.cl, p.cfg.Topics.Events, id)
		if err == nil && next >= start {
			return store, "", nil
		}
	}
	store.Close()
	switch {
	case err != nil:
		return nil, "", err
	case !ok:
		return nil, whyMissing, nil // committed nothing: as good as missing
	}
	return nil, whyBehind, nil
}

// caughtUp brings store up to the end of its changelog when it records
// the changelog offset it reflects and the changelog has more: a store
// from an earlier assignment (a standby replica, or a store this
// instance applied before the partition moved away and back), or one
// batch behind after a crash. It returns the store to use, opened again
// after a catch-up so that what Open loads from its keys is current; nil
// and why when it is to be restored whole, or on an error (store closed
// in both cases).
func (p *Processor) caughtUp(ctx context.Context, id int32, dir string, opts state.Options, store *state.Store) (*state.Store, string, error) {
	from, ok, err := store.ChangelogOffset()
	if err != nil || !ok {
		return store, "", err
	}
	applied, gone, err := p.catchUp(ctx, id, store, from)
	if err != nil || gone || applied == 0 {
		if err != nil || gone {
			store.Close()
			store = nil
		}
		if gone {
			return nil, whyGone, nil
		}
		return store, "", err
	}
	if err := store.Close(); err != nil {
		return nil, "", err
	}
	store, err = state.Open(dir, opts)
	return store, "", err
}

// catchUp applies to store the committed changelog records from offset
// from to the changelog partition's end, once the partition's earlier
// owner is fenced (as restore does), and returns how many it applied;
// gone is true, with nothing applied, when the changelog no longer
// starts at or before from.
func (p *Processor) catchUp(ctx context.Context, id int32, store *state.Store, from int64) (applied int64, gone bool, err error) {
	_, end, err := partitionBounds(ctx, p.cl, p.cfg.Topics.Changelog, id)
	if err != nil || from >= end {
		return 0, false, err
	}
	if err := p.fenceOwner(ctx, id); err != nil {
		return 0, false, err
	}
	start, end, err := partitionBounds(ctx, p.cl, p.cfg.Topics.Changelog, id)
	if err != nil || from < start {
		return 0, err == nil, err
	}
	began := time.Now()
	label := partitionLabel(id)
	restored, left := p.m.restored.WithLabelValues(label), p.m.restoreLeft.WithLabelValues(label)
	var writes []state.Write
	rd := newChangelogReader(func(w state.Write) error {
		writes = append(writes, w)
		return nil
	})
	err = readPartition(ctx, p.cfg.Client, p.cfg.Topics.Changelog, id, from, end, func(rec *kgo.Record) error {
		left.Set(float64(end - rec.Offset - 1))
		if err := rd.add(logRecordOf(rec)); err != nil {
			return err
		}
		if len(writes) < catchUpChunk {
			return nil
		}
		restored.Add(float64(len(writes)))
		applied += int64(len(writes))
		err := store.ApplyChangelog(writes, rd.safe(rec.Offset+1))
		writes = writes[:0]
		return err
	})
	if err == nil {
		restored.Add(float64(len(writes)))
		applied += int64(len(writes))
		err = store.ApplyChangelog(writes, end)
	}
	left.Set(0)
	if err != nil {
		return applied, false, fmt.Errorf("catch up from changelog offset %d: %w", from, err)
	}
	p.m.restores.WithLabelValues("catch_up").Inc()
	p.log.Info("caught the store up from the changelog", "partition", id, "from", from, "to", end, "records", applied, "seconds", time.Since(began).Seconds())
	return applied, false, nil
}

// catchUpChunk is how many changelog writes a catch-up applies at once.
const catchUpChunk = 10000

// fenceOwner fences the partition's transactional id, which ends its
// earlier owner's transactions: its changelog up to its end is then
// committed or aborted, and nothing is added to it until this instance
// writes.
func (p *Processor) fenceOwner(ctx context.Context, id int32) error {
	out, err := newOutput(p.cfg.Client, p.cfg.Group, p.cfg.Topics, id, p.cfg.Partitions)
	if err != nil {
		return err
	}
	err = out.fence(ctx)
	out.close()
	return err
}

// restore writes the committed records of the partition's changelog
// into a new store that replaces dir. The partition's earlier owner is
// fenced first, which ends its transactions: the changelog up to its end
// is then committed or aborted, and nothing is added to it until this
// instance writes.
func (p *Processor) restore(ctx context.Context, id int32, dir string, opts state.Options) error {
	if err := p.fenceOwner(ctx, id); err != nil {
		return err
	}
	start, end, err := partitionBounds(ctx, p.cl, p.cfg.Topics.Changelog, id)
	if err != nil || end <= start {
		return err // nothing to restore: a new partition
	}
	began := time.Now()
	label := partitionLabel(id)
	p.log.Info("restoring store from the changelog", "partition", id, "store", dir, "from", start, "to", end)
	r, err := state.NewRestorer(dir, opts)
	if err != nil {
		return err
	}
	restored, left := p.m.restored.WithLabelValues(label), p.m.restoreLeft.WithLabelValues(label)
	// The writes go into the store on another goroutine than the one
	// reading and decoding the changelog, in chunks.
	w := newRestoreWriter(r)
	rd := newChangelogReader(func(wr state.Write) error {
		restored.Inc()
		return w.put(wr)
	})
	var bytes int64
	err = readPartition(ctx, p.cfg.Client, p.cfg.Topics.Changelog, id, start, end, func(rec *kgo.Record) error {
		left.Set(float64(end - rec.Offset - 1))
		bytes += int64(len(rec.Key) + len(rec.Value))
		return rd.add(logRecordOf(rec))
	})
	read := time.Since(began)
	if err == nil && !rd.base {
		err = errChangelogIncomplete
	}
	if err == nil {
		err = w.put(state.ChangelogOffsetWrite(end))
	}
	if werr := w.close(); err == nil {
		err = werr
	}
	if err != nil {
		r.Abort()
		return err
	}
	if err := r.Finish(); err != nil {
		return err
	}
	left.Set(0)
	p.m.restores.WithLabelValues("full").Inc()
	p.log.Info("restored store from the changelog", "partition", id, "store", dir, "records", r.Writes(), "bytes", bytes, "sorted", r.Sorted(), "offsets", end-start, "seconds", time.Since(began).Seconds(), "read_seconds", read.Seconds())
	return nil
}

// restoreWriter puts a restore's writes into its Restorer on a goroutine
// of its own, handed over in chunks of restoreChunk.
type restoreWriter struct {
	buf    []state.Write
	chunks chan []state.Write
	done   chan error // the writer's error, once it has written every chunk
}

const restoreChunk = 4096

func newRestoreWriter(r *state.Restorer) *restoreWriter {
	w := &restoreWriter{buf: make([]state.Write, 0, restoreChunk), chunks: make(chan []state.Write, 8), done: make(chan error, 1)}
	go func() {
		var err error
		for chunk := range w.chunks {
			for _, wr := range chunk {
				if err != nil {
					break
				}
				err = r.Put(wr)
			}
		}
		w.done <- err
	}()
	return w
}

func (w *restoreWriter) put(wr state.Write) error {
	w.buf = append(w.buf, wr)
	if len(w.buf) == restoreChunk {
		w.chunks <- w.buf
		w.buf = make([]state.Write, 0, restoreChunk)
	}
	return nil
}

// close hands over what is left, waits for the writer and returns its
// error.
func (w *restoreWriter) close() error {
	if len(w.buf) > 0 {
		w.chunks <- w.buf
	}
	close(w.chunks)
	return <-w.done
}

// changelogReader puts the writes of committed transactions of a
// changelog partition read uncommitted, in offset order: a write counts
// once its producer's commit marker follows it, is dropped when its
// producer's abort marker does, or none does (markerReader does the same
// for progress markers; decision 0020 says why the reads are
// uncommitted).
type changelogReader struct {
	put     func(state.Write) error
	pending map[int64]*pendingWrites // by producer id
	base    bool                     // a committed write of state.IsChangelogBase
}

// pendingWrites are the writes of a transaction not ended yet, from
// offset from on.
type pendingWrites struct {
	from   int64
	writes []state.Write
}

func newChangelogReader(put func(state.Write) error) *changelogReader {
	return &changelogReader{put: put, pending: make(map[int64]*pendingWrites)}
}

func (r *changelogReader) add(rec logRecord) error {
	switch {
	case rec.control:
		txn := r.pending[rec.producer]
		delete(r.pending, rec.producer)
		if txn == nil || !isCommitMarker(rec.key) {
			return nil
		}
		for _, w := range txn.writes {
			if err := r.putOne(w); err != nil {
				return err
			}
		}
	case rec.txn:
		txn := r.pending[rec.producer]
		if txn == nil {
			txn = &pendingWrites{from: rec.offset}
			r.pending[rec.producer] = txn
		}
		txn.writes = append(txn.writes, changelogWrite(rec.key, rec.value))
	default:
		return r.putOne(changelogWrite(rec.key, rec.value))
	}
	return nil
}

func (r *changelogReader) putOne(w state.Write) error {
	r.base = r.base || state.IsChangelogBase(w.Key)
	return r.put(w)
}

// safe returns the offset a later read can start from and miss nothing,
// with next the offset after the last record added: the first record of
// a transaction still pending, else next.
func (r *changelogReader) safe(next int64) int64 {
	for _, txn := range r.pending {
		next = min(next, txn.from)
	}
	return next
}

// partitionBounds returns the start and end offsets of a partition.
func partitionBounds(ctx context.Context, cl *kgo.Client, topic string, partition int32) (start, end int64, err error) {
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, 0, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return 0, 0, fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	e, ok1 := ends.Lookup(topic, partition)
	s, ok2 := starts.Lookup(topic, partition)
	if !ok1 || !ok2 || e.Err != nil || s.Err != nil {
		return 0, 0, fmt.Errorf("offsets of %s partition %d: %v %v", topic, partition, e.Err, s.Err)
	}
	return s.Offset, e.Offset, nil
}

// readPartition calls fn with every record of a partition from start up
// to end, read uncommitted, control records included.
func readPartition(ctx context.Context, client ClientConfig, topic string, partition int32, start, end int64, fn func(*kgo.Record) error) error {
	cl, err := kgo.NewClient(append(client.Opts(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(start)}}),
		kgo.FetchIsolationLevel(kgo.ReadUncommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxBytes(64<<20),
		kgo.FetchMaxPartitionBytes(32<<20),
	)...)
	if err != nil {
		return fmt.Errorf("read %s partition %d: %w", topic, partition, err)
	}
	defer cl.Close()
	for {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read %s partition %d from %d up to %d: %w", topic, partition, start, end, err)
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return fmt.Errorf("read %s partition %d: %w", topic, partition, ferr)
		}
		done := false
		var err error
		fetches.EachRecord(func(rec *kgo.Record) {
			if err != nil || done {
				return
			}
			err = fn(rec)
			done = rec.Offset+1 >= end
		})
		if err != nil {
			return fmt.Errorf("%s partition %d: %w", topic, partition, err)
		}
		if done {
			return nil
		}
	}
}
