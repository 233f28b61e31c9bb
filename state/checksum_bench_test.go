package state

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// BenchmarkVerifyChecksums is the cost of Options.VerifyChecksums
// (decision 0017), with and without it, on a store of 100,000 workload
// events' profiles written and closed (its tables on disk):
//
//   - open: opening the store (at assignment), which verifies every
//     table with checksums on;
//   - read: a profile read that misses the profile cache and mostly the
//     block cache, so that blocks are read from the file and verified.
func BenchmarkVerifyChecksums(b *testing.B) {
	dir := b.TempDir()
	keys := writeWorkloadStore(b, dir, 100_000)
	tables, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	var size int64
	for _, t := range tables {
		if info, err := os.Stat(t); err == nil {
			size += info.Size()
		}
	}
	b.Logf("%d profiles, %d tables, %d bytes", len(keys), len(tables), size)
	options := func(verify bool) Options {
		o := DefaultOptions()
		o.VerifyChecksums = verify
		o.CacheProfiles = 1
		o.BlockCacheSize = 1 << 20
		return o
	}
	for _, verify := range []bool{false, true} {
		b.Run("open/verify="+strconv.FormatBool(verify), func(b *testing.B) {
			for b.Loop() {
				s, err := Open(dir, options(verify))
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	for _, verify := range []bool{false, true} {
		b.Run("read/verify="+strconv.FormatBool(verify), func(b *testing.B) {
			s, err := Open(dir, options(verify))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			i := 0
			for b.Loop() {
				if _, err := s.Profile(keys[(i*7919)%len(keys)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// writeWorkloadStore applies n workload events to a new store in dir,
// closes it and returns the profile keys.
func writeWorkloadStore(b *testing.B, dir string, n int) []string {
	b.Helper()
	events := workloadEvents(b, n)
	s, err := Open(dir, DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	var keys []string
	seen := make(map[string]bool)
	batch := s.Begin()
	for i := range events {
		if _, err := batch.Apply(&events[i]); err != nil {
			b.Fatal(err)
		}
		if k := events[i].Key(); !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
		if batch.Full() || (i+1)%4000 == 0 {
			if err := batch.Commit(int64(i + 1)); err != nil {
				b.Fatal(err)
			}
			batch = s.Begin()
		}
	}
	if err := batch.Commit(int64(n)); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	return keys
}
