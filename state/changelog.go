package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/dgraph-io/badger/v4"
)

// Write is one key a committed batch wrote to its store: the key's final
// value in the batch, or its deletion. A store is its writes, in commit
// order: the changelog (decision 0021) holds them, and Restorer writes
// them into a new store.
type Write struct {
	Key   []byte
	Value []byte // nil for a deletion, or a key written without a value
	// Deleted marks a deletion.
	Deleted bool
}

// set writes k with value v in the batch's transaction, and keeps the
// write for the changelog. Badger holds k and v until the commit, so they
// are not changed after; neither are they copied here.
func (b *Batch) set(k, v []byte) error {
	if err := b.txn.SetEntry(badger.NewEntry(k, v)); err != nil {
		return err
	}
	b.keep(Write{Key: k, Value: v})
	return nil
}

// del deletes k in the batch's transaction, and keeps the deletion for
// the changelog.
func (b *Batch) del(k []byte) error {
	if err := b.txn.Delete(k); err != nil {
		return err
	}
	b.keep(Write{Key: k, Deleted: true})
	return nil
}

func (b *Batch) keep(w Write) {
	if !b.s.opts.Changelog {
		return
	}
	if b.written == nil {
		b.written = make(map[string]int)
	}
	if i, ok := b.written[string(w.Key)]; ok {
		b.writes[i] = w
		return
	}
	b.written[string(w.Key)] = len(b.writes)
	b.writes = append(b.writes, w)
}

// Writes returns the writes of the batch once its commit has written
// them (CommitWith calls before after the last), the last write of each
// key, in the order the keys were first written; nil unless the store
// keeps a changelog (Options.Changelog). The offset the batch commits
// (NextOffset) is among them: a store rebuilt from the writes carries the
// input offset its last batch reached.
func (b *Batch) Writes() []Write { return b.writes }

// Present reports whether dir holds anything, without opening it: false
// for a store directory that does not exist or is empty.
func Present(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read the store directory %s: %w", dir, err)
	}
	return len(entries) > 0, nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// keyChangelogBase is written by the first batch a new store commits
// when it keeps a changelog: a changelog that holds it holds every write
// of the store since it was empty, and so can rebuild it. A store that
// began before its changelog never writes it (ChangelogComplete).
var keyChangelogBase = []byte("m/changelog-base")

func (b *Batch) markChangelogBase(offset []byte) error {
	if !b.s.opts.Changelog || !b.s.fresh {
		return nil
	}
	if err := b.set(keyChangelogBase, offset); err != nil {
		return fmt.Errorf("write the changelog base: %w", err)
	}
	return nil
}

// IsChangelogBase reports whether key is the one that marks a changelog
// holding every write since its store was empty (keyChangelogBase).
func IsChangelogBase(key []byte) bool { return string(key) == string(keyChangelogBase) }
