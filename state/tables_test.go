package state

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/tailorcdp/tailor/event"
)

// TestOpenDamagedStore: a store whose table (SST) is damaged between runs
// does not open, with an error, rather than answering wrong (4 KB of
// random bytes: 195 of 3,000 profiles read as never seen without
// checksums) or ending the process (a truncated table panics in Badger's
// own goroutines).
func TestOpenDamagedStore(t *testing.T) {
	for _, tc := range []struct {
		name    string
		damage  func(t *testing.T, path string, size int64)
		damaged bool // the error wraps ErrDamaged
	}{
		{"random bytes", func(t *testing.T, path string, size int64) {
			b := make([]byte, 4096)
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range b {
				b[i] = byte(rng.IntN(256))
			}
			writeAt(t, path, b, size/3)
		}, true},
		{"one byte flipped", func(t *testing.T, path string, size int64) {
			f, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			writeAt(t, path, []byte{f[size/2] ^ 0x40}, size/2)
		}, true},
		{"truncated", func(t *testing.T, path string, size int64) {
			if err := os.Truncate(path, size/2); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"removed", func(t *testing.T, path string, _ int64) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeProfiles(t, dir, 3000)
			tables, err := filepath.Glob(filepath.Join(dir, "*.sst"))
			if err != nil || len(tables) == 0 {
				t.Fatalf("no tables in %s: %v", dir, err)
			}
			info, err := os.Stat(tables[0])
			if err != nil {
				t.Fatal(err)
			}
			tc.damage(t, tables[0], info.Size())
			s, err := Open(dir, testOptions())
			if err == nil {
				s.Close()
				t.Fatal("a damaged store opened")
			}
			if tc.damaged && !errors.Is(err, ErrDamaged) {
				t.Errorf("error %v does not wrap ErrDamaged", err)
			}
			t.Log(err)
		})
	}
}

// TestOpenVerifiedStore: a store that is not damaged opens with its
// checksums verified, and answers.
func TestOpenVerifiedStore(t *testing.T) {
	dir := t.TempDir()
	writeProfiles(t, dir, 3000)
	s := openWith(t, dir, testOptions())
	defer s.Close()
	for i := range 3000 {
		if p, err := s.Profile(fmt.Sprintf("u%d", i)); err != nil || p.Key != fmt.Sprintf("u%d", i) {
			t.Fatalf("profile u%d: %v, %v", i, p, err)
		}
	}
}

// writeProfiles writes n profiles to a new store in dir and closes it,
// which writes them to a table.
func writeProfiles(t testing.TB, dir string, n int) {
	t.Helper()
	s := openStore(t, dir)
	p := event.NewParser(event.DefaultLimits())
	b := s.Begin()
	for i := range n {
		ev := parse(t, p, fmt.Sprintf(`{"type": "identify", "userId": "u%d", "traits": {"name": "someone with a long name %d"}}`, i, i))
		if _, err := b.Apply(&ev); err != nil {
			t.Fatal(err)
		}
		b.Grow(100)
		if b.Full() || i == n-1 {
			if err := b.Commit(int64(i + 1)); err != nil {
				t.Fatal(err)
			}
			b = s.Begin()
		}
	}
	b.Discard()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func writeAt(t *testing.T, path string, b []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestOpenWithOrphanTable: a table the MANIFEST does not list (a
// compaction's output that a crash cut short) is not damage: Badger
// deletes it, and the store opens with all it had.
func TestOpenWithOrphanTable(t *testing.T) {
	dir := t.TempDir()
	writeProfiles(t, dir, 3000)
	orphan := filepath.Join(dir, "000099.sst")
	if err := os.WriteFile(orphan, []byte("half a table, cut short by a crash"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := openWith(t, dir, testOptions())
	defer s.Close()
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the orphan table is still there: %v", err)
	}
	for i := range 3000 {
		if p, err := s.Profile(fmt.Sprintf("u%d", i)); err != nil || p.Key != fmt.Sprintf("u%d", i) {
			t.Fatalf("profile u%d: %v, %v", i, p, err)
		}
	}
}
