package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/ristretto/v2/z"
)

// ErrDamaged is wrapped by the error of Open for a store whose files are
// damaged: a table (SST) that cannot be read, or whose checksums do not
// match its contents.
var ErrDamaged = errors.New("store files damaged")

// checkTables opens every table of the store in dir that its MANIFEST
// lists, as Badger is about to, verifying the checksums of all its blocks
// when verify is set, and returns an error wrapping ErrDamaged for the
// first that is damaged. Tables the MANIFEST does not list are left
// alone: Badger deletes them (a compaction's output that a crash cut
// short).
//
// Badger opens a store's tables in goroutines of its own, where a damaged
// table index (a truncated file) panics and ends the process: the whole
// engine, for one partition's file. Here such a table is an error, which
// the caller can confine to that store.
func checkTables(dir string, bo badger.Options, verify bool) error {
	manifest, err := readManifest(dir, bo)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrDamaged, badger.ManifestFilename, err)
	}
	opts := table.Options{
		ReadOnly:           true,
		TableSize:          uint64(bo.BaseTableSize),
		BlockSize:          bo.BlockSize,
		BloomFalsePositive: bo.BloomFalsePositive,
		ChkMode:            options.NoVerification,
	}
	for id, tm := range manifest.Tables {
		path := table.NewFilename(id, dir)
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			continue // Badger's open says so
		}
		opts.Compression = tm.Compression
		if err := checkTable(path, opts, verify); err != nil {
			return fmt.Errorf("%w: table %s: %w", ErrDamaged, filepath.Base(path), err)
		}
	}
	return nil
}

// readManifest returns what the MANIFEST of the store in dir lists, none
// for a store that has none yet. It only reads the file.
func readManifest(dir string, bo badger.Options) (m badger.Manifest, err error) {
	f, err := os.Open(filepath.Join(dir, badger.ManifestFilename))
	if errors.Is(err, fs.ErrNotExist) {
		return badger.Manifest{}, nil
	}
	if err != nil {
		return m, err
	}
	defer f.Close()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cannot be read: %v", r)
		}
	}()
	m, _, err = badger.ReplayManifestFile(f, bo.ExternalMagicVersion, bo)
	return m, err
}

// checkTable opens the table at path with opts, verifies its checksums
// when verify is set, and closes it again.
func checkTable(path string, opts table.Options, verify bool) (err error) {
	if _, ok := table.ParseFileID(filepath.Base(path)); !ok {
		return nil // not one of Badger's tables
	}
	mf, err := z.OpenMmapFile(path, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	stage := "reading its index"
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: %s", stage, strings.Join(strings.Fields(fmt.Sprint(r)), " "))
		}
		if cerr := mf.Close(-1); err == nil && cerr != nil {
			err = cerr
		}
	}()
	// Without verification, OpenTable closes mf only for a file it could
	// not stat or whose name is not a table's, which ours is: mf is
	// closed once, above (twice would unmap memory that may be another
	// file's by then).
	t, err := table.OpenTable(mf, opts)
	if err != nil {
		return err
	}
	if verify {
		// A block that fails its checksum (or to decompress) panics in
		// Badger v4.9's VerifyChecksum, which reads the offset of the
		// block it could not read; recovered above.
		stage = "a block fails its checksum or cannot be read"
		return t.VerifyChecksum()
	}
	return nil
}
