package state

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/money"
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

// Options configure a partition store. Their defaults are sized for a dozen
// or more stores in one process: Badger's own defaults (64 MB memtables,
// five of them, a 256 MB block cache) are meant for one store per process.
type Options struct {
	// MemTableSize is the size of one Badger memtable. A write transaction
	// holds at most about 15% of it; batches are split before that.
	MemTableSize int64
	// BlockCacheSize is Badger's block cache per store.
	BlockCacheSize int64
	// IndexCacheSize is Badger's index and bloom filter cache per store;
	// 0 keeps them all in memory.
	IndexCacheSize int64
	// SyncWrites makes every commit fsync: without it a process crash
	// loses nothing (the OS has the pages), a power loss may.
	SyncWrites bool
	// VerifyChecksums makes Badger verify the checksums of every table
	// when it opens it (at Open, and tables that compactions write) and of
	// every block read from disk, and of values read from the value log:
	// damaged files are errors rather than wrong answers or crashes.
	// Decision 0017 has its cost.
	VerifyChecksums bool
	// CacheProfiles is the number of decoded profiles kept in memory per store.
	CacheProfiles int
	// Dedup bounds the messageIds each profile remembers to drop retries.
	Dedup Dedup
	// GCInterval is how often the value log is garbage-collected.
	GCInterval time.Duration
	// Logger receives Badger's warnings and errors.
	Logger *slog.Logger
	// Model is what the configuration declares about profiles; the store's
	// can be replaced while it runs (Store.SetModel).
	Model
	// Quintiles gives the RFM quintile boundaries of the whole population
	// (all partitions), for rfm.r, rfm.f and rfm.m; nil: none known.
	Quintiles func() RFMQuintiles
	// Now is the clock that decides which events are too old for a
	// window; nil means time.Now.
	Now func() time.Time
	// Changelog makes every batch keep its writes (Batch.Writes), for the
	// processor to write to the changelog topic.
	Changelog bool
}

// Model is what the configuration declares about profiles: what to keep
// and evaluate as events are applied.
type Model struct {
	// Aggregates are maintained on every applied event (nil: none).
	Aggregates *Aggregates
	// Segments are re-evaluated as events are applied and time passes
	// (nil: none).
	Segments *Segments
	// Interests configures the category affinities (nil: none kept).
	Interests *Interests
	// Products configures the product statistics behind recommendations
	// (nil: none kept).
	Products *Products
	// Offers are the ids of the configured offers: feedback events about
	// them update the profile's caps and cooldowns and the offer
	// statistics; feedback about other offers is applied as a plain event.
	Offers map[string]bool
	// RFMHorizon limits RFM frequency and monetary value to the orders of
	// the last RFMHorizon, and the population to customers with an order
	// in it; 0 counts all time.
	RFMHorizon time.Duration
	// RFMRefresh is how often the segments reading RFM scores are
	// re-evaluated for every profile when the population's quintiles have
	// moved (a profile's own events and wake-ups re-evaluate them too); 0
	// never.
	RFMRefresh time.Duration
}

// DefaultOptions returns the options tailor uses unless configured otherwise.
func DefaultOptions() Options {
	return Options{
		MemTableSize:   16 << 20,
		BlockCacheSize: 16 << 20,
		IndexCacheSize: 0,
		CacheProfiles:  20000,
		Dedup:          Dedup{Horizon: 24 * time.Hour, MaxIDs: 1000},
		GCInterval:     5 * time.Minute,

		VerifyChecksums: true,
	}
}

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
	err = db.View(func(txn *badger.Txn) error {
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
	if err != nil {
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
	if _, ok, err := s.NextOffset(); err != nil || !ok {
		s.fresh = true
	}
	go s.runGC()
	return s, nil
}

// badgerOptions are the Badger options of a store in dir.
func badgerOptions(dir string, o Options) badger.Options {
	bo := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{o.Logger}).
		WithMemTableSize(o.MemTableSize).
		WithNumMemtables(2).
		WithNumLevelZeroTables(4).
		WithNumLevelZeroTablesStall(8).
		WithBaseTableSize(o.MemTableSize / 4).
		WithBlockCacheSize(o.BlockCacheSize).
		WithIndexCacheSize(o.IndexCacheSize).
		WithValueLogFileSize(64 << 20).
		WithValueThreshold(min(1<<20, o.MemTableSize*15/100/2)).
		WithNumCompactors(2).
		WithNumGoroutines(2).
		WithMetricsEnabled(false).
		WithDetectConflicts(false). // one writer per store
		WithSyncWrites(o.SyncWrites)
	if o.VerifyChecksums {
		// Tables are verified whole before Badger opens them
		// (checkTables); blocks as they are read from disk.
		bo = bo.WithChecksumVerificationMode(options.OnBlockRead).WithVerifyValueChecksum(true)
	}
	return bo
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

// Begin starts the batch of changes of one poll. Only one batch may be open
// at a time.
func (s *Store) Begin() *Batch {
	return &Batch{
		s:        s,
		m:        s.model.Load(),
		txn:      s.db.NewTransaction(true),
		profiles: make(map[string]*Profile),
		budget:   int(s.opts.MemTableSize / 10),
	}
}

// Batch collects the changes of a run of input records. Commit writes them
// in one transaction with the offset that follows the run, so a crash leaves
// the store either before or after the whole run, never in between.
type Batch struct {
	s        *Store
	m        *Model // the store's model when the batch began
	txn      *badger.Txn
	profiles map[string]*Profile
	orders   []countedOrder
	seen     map[string]struct{} // order keys added in this batch
	changes  []KeyedChange
	initial  map[string]rfmPoint // where each changed profile was in the RFM population
	products map[string]*Product // changed products: copies
	feedback map[OfferStatKey]OfferCounts
	env      RuleEnv // reused by segment evaluation
	envReady bool    // env's quintiles and interests are set
	inputs   Inputs
	size     int
	budget   int
	// recordBytes are the bytes of the records applied (Grow),
	// loadedBytes the encoded sizes of the profiles as the batch found
	// them: what Commit learns the store's growth from.
	recordBytes int
	loadedBytes int
	// at is the batch's instant, read from the clock once: every event of
	// the batch is evaluated at it, and the profiles rescheduled from it.
	at       time.Time
	woke     bool           // a Wake batch
	backfill *backfillBatch // a Backfill batch
	// links are the links applied events asked for; aliases the links
	// recorded by Link, removed the profiles it took out.
	links   []Link
	aliases map[string]string
	removed map[string]*Profile
	// writes are the batch's writes when the store keeps a changelog
	// (Options.Changelog), the last one of each key; written indexes them.
	writes  []Write
	written map[string]int
}

// Profile returns the profile of key for modification, creating an empty
// one for a new key. Changes become visible to readers at Commit.
func (b *Batch) Profile(key string) (*Profile, error) {
	if p, ok := b.profiles[key]; ok {
		return p, nil
	}
	p, err := b.stored(key)
	if err != nil {
		return nil, err
	}
	if p == nil {
		p = &Profile{Key: key}
	}
	b.profiles[key] = p
	b.noteInitial(key, p)
	return p, nil
}

// stored returns a copy of key's profile as readers see it (from the
// cache, else the store), for the batch to change; nil when there is none.
func (b *Batch) stored(key string) (*Profile, error) {
	if cached, ok := b.s.cache.Get(key); ok {
		return cached.Clone(), nil
	}
	p, err := getProfile(b.txn, key, b.m.Aggregates)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

// noteInitial records where p, the profile of key as the batch found it,
// was counted in the RFM population, and its share of the batch's size.
func (b *Batch) noteInitial(key string, p *Profile) {
	if b.initial == nil {
		b.initial = make(map[string]rfmPoint)
	}
	b.initial[key] = p.rfm
	b.loadedBytes += p.encodedSize
	b.size += p.encodedSize + len(key) + 64
}

// countedOrder is an order id the batch counts for a profile, with the
// order's amount and event time (Unix ms).
type countedOrder struct {
	key    []byte // pairKey(prefixOrder, profile key, order id)
	amount money.Amount
	at     int64
	known  bool // amount and at: false for an id moved from before they were kept
}

// firstOrder reports whether order orderID of profile key has not been
// counted before, and remembers it with its amount and event time (known
// false: an id counted before they were kept).
func (b *Batch) firstOrder(key, orderID string, amount money.Amount, at int64, known bool) (bool, error) {
	k := pairKey(prefixOrder, key, orderID)
	fresh, err := b.remember(k)
	if fresh {
		b.orders = append(b.orders, countedOrder{key: k, amount: amount, at: at, known: known})
	}
	return fresh, err
}

// orderValue encodes a counted order's amount and event time: a format
// byte (2), the amount in millionths and the time, 17 bytes.
func orderValue(amount money.Amount, at int64) []byte {
	v := append(make([]byte, 0, 17), 2)
	v = binary.BigEndian.AppendUint64(v, uint64(amount.Millionths()))
	return binary.BigEndian.AppendUint64(v, uint64(at))
}

// decodeOrderValue decodes what orderValue wrote, or the 16 bytes written
// before amounts were exact (a float64 amount and the time); known is
// false for anything else (an order counted before either was kept).
func decodeOrderValue(v []byte) (amount money.Amount, at int64, known bool) {
	switch {
	case len(v) == 17 && v[0] == 2:
		return money.Millionths(int64(binary.BigEndian.Uint64(v[1:]))), int64(binary.BigEndian.Uint64(v[9:])), true
	case len(v) == 16:
		return money.FromFloat(math.Float64frombits(binary.BigEndian.Uint64(v))), int64(binary.BigEndian.Uint64(v[8:])), true
	}
	return money.Amount{}, 0, false
}

func (b *Batch) remember(k []byte) (bool, error) {
	if _, ok := b.seen[string(k)]; ok {
		return false, nil
	}
	_, err := b.txn.Get(k)
	switch {
	case err == nil:
		return false, nil
	case !errors.Is(err, badger.ErrKeyNotFound):
		return false, fmt.Errorf("look up %q: %w", k, err)
	}
	if b.seen == nil {
		b.seen = make(map[string]struct{})
	}
	b.seen[string(k)] = struct{}{}
	b.size += len(k) + 32
	return true, nil
}

// Grow adds to the estimated size of the batch what an applied record of
// n bytes is expected to have added to its profile. A record can add up
// to its whole size (traits, distinct values), and a store's first batch
// counts that much; but most records add a few bytes to a profile that
// exists (a messageId, a counter), and counting their whole size cut
// batches at a fifth of the budget, each batch rewriting every profile and
// product it touched. So each commit measures what its records added, and
// the next batch counts twice that, between an eighth of a record's size
// and all of it. A batch that outgrows Badger's transaction limit all the
// same fails to commit with ErrBatchTooLarge, having written nothing, to
// be applied again in smaller ones (decision 0013).
func (b *Batch) Grow(n int) {
	b.recordBytes += n
	b.size += int(float64(n) * b.s.growth)
}

// Growth bounds what Batch.Grow counts of a record's size.
const (
	minGrowth = 1.0 / 8
	maxGrowth = 1.0
)

// Full reports whether the batch should be committed before more records
// are applied, to stay inside Badger's transaction size limit (the budget
// is two thirds of it).
func (b *Batch) Full() bool { return b.size >= b.budget }

// Len returns the number of profiles changed in the batch.
func (b *Batch) Len() int { return len(b.profiles) }

// Commit writes the batch and nextOffset (the offset of the first record not
// applied) atomically, then publishes the changed profiles to readers.
func (b *Batch) Commit(nextOffset int64) error { return b.CommitWith(nextOffset, nil) }

// CommitWith commits the batch as Commit does, calling before (unless nil)
// once its writes are known to fit one store transaction and just before
// they are committed: the processor writes the batch's outputs to Kafka
// there. An error from before, or writes too large for one transaction
// (ErrBatchTooLarge: before is not called), leave the store as it was.
func (b *Batch) CommitWith(nextOffset int64, before func() error) (err error) {
	defer b.txn.Discard()
	defer func() {
		if errors.Is(err, badger.ErrTxnTooBig) {
			err = fmt.Errorf("%w (%d profiles, %d products, about %d bytes estimated): %w", ErrBatchTooLarge, len(b.profiles), len(b.products), b.size, err)
		}
	}()
	earliest, err := b.reschedule()
	if err != nil {
		return err
	}
	if b.woke {
		v := binary.BigEndian.AppendUint64(nil, uint64(b.at.UnixMilli()))
		if err := b.set(keyLastWake, v); err != nil {
			return fmt.Errorf("write last wake: %w", err)
		}
	}
	backfill, err := b.commitBackfill()
	if err != nil {
		return err
	}
	if err := b.commitLinks(); err != nil {
		return err
	}
	now := b.now().UnixMilli()
	for _, p := range b.profiles {
		p.rfm, p.rfmRecorded = p.rfmPointAt(now, b.m.RFMHorizon), p.Orders > 0
	}
	// The batch's profiles are encoded into one buffer sized from their
	// last encodings, which Badger holds on to until the commit.
	need := 0
	for key, p := range b.profiles {
		need += len(key) + 1 + p.encodedSize + p.encodedSize/4 + 64
	}
	buf := make([]byte, 0, need)
	var scratch []byte
	written := 0 // the profiles' encoded sizes
	for key, p := range b.profiles {
		start := len(buf)
		buf = append(buf, prefixProfile)
		buf = append(buf, key...)
		mid := len(buf)
		buf, scratch = p.appendEncode(buf, scratch)
		k, v := buf[start:mid:mid], buf[mid:len(buf):len(buf)]
		written += len(v)
		if err := b.set(k, v); err != nil {
			return fmt.Errorf("write profile %q: %w", key, err)
		}
	}
	for _, o := range b.orders {
		var v []byte
		if o.known {
			v = orderValue(o.amount, o.at)
		}
		if err := b.set(o.key, v); err != nil {
			return fmt.Errorf("write order id: %w", err)
		}
	}
	sizes, pop := b.newSizes()
	for name, n := range sizes {
		v := binary.BigEndian.AppendUint64(nil, uint64(n))
		if err := b.set(append([]byte{prefixSize}, name...), v); err != nil {
			return fmt.Errorf("write size of segment %q: %w", name, err)
		}
	}
	for _, h := range [...]struct {
		letter byte
		bins   map[int64]int64
	}{{'d', pop.Days}, {'f', pop.Orders}, {'m', pop.Money}} {
		for bin, n := range h.bins {
			v := binary.BigEndian.AppendUint64(nil, uint64(n))
			if err := b.set(histKey(h.letter, bin), v); err != nil {
				return fmt.Errorf("write RFM histogram: %w", err)
			}
		}
	}
	stats := b.newStats()
	for k, c := range stats {
		if err := b.set(statKey(k), c.encode()); err != nil {
			return fmt.Errorf("write statistics of offer %q: %w", k.Offer, err)
		}
	}
	evicted := b.evictProducts(b.now().UnixMilli())
	for id, p := range b.products {
		if err := b.set(append([]byte{prefixProduct}, id...), p.appendEncode(nil)); err != nil {
			return fmt.Errorf("write product %q: %w", id, err)
		}
	}
	for _, id := range evicted {
		if err := b.del(append([]byte{prefixProduct}, id...)); err != nil {
			return fmt.Errorf("drop product %q: %w", id, err)
		}
	}
	var off [8]byte
	binary.BigEndian.PutUint64(off[:], uint64(nextOffset))
	if err := b.set(keyNextOffset, off[:]); err != nil {
		return fmt.Errorf("write offset %d: %w", nextOffset, err)
	}
	if err := b.markChangelogBase(off[:]); err != nil {
		return err
	}
	if before != nil {
		if err := before(); err != nil {
			return err
		}
	}
	if err := b.txn.Commit(); err != nil {
		return fmt.Errorf("commit %d profiles up to offset %d in %s: %w", len(b.profiles), nextOffset, b.s.db.Opts().Dir, err)
	}
	if b.recordBytes > 0 {
		added := float64(written - b.loadedBytes)
		b.s.growth = min(max(2*added/float64(b.recordBytes), minGrowth), maxGrowth)
	}
	if backfill != nil {
		b.s.backfill = *backfill
	}
	b.s.fresh = false
	b.s.fillMu.Lock()
	b.s.gen++
	for key, p := range b.profiles {
		b.s.cache.Add(key, p)
	}
	for key := range b.removed {
		b.s.cache.Remove(key)
	}
	b.s.fillMu.Unlock()
	b.s.sizesMu.Lock()
	maps.Copy(b.s.sizes, sizes)
	maps.Copy(b.s.pop.Days, pop.Days)
	maps.Copy(b.s.pop.Orders, pop.Orders)
	maps.Copy(b.s.pop.Money, pop.Money)
	maps.Copy(b.s.stats, stats)
	b.s.sizesMu.Unlock()
	if len(b.products)+len(evicted) > 0 {
		b.s.productsMu.Lock()
		maps.Copy(b.s.products, b.products)
		for _, id := range evicted {
			delete(b.s.products, id)
		}
		b.s.productsMu.Unlock()
	}
	if len(pop.Orders)+len(pop.Days)+len(pop.Money) > 0 {
		b.s.popGen.Add(1)
	}
	if len(pop.Orders)+len(pop.Days)+len(pop.Money)+len(sizes)+len(stats) > 0 {
		b.s.statGen.Add(1)
	}
	if b.woke {
		return b.s.loadNextWake() // the due entries are gone
	}
	for {
		cur := b.s.nextWake.Load()
		if earliest >= cur || b.s.nextWake.CompareAndSwap(cur, earliest) {
			return nil
		}
	}
}

// newSizes returns the segment sizes and RFM histogram counts the batch's
// changes lead to, for the segments and bins they touch.
func (b *Batch) newSizes() (map[string]int64, Population) {
	b.s.sizesMu.Lock()
	defer b.s.sizesMu.Unlock()
	sizes := make(map[string]int64)
	for _, c := range b.changes {
		n, ok := sizes[c.Segment]
		if !ok {
			n = b.s.sizes[c.Segment]
		}
		if c.Entered {
			n++
		} else {
			n--
		}
		sizes[c.Segment] = n
	}
	delta := NewPopulation()
	for key, p := range b.profiles {
		delta.move(b.initial[key], p.rfm)
	}
	for key := range b.removed {
		delta.move(b.initial[key], rfmPoint{})
	}
	pop := NewPopulation()
	for _, h := range [...][3]map[int64]int64{
		{delta.Days, b.s.pop.Days, pop.Days},
		{delta.Orders, b.s.pop.Orders, pop.Orders},
		{delta.Money, b.s.pop.Money, pop.Money},
	} {
		for bin, d := range h[0] {
			if d != 0 {
				h[2][bin] = h[1][bin] + d
			}
		}
	}
	return sizes, pop
}

// newStats returns the offer statistics the batch's feedback leads to.
func (b *Batch) newStats() map[OfferStatKey]OfferCounts {
	if len(b.feedback) == 0 {
		return nil
	}
	b.s.sizesMu.Lock()
	defer b.s.sizesMu.Unlock()
	out := make(map[OfferStatKey]OfferCounts, len(b.feedback))
	for k, d := range b.feedback {
		c := b.s.stats[k]
		c.Add(d)
		out[k] = c
	}
	return out
}

// OfferStats returns this partition's offer statistics.
func (s *Store) OfferStats() map[OfferStatKey]OfferCounts {
	s.sizesMu.Lock()
	defer s.sizesMu.Unlock()
	return maps.Clone(s.stats)
}

// now returns the batch's instant, reading the store's clock the first
// time.
func (b *Batch) now() time.Time {
	if b.at.IsZero() {
		b.at = time.Now()
		if b.s.opts.Now != nil {
			b.at = b.s.opts.Now()
		}
	}
	return b.at
}

// Discard drops the batch's changes.
func (b *Batch) Discard() { b.txn.Discard() }

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

// Apply applies one event to its profile. A repeated messageId (within the
// dedup bounds) is not applied again; applied reports whether it was.
func (b *Batch) Apply(ev *event.Event) (applied bool, err error) {
	key := ev.Key()
	p, err := b.Profile(key)
	if err != nil {
		return false, err
	}
	if !p.FirstDelivery(ev, b.s.opts.Dedup) {
		return false, nil
	}
	b.linkOf(ev, p)
	countOrder := false
	if ev.Type == event.Track && ev.Name == event.OrderCompleted {
		countOrder = true
		if id := ev.OrderID(); id != "" {
			amount, _ := ev.OrderAmount()
			if countOrder, err = b.firstOrder(key, id, amount, ev.Time.UnixMilli(), true); err != nil {
				return false, err
			}
		}
	}
	p.Apply(ev, countOrder)
	if countOrder && b.m.RFMHorizon > 0 {
		p.retimed = true // a new order leaves the horizon some day
	}
	if kind, d, ok := p.applyFeedback(ev, b.m.Offers); ok {
		k := OfferStatKey{Offer: d.Offer, Placement: d.Placement}
		if d.Control {
			k.Arm = Control
		}
		if b.feedback == nil {
			b.feedback = make(map[OfferStatKey]OfferCounts)
		}
		c := b.feedback[k]
		c.count(kind)
		b.feedback[k] = c
	}
	b.applyProducts(p, ev, countOrder)
	t := b.now()
	in := &b.inputs
	*in = Inputs{
		All:     sumCounts(p) == 1, // a new profile: every segment starts here
		Traits:  ev.Type == event.Identify,
		Orders:  ev.Type == event.Track && (ev.Name == event.OrderCompleted || ev.Name == event.OrderRefunded),
		Consent: ev.Context != nil && ev.Context.Exists("consent", "categoryPreferences"),
		Aggs:    slices.Grow(in.Aggs[:0], len(b.m.Aggregates.List()))[:len(b.m.Aggregates.List())],
	}
	clear(in.Aggs)
	if ev.Type == event.Track {
		in.Event = ev.Name
		if c := b.m.Interests; c != nil {
			_, in.Interests = c.Weights[ev.Name]
		}
	}
	b.m.Aggregates.apply(p, ev, t, in.Aggs, &b.env)
	b.m.Interests.apply(p, ev)
	for _, c := range b.evaluate(p, ev, in) {
		b.changes = append(b.changes, KeyedChange{Key: key, MessageID: ev.MessageID, Change: c})
	}
	return true, nil
}

// evaluate re-evaluates p's segments at the batch's instant, after ev (nil
// when time alone moved) changed in.
func (b *Batch) evaluate(p *Profile, ev *event.Event, in *Inputs) []Change {
	if !b.envReady {
		// Once per batch: the batch is evaluated at one instant, and the
		// quintiles cost a look at every partition.
		b.env.interests = b.m.Interests
		if b.s.opts.Quintiles != nil && b.m.Segments.readRFM() {
			b.env.quintiles = b.s.opts.Quintiles()
		}
		b.env.quintiles.Horizon = b.m.RFMHorizon
		b.envReady = true
	}
	if b.m.Segments.readQuintiles() && (ev == nil || in.Orders || in.All) {
		// What may move the scores: the profile's orders, time (orders
		// leaving the horizon), other quintiles (a backfill), a merge.
		in.Scores = p.rescore(b.env.quintiles, b.now())
	}
	changes := b.m.Segments.evaluate(&b.env, p, ev, b.now(), in)
	if b.env.timedEvaluated {
		p.retimed = true
	}
	return changes
}

// sumCounts returns the calls a profile has seen.
func sumCounts(p *Profile) uint64 {
	var n uint64
	for _, c := range p.TypeCounts {
		n += c
	}
	return n
}

// KeyedChange is a segment change of one profile, caused by one event.
type KeyedChange struct {
	Key       string
	MessageID string // of the event that caused it
	Change
}

// Changes returns the segment changes of the batch so far.
func (b *Batch) Changes() []KeyedChange { return b.changes }
