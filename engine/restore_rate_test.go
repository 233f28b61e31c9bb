package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strconv"
	"testing"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/state"
	"github.com/tailorcdp/tailor/stream"
)

// TestRestoreRate measures a restore, for BENCHMARKS.md: one partition
// applies a product view and an order for each of TAILOR_RESTORE_PROFILES
// customers (a profile each), its store is deleted, and the
// engine restores it from the changelog, twice each way (through the
// write path, and sorted straight into tables); the restore's log line
// gives records, bytes and seconds. Skipped unless TAILOR_RESTORE_PROFILES
// is set; TAILOR_RESTORE_CPUPROFILE names a file for a CPU profile of the
// sorted restores.
func TestRestoreRate(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("TAILOR_RESTORE_PROFILES"))
	if n <= 0 {
		t.Skip("TAILOR_RESTORE_PROFILES not set")
	}
	cfg := testConfig(t, testkafka.Brokers(t), testkafka.Prefix(t), t.TempDir())
	cfg.Kafka.Partitions = 1
	cfg.Store.Changelog = true
	cfg.Store.MemTableSize = 64 << 20
	events := viewsAndOrders(n)
	e := startEngine(t, cfg)
	p, err := stream.NewProducer(stream.ClientConfig{Brokers: e.Brokers()})
	if err != nil {
		t.Fatal(err)
	}
	stats, err := stream.Import(context.Background(), events, stream.ImportOptions{Producer: p, Topic: e.Topics().Events, Limits: testLimits()})
	p.Close()
	if err != nil {
		t.Fatal(err)
	}
	waitApplied(t, e, stats.Accepted)
	e.stop()
	dir := filepath.Join(cfg.DataDir, e.Topics().Events+"-0")
	s, err := state.Open(dir, state.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	profiles, err := s.CountProfiles()
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	// Each way of restoring (decision 0021), in the same run on the same
	// changelog: through Badger's write path, the baseline, and sorted
	// straight into tables.
	for _, way := range []struct {
		name   string
		memory config.ByteSize
	}{
		{"write path", 0},
		{"sorted tables", config.Default().Store.RestoreMemory},
		{"write path", 0},
		{"sorted tables", config.Default().Store.RestoreMemory},
	} {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		cfg.Store.RestoreMemory = way.memory
		var logs syncBuffer
		if f := os.Getenv("TAILOR_RESTORE_CPUPROFILE"); f != "" && way.memory > 0 {
			out, err := os.Create(f)
			if err != nil {
				t.Fatal(err)
			}
			pprof.StartCPUProfile(out)
		}
		r := startEngineLogging(t, cfg, &logs) // ready once restored
		pprof.StopCPUProfile()
		m := regexp.MustCompile(`restored store from the changelog.* records=(\d+) bytes=(\d+) sorted=(\w+) offsets=(\d+) seconds=([0-9.e+-]+) read_seconds=([0-9.e+-]+)`).FindStringSubmatch(logs.String())
		if m == nil {
			t.Fatalf("no restore logged:\n%s", logs.String())
		}
		records, _ := strconv.ParseFloat(m[1], 64)
		b, _ := strconv.ParseFloat(m[2], 64)
		secs, _ := strconv.ParseFloat(m[5], 64)
		t.Logf("%s (sorted=%s): %d events, %d profiles: restored %.0f records, %.1f MB in %.2f s (%s s reading): %.0f profiles/s, %.0f records/s, %.1f MB/s",
			way.name, m[3], stats.Accepted, profiles, records, b/1e6, secs, m[6], float64(profiles)/secs, records/secs, b/1e6/secs)
		r.stop()
		s, err := state.Open(dir, state.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.CountProfiles()
		s.Close()
		if err != nil || got != profiles {
			t.Errorf("%s: the restored store holds %d profiles (%v), want %d", way.name, got, err, profiles)
		}
	}
}

// viewsAndOrders returns n customers' events, a product view and an
// order each, one JSON event a line.
func viewsAndOrders(n int) *bytes.Buffer {
	var events bytes.Buffer
	for i := range n {
		fmt.Fprintf(&events, `{"type": "track", "userId": "u%d", "event": "Product Viewed", "messageId": "v%d", "properties": {"product_id": "p%d", "category": "c%d", "price": 10}}`+"\n", i, i, i%1000, i%20)
		fmt.Fprintf(&events, `{"type": "track", "userId": "u%d", "event": "Order Completed", "messageId": "o%d", "properties": {"order_id": "o%d", "total": %d}}`+"\n", i, i, i, 1+i%300)
	}
	return &events
}
