package state

import (
	"encoding/binary"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// A store copied from its changelog: a restored store (Restorer), one
// caught up from the changelog offset it reflects, and a standby replica
// kept warm by tailing the changelog of a partition held elsewhere
// (decision 0021). Each records the changelog offset it reflects, so that
// catching up reads only what it lacks.

// keyChangelogOffset holds the changelog offset the store reflects at
// least: every committed changelog record before it is in the store. It
// is written outside the changelog (it differs from one copy to another)
// and may lag: applying changelog records the store holds already
// changes nothing, since each is the final value of its key as of its
// batch, and the changelog is in commit order.
var keyChangelogOffset = []byte("m/changelog-offset")

// SetChangelogOffset makes the batch record, when it commits, that the
// store reflects the changelog up to next: the offset after the last
// changelog record of the batches committed before it (the processor
// learns it when their Kafka transaction commits). It may be called up
// to CommitWith's before.
func (b *Batch) SetChangelogOffset(next int64) {
	b.changelogNext, b.changelogKnown = next, true
}

// writeChangelogOffset writes the offset SetChangelogOffset gave, not
// kept for the changelog.
func (b *Batch) writeChangelogOffset() error {
	if !b.changelogKnown {
		return nil
	}
	v := binary.BigEndian.AppendUint64(nil, uint64(b.changelogNext))
	if err := b.txn.SetEntry(badger.NewEntry(keyChangelogOffset, v)); err != nil {
		return fmt.Errorf("write changelog offset %d: %w", b.changelogNext, err)
	}
	return nil
}

// ChangelogOffset returns the changelog offset the store reflects at
// least (see keyChangelogOffset); ok is false when it has none recorded.
func (s *Store) ChangelogOffset() (offset int64, ok bool, err error) {
	offset, ok, err = s.readInt64(keyChangelogOffset)
	if err != nil {
		return 0, false, fmt.Errorf("read changelog offset in %s: %w", s.db.Opts().Dir, err)
	}
	return offset, ok, nil
}

// ChangelogOffsetWrite is the write that records a changelog offset in a
// store being restored (Restorer.Put).
func ChangelogOffsetWrite(next int64) Write {
	return Write{Key: keyChangelogOffset, Value: binary.BigEndian.AppendUint64(nil, uint64(next))}
}

// ApplyChangelog writes changelog writes into the store, in order, then
// next as the changelog offset it reflects, and drops the cached
// profiles they change. It is for a store that applies no batches: a
// standby replica, or one caught up before it is opened for applying.
// Only the profiles are kept current: segment sizes, RFM histograms,
// offer statistics and products are loaded when the store is opened
// again to be applied.
func (s *Store) ApplyChangelog(writes []Write, next int64) error {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, w := range writes {
		var err error
		if w.Deleted {
			err = wb.Delete(w.Key)
		} else {
			err = wb.Set(w.Key, w.Value)
		}
		if err != nil {
			return fmt.Errorf("apply changelog key %q to %s: %w", w.Key, s.db.Opts().Dir, err)
		}
	}
	offset := ChangelogOffsetWrite(next)
	if err := wb.Set(offset.Key, offset.Value); err != nil {
		return fmt.Errorf("apply changelog offset %d to %s: %w", next, s.db.Opts().Dir, err)
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("apply %d changelog writes to %s: %w", len(writes), s.db.Opts().Dir, err)
	}
	s.fillMu.Lock()
	s.gen++
	for _, w := range writes {
		if len(w.Key) > 0 && w.Key[0] == prefixProfile {
			s.cache.Remove(string(w.Key[1:]))
		}
		if len(w.Key) > 0 && w.Key[0] == prefixErased && !w.Deleted {
			s.erasures.Store(true)
		}
	}
	s.fillMu.Unlock()
	return nil
}
