package state

import (
	"log/slog"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// Options configure a partition store. Their defaults (DefaultOptions,
// stated with each option) are sized for a dozen or more stores in one
// process: Badger's own defaults (64 MB memtables, five of them, a 256 MB
// block cache) are meant for one store per process. The zero value of an
// option not set by DefaultOptions is its default.
type Options struct {
	// MemTableSize is the size of one Badger memtable. A write transaction
	// holds at most about 15% of it; batches are split before that.
	//
	// The default value of MemTableSize is 16 MiB.
	MemTableSize int64
	// BlockCacheSize is Badger's block cache per store.
	//
	// The default value of BlockCacheSize is 16 MiB.
	BlockCacheSize int64
	// IndexCacheSize is Badger's index and bloom filter cache per store;
	// 0 keeps them all in memory.
	//
	// The default value of IndexCacheSize is 0.
	IndexCacheSize int64
	// SyncWrites makes every commit fsync: without it a process crash
	// loses nothing (the OS has the pages), a power loss may.
	//
	// The default value of SyncWrites is false.
	SyncWrites bool
	// VerifyChecksums makes Badger verify the checksums of every table
	// when it opens it (at Open, and tables that compactions write) and of
	// every block read from disk, and of values read from the value log:
	// damaged files are errors rather than wrong answers or crashes.
	// Decision 0017 has its cost.
	//
	// The default value of VerifyChecksums is true.
	VerifyChecksums bool
	// CacheProfiles is the number of decoded profiles kept in memory per
	// store; Open raises 0 or less to 1.
	//
	// The default value of CacheProfiles is 20,000.
	CacheProfiles int
	// Dedup bounds the messageIds each profile remembers to drop retries.
	//
	// The default value of Dedup is a 24 hour horizon and 1,000 ids.
	Dedup Dedup
	// GCInterval is how often the value log is garbage-collected.
	//
	// The default value of GCInterval is 5 minutes.
	GCInterval time.Duration
	// Logger receives Badger's warnings and errors.
	//
	// The default value of Logger is nil: Badger's log is dropped.
	Logger *slog.Logger
	// Model is what the configuration declares about profiles; the store's
	// can be replaced while it runs (Store.SetModel).
	//
	// The default value of Model is the zero Model: no aggregates,
	// segments, interests, products or offers, RFM over all time.
	Model
	// Quintiles gives the RFM quintile boundaries of the whole population
	// (all partitions), for rfm.r, rfm.f and rfm.m; nil: none known.
	//
	// The default value of Quintiles is nil.
	Quintiles func() RFMQuintiles
	// Now is the clock that decides which events are too old for a
	// window; nil means time.Now.
	//
	// The default value of Now is nil.
	Now func() time.Time
	// Retention deletes a profile with no event for that long (by the
	// event time of its last event against Now), at a wake-up of the
	// schedule (Batch.Wake); 0 keeps profiles for ever.
	//
	// The default value of Retention is 0.
	Retention time.Duration
	// Changelog makes every batch keep its writes (Batch.Writes), for the
	// processor to write to the changelog topic.
	//
	// The default value of Changelog is false.
	Changelog bool
	// RestoreMemory bounds the state a restore from the changelog holds in
	// memory to write it in key order straight into the store's tables
	// (Restorer): a store whose keys and values outgrow it is written
	// through Badger's write path instead, several times slower. 0 or
	// less: always the write path.
	//
	// The default value of RestoreMemory is 512 MiB.
	RestoreMemory int64
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
	// Traits say how traits are normalised as they are applied.
	Traits TraitRules
	// Outputs say for which consent purpose each output carries a
	// person's data (decision 0029).
	Outputs Outputs
}

// Outputs name the consent purpose each output carries people's data for
// (Purpose): an output carries a profile's data only while its latest
// choice grants that purpose. The zero Outputs name none: every output
// carries everyone's.
type Outputs struct {
	// Segments is the purpose of the segments topic: a segment change of
	// a profile that does not grant it is not written.
	Segments Purpose
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
		RestoreMemory:  512 << 20,

		VerifyChecksums: true,
	}
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
