package stream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// kfake keeps each partition's log in segment files (partitions/TOPIC-N/
// BASE.dat: record batches as on the wire) and, beside each, an index
// file (BASE.idx) with one entry per batch, in the same order. The entry
// carries what the batch itself does not say the way kfake reads it: the
// flag that the batch was written in a transaction. kfake writes the batch,
// then its entry, with two writes: a kill between them leaves a batch
// without an entry. At the reload kfake matches entries to batches by
// position, and takes a batch without one as written outside any
// transaction:
//
//   - the batch, if it was in a transaction that the crash left open,
//     counts as committed for read_committed readers (no abort covers
//     it), though the engine, which never saw it committed, writes its
//     records again: doubled outputs;
//   - every batch appended afterwards has its entry one place too early,
//     so each batch is read with the flag of the batch after it, at every
//     later reload: aborted transactions' records turn up as committed,
//     committed ones are taken for open.
//
// repairSegmentIndexes, run after a crash before kfake loads the
// directory, rewrites each index that does not match its segment from
// the segment's batches: the transaction flag is the batch's
// transactional attribute (kfake sets it for transactional data batches,
// never for control batches), the epoch its partition leader epoch.

// kfake's index entry: version, checksum, epoch, max earlier timestamp,
// flags (see kfake's encodeIndexEntry).
const (
	kfakeIndexEntrySize = 15
	kfakeIndexVersion   = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// kfakeIndexEntry encodes an index entry as kfake does.
func kfakeIndexEntry(epoch int32, maxEarlierTS int64, inTx bool) [kfakeIndexEntrySize]byte {
	var b [kfakeIndexEntrySize]byte
	b[0] = kfakeIndexVersion
	binary.LittleEndian.PutUint32(b[2:6], uint32(epoch))
	binary.LittleEndian.PutUint64(b[6:14], uint64(maxEarlierTS))
	if inTx {
		b[14] = 1
	}
	b[1] = byte(crc32.Checksum(b[2:], castagnoli))
	return b
}

// segmentIndex returns the index entries of the batches of a segment file
// (raw), up to the first batch that is cut short or damaged: kfake
// truncates the segment there.
func segmentIndex(raw []byte) []byte {
	var idx []byte
	var maxTS int64
	for pos := 0; pos+12 <= len(raw); {
		length := int(int32(binary.BigEndian.Uint32(raw[pos+8 : pos+12])))
		if length < 0 || length > 1<<30 || pos+12+length > len(raw) {
			break
		}
		b := raw[pos : pos+12+length]
		if len(b) >= 21 && binary.BigEndian.Uint32(b[17:21]) != crc32.Checksum(b[21:], castagnoli) {
			break
		}
		var rb kmsg.RecordBatch
		if err := rb.ReadFrom(b); err != nil {
			break
		}
		const transactional, control = 0x10, 0x20
		inTx := rb.Attributes&transactional != 0 && rb.Attributes&control == 0
		if pos == 0 {
			maxTS = rb.MaxTimestamp
		}
		maxTS = max(maxTS, rb.MaxTimestamp)
		e := kfakeIndexEntry(rb.PartitionLeaderEpoch, maxTS, inTx)
		idx = append(idx, e[:]...)
		pos += len(b)
	}
	return idx
}

// sameIndex reports whether the index file's entries (have) say what the
// segment's batches do (want): as many, each valid with the same epoch
// and transaction flag (the stored timestamp is not read back).
func sameIndex(have, want []byte) bool {
	if len(have) != len(want) {
		return false
	}
	for i := 0; i < len(want); i += kfakeIndexEntrySize {
		h, w := have[i:i+kfakeIndexEntrySize], want[i:i+kfakeIndexEntrySize]
		if byte(crc32.Checksum(h[2:], castagnoli)) != h[1] ||
			string(h[2:6]) != string(w[2:6]) || h[14]&1 != w[14]&1 {
			return false
		}
	}
	return true
}

// repairSegmentIndexes rewrites the index files of the embedded broker's
// data directory dir that do not match their segments, and returns the
// segments whose index it rewrote.
func repairSegmentIndexes(dir string) ([]string, error) {
	var repaired []string
	root := filepath.Join(dir, "partitions")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path == root {
				return fs.SkipDir
			}
			return err
		}
		if d.IsDir() || !strings.HasSuffix(path, ".dat") {
			return nil
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		idxPath := strings.TrimSuffix(path, ".dat") + ".idx"
		have, err := os.ReadFile(idxPath)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		want := segmentIndex(raw)
		if sameIndex(have, want) {
			return nil
		}
		tmp := idxPath + ".repair"
		if err := os.WriteFile(tmp, want, 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, idxPath); err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		repaired = append(repaired, rel)
		return nil
	})
	if err != nil {
		return repaired, fmt.Errorf("repair the segment indexes of %s: %w", dir, err)
	}
	return repaired, nil
}
