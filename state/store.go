package state

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	lru "github.com/hashicorp/golang-lru/v2"
)

// ErrNotFound is returned for a profile key the store has never seen.
var ErrNotFound = errors.New("profile not found")

// ErrUnavailable is matched by the error of a read that cannot be answered
// now, though the key may well have a profile: its partition's store is
// fenced (stream.FencedError). Callers answer 503 rather than "unknown".
var ErrUnavailable = errors.New("profile unavailable")

// ErrBatchTooLarge is wrapped by the error of a commit whose writes do not
// fit one store transaction; nothing of the batch was written, and its
// records can be applied again in smaller batches.
var ErrBatchTooLarge = errors.New("batch too large for one store transaction")

// removeEmptyLogs deletes the memtable and value log files of dir that a
// crash left empty (created, never written to): Badger v4 refuses to open
// a directory holding one (dgraph-io/badger#2207), and they hold nothing.
func removeEmptyLogs(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if ext := filepath.Ext(e.Name()); e.IsDir() || ext != ".mem" && ext != ".vlog" {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		if info.Size() == 0 {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// Keys in a store. Profile keys are length-prefixed where another part
// follows, so that no key can be forged from another's parts.
var (
	keyNextOffset = []byte("m/next-offset")
)

const (
	prefixProfile = 'p'
	prefixOrder   = 'o' // counted order ids: profile key + order_id -> the order's amount and event time (orderValue; empty before they were kept)
	prefixSize    = 'c' // segment sizes: segment name -> members (8 bytes)
	prefixHist    = 'h' // RFM population histograms: letter + bin -> profiles (8 bytes)
	prefixStats   = 's' // offer statistics: offer, placement, arm -> counts (24 bytes)
	prefixProduct = 'g' // products: id -> encoded Product
)

func profileKey(key string) []byte {
	return append([]byte{prefixProfile}, key...)
}

func pairKey(prefix byte, key, second string) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(key)+len(second))
	b = append(b, prefix)
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	return append(b, second...)
}

// Store is the Badger store of one partition with a cache of decoded
// profiles in front. Reads (Profile, Each) are safe from any goroutine;
// writes go through one Batch at a time, from the partition's applier.
type Store struct {
	db    *badger.DB
	opts  Options
	cache *lru.Cache[string, *Profile]

	// fillMu and gen keep a reader that missed the cache from putting back a
	// profile older than one a concurrent commit has just cached.
	fillMu sync.Mutex
	gen    uint64

	hits, misses atomic.Uint64

	sizesMu sync.Mutex
	sizes   map[string]int64             // segment members in this partition
	pop     Population                   // RFM histograms of this partition, under sizesMu
	popGen  atomic.Uint64                // counts changes of pop
	statGen atomic.Uint64                // counts changes of sizes, pop and stats
	stats   map[OfferStatKey]OfferCounts // under sizesMu

	productsMu sync.RWMutex
	products   map[string]*Product // immutable values, replaced on commit

	nextWake atomic.Int64 // earliest schedule entry, Unix ms; noWake for none

	// erasures is whether the store holds an erasure marker (erasure.go):
	// until it does, a new profile reads none.
	erasures atomic.Bool

	model    atomic.Pointer[Model]
	backfill backfillState // the applier's: see backfill.go
	// growth is what a record's bytes are expected to add to its
	// profile's encoding (Batch.Grow), learnt from each committed batch;
	// the applier's, like backfill.
	growth float64
	// fresh is true until the store commits its first batch; the
	// applier's, like backfill.
	fresh bool

	stopGC chan struct{}
	gcDone chan struct{}
}

// Open opens (creating if needed) the store in dir.
func Open(dir string, o Options) (*Store, error) {
	if o.CacheProfiles <= 0 {
		o.CacheProfiles = 1
	}
	bo := badgerOptions(dir, o)
	if err := removeEmptyLogs(dir); err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	if err := checkTables(dir, bo, o.VerifyChecksums); err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	db, err := openBadger(bo)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	cache, err := lru.New[string, *Profile](o.CacheProfiles)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("profile cache of %d: %w", o.CacheProfiles, err)
	}
	s := &Store{db: db, opts: o, cache: cache, growth: maxGrowth, stopGC: make(chan struct{}), gcDone: make(chan struct{}),
		sizes: make(map[string]int64), pop: NewPopulation(),
		stats: make(map[OfferStatKey]OfferCounts), products: make(map[string]*Product)}
	m := o.Model
	s.model.Store(&m)
	if err := s.loadTotals(); err != nil {
		db.Close()
		return nil, fmt.Errorf("read segment sizes, RFM histograms, offer statistics and products in %s: %w", dir, err)
	}
	if err := s.loadNextWake(); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.loadBackfill(); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.loadErasures(); err != nil {
		db.Close()
		return nil, fmt.Errorf("look for erasures in %s: %w", dir, err)
	}
	if _, ok, err := s.NextOffset(); err != nil || !ok {
		s.fresh = true
	}
	go s.runGC()
	return s, nil
}

// openBadger is badger.Open, with a panic (Badger asserts what it reads
// from its files) returned as an error wrapping ErrDamaged.
func openBadger(bo badger.Options) (db *badger.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("%w: %v", ErrDamaged, r)
		}
	}()
	return badger.Open(bo)
}

// Close flushes and closes the store.
func (s *Store) Close() error {
	close(s.stopGC)
	<-s.gcDone
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", s.db.Opts().Dir, err)
	}
	return nil
}

// runGC reclaims value-log space now and then; Badger never does it itself.
func (s *Store) runGC() {
	defer close(s.gcDone)
	if s.opts.GCInterval <= 0 {
		return
	}
	t := time.NewTicker(s.opts.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopGC:
			return
		case <-t.C:
			// One file per call; go on while files are rewritten.
			for s.db.RunValueLogGC(0.5) == nil {
			}
		}
	}
}

// NextOffset returns the offset of the next input record to apply: the one
// after the last record whose effects are in the store. ok is false for a
// store that has applied nothing yet.
func (s *Store) NextOffset() (offset int64, ok bool, err error) {
	offset, ok, err = s.readInt64(keyNextOffset)
	if err != nil {
		return 0, false, fmt.Errorf("read stored offset in %s: %w", s.db.Opts().Dir, err)
	}
	return offset, ok, nil
}

// readInt64 reads a big-endian 8-byte value; ok is false when the key is
// absent.
func (s *Store) readInt64(key []byte) (v int64, ok bool, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error {
			if len(b) != 8 {
				return fmt.Errorf("%s is %d bytes, want 8", key, len(b))
			}
			v, ok = int64(binary.BigEndian.Uint64(b)), true
			return nil
		})
	})
	return v, ok, err
}

// Profile returns the profile of key, or ErrNotFound. The result is shared:
// the caller must not modify it.
func (s *Store) Profile(key string) (*Profile, error) {
	if p, ok := s.cache.Get(key); ok {
		s.hits.Add(1)
		return p, nil
	}
	s.misses.Add(1)
	s.fillMu.Lock()
	gen := s.gen
	s.fillMu.Unlock()
	var p *Profile
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		p, err = getProfile(txn, key, s.model.Load().Aggregates)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.fillMu.Lock()
	if s.gen == gen {
		s.cache.Add(key, p)
	}
	s.fillMu.Unlock()
	return p, nil
}

// Export returns the access export of key's profile at now (Profile.Export),
// or ErrNotFound: the profile and the order ids counted for it, read in
// one transaction.
func (s *Store) Export(key string, d Derived, now time.Time) (Export, error) {
	var x Export
	err := s.db.View(func(txn *badger.Txn) error {
		p, err := getProfile(txn, key, s.model.Load().Aggregates)
		if err != nil {
			return err
		}
		var orders []CountedOrder
		prefix := pairKey(prefixOrder, key, "")
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			id := string(item.Key()[len(prefix):])
			err := item.Value(func(v []byte) error {
				amount, at, known := decodeOrderValue(v)
				orders = append(orders, newCountedOrder(id, amount, at, known))
				return nil
			})
			if err != nil {
				return fmt.Errorf("read the order ids of %q: %w", key, err)
			}
		}
		x = p.Export(d, now, orders)
		return nil
	})
	return x, err
}

// SegmentSizes returns the number of profiles of this partition in each
// segment.
func (s *Store) SegmentSizes() map[string]int64 {
	s.sizesMu.Lock()
	defer s.sizesMu.Unlock()
	return maps.Clone(s.sizes)
}

// PopulationGen counts the changes of the RFM histograms, to tell when a
// merged population is stale.
func (s *Store) PopulationGen() uint64 { return s.popGen.Load() }

// StatsGen counts the changes of the partition's statistics (segment
// sizes, RFM histograms, offer statistics), to tell when a copy of them is
// stale.
func (s *Store) StatsGen() uint64 { return s.statGen.Load() }

// Population returns a copy of this partition's RFM histograms.
func (s *Store) Population() Population {
	s.sizesMu.Lock()
	defer s.sizesMu.Unlock()
	pop := NewPopulation()
	pop.Add(s.pop)
	return pop
}

// CacheStats returns the profile cache's hits and misses so far.
func (s *Store) CacheStats() (hits, misses uint64) {
	return s.hits.Load(), s.misses.Load()
}

// getProfile reads key's profile, its aggregate states decoded for aggs.
func getProfile(txn *badger.Txn, key string, aggs *Aggregates) (*Profile, error) {
	item, err := txn.Get(profileKey(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read profile %q: %w", key, err)
	}
	var p *Profile
	err = item.Value(func(v []byte) error {
		p, err = decodeProfile(v, aggs)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("decode profile %q: %w", key, err)
	}
	return p, nil
}

// Each calls fn for every profile in the store, in key order, until fn
// returns an error or ctx is done.
func (s *Store) Each(ctx context.Context, fn func(*Profile) error) error {
	aggs := s.model.Load().Aggregates
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 100, Prefix: []byte{prefixProfile}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			var p *Profile
			err := item.Value(func(v []byte) error {
				var err error
				p, err = decodeProfile(v, aggs)
				return err
			})
			if err != nil {
				return fmt.Errorf("decode profile %q: %w", item.Key()[1:], err)
			}
			if err := fn(p); err != nil {
				return err
			}
		}
		return nil
	})
}

// OfferStats returns this partition's offer statistics.
func (s *Store) OfferStats() map[OfferStatKey]OfferCounts {
	s.sizesMu.Lock()
	defer s.sizesMu.Unlock()
	return maps.Clone(s.stats)
}

// loadTotals reads the partition's totals (segment sizes, RFM histograms,
// offer statistics) and its products.
func (s *Store) loadTotals() error {
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true})
		defer it.Close()
		for _, prefix := range []byte{prefixSize, prefixHist, prefixStats, prefixProduct} {
			for it.Seek([]byte{prefix}); it.ValidForPrefix([]byte{prefix}); it.Next() {
				k := it.Item().KeyCopy(nil)
				err := it.Item().Value(func(v []byte) error {
					switch prefix {
					case prefixStats:
						key, err := parseStatKey(k)
						counts, ok := decodeCounts(v)
						if err == nil && ok {
							s.stats[key] = counts
						}
						return nil
					case prefixProduct:
						p, err := decodeProduct(v)
						if err != nil {
							return fmt.Errorf("product %q: %w", k[1:], err)
						}
						s.products[p.ID] = p
						return nil
					}
					if len(v) != 8 {
						return nil
					}
					n := int64(binary.BigEndian.Uint64(v))
					switch {
					case prefix == prefixSize:
						s.sizes[string(k[1:])] = n
					case len(k) == 10:
						bin := int64(binary.BigEndian.Uint64(k[2:]))
						switch k[1] {
						case 'd':
							s.pop.Days[bin] = n
						case 'f':
							s.pop.Orders[bin] = n
						case 'm':
							s.pop.Money[bin] = n
						}
					}
					return nil
				})
				if err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// badgerLogger routes Badger's log through slog, keeping its chatter at
// debug level.
type badgerLogger struct{ l *slog.Logger }

func (l badgerLogger) log(level slog.Level, format string, args ...any) {
	if l.l == nil || !l.l.Enabled(context.Background(), level) {
		return
	}
	l.l.Log(context.Background(), level, fmt.Sprintf(format, args...), "component", "badger")
}

func (l badgerLogger) Errorf(f string, a ...any)   { l.log(slog.LevelError, f, a...) }
func (l badgerLogger) Warningf(f string, a ...any) { l.log(slog.LevelWarn, f, a...) }
func (l badgerLogger) Infof(f string, a ...any)    { l.log(slog.LevelDebug, f, a...) }
func (l badgerLogger) Debugf(f string, a ...any)   { l.log(slog.LevelDebug, f, a...) }
