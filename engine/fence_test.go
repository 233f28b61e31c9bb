package engine_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/decide"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/state"
	"github.com/tailorcdp/tailor/stream"
)

// TestDamagedPartitionIsFenced: one partition's store is damaged between
// runs (random bytes in a table, a truncated table, a removed one). The
// engine starts all the same and the other partitions serve and apply;
// the damaged one is fenced: its keys answer 503 naming it (profile and
// decide), tailor_partition_fenced says so, and an error is logged.
// Events for its keys sent meanwhile wait in Kafka: once the operator
// removes the damaged store, a restart rebuilds it from the events topic
// with everything, each event once.
func TestDamagedPartitionIsFenced(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, table string)
	}{
		{"random bytes in a table", func(t *testing.T, table string) {
			info, err := os.Stat(table)
			if err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 4096)
			rng := rand.New(rand.NewPCG(3, 4))
			for i := range b {
				b[i] = byte(rng.IntN(256))
			}
			f, err := os.OpenFile(table, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(b, info.Size()/3); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated table", func(t *testing.T, table string) {
			info, err := os.Stat(table)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(table, info.Size()/2); err != nil {
				t.Fatal(err)
			}
		}},
		{"removed table", func(t *testing.T, table string) {
			if err := os.Remove(table); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { testFenced(t, tc.damage) })
	}
}

func testFenced(t *testing.T, damage func(t *testing.T, table string)) {
	cfg := testConfig(t, testkafka.Brokers(t), testkafka.Prefix(t), t.TempDir())
	// Without a changelog: with one, the damaged store is restored from
	// it instead (TestDamagedStoreRestored).
	cfg.Store.Changelog = false
	cfg.Placements = map[string]config.Placement{"hero": {Fallback: "welcome"}}
	cfg.Offers = []config.Offer{{ID: "welcome", Placements: []string{"hero"}}}
	n := cfg.Kafka.Partitions
	const broken = 2
	// Keys for every partition, three of them in the one to damage.
	var keys []string
	perPartition := make(map[int32]int)
	for i := 0; len(perPartition) < n || perPartition[broken] < 3; i++ {
		key := "c-" + strconv.Itoa(i)
		keys = append(keys, key)
		perPartition[stream.PartitionOf(key, n)]++
	}
	send := func(e *running, event string) {
		t.Helper()
		var b strings.Builder
		b.WriteString(`{"batch": [`)
		for i, key := range keys {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `{"type": "track", "userId": %q, "event": %q, "messageId": "%s-%s"}`, key, event, key, event)
		}
		b.WriteString("]}")
		if resp := e.post(t, "/v1/batch", b.String()); resp.Status != http.StatusOK {
			t.Fatalf("batch: %d %s", resp.Status, resp.Body)
		}
	}

	e := startEngine(t, cfg)
	send(e, "First")
	for _, key := range keys {
		e.waitProfile(t, key, func(v state.View) bool { return v.Events["First"] == 1 })
	}
	e.stop()
	dir := filepath.Join(cfg.DataDir, e.Topics().Events+"-"+strconv.Itoa(broken))
	tables, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	if err != nil || len(tables) == 0 {
		t.Fatalf("no table in %s: %v", dir, err)
	}
	damage(t, tables[0])

	var logs syncBuffer
	e = startEngineLogging(t, cfg, &logs)
	send(e, "Second")
	for _, key := range keys {
		if stream.PartitionOf(key, n) != broken {
			e.waitProfile(t, key, func(v state.View) bool { return v.Events["First"] == 1 && v.Events["Second"] == 1 })
			continue
		}
		resp := do(t, "GET", e.url+"/v1/profiles/"+key, readKey, nil, nil)
		if want := "partition " + strconv.Itoa(broken) + " is fenced"; resp.Status != http.StatusServiceUnavailable || !bytes.Contains(resp.Body, []byte(want)) {
			t.Errorf("profile %s of the damaged partition: %d %s; want 503 saying %q", key, resp.Status, resp.Body, want)
		}
		resp = do(t, "POST", e.url+"/v1/decide", readKey, fmt.Appendf(nil, `{"userId": %q, "placements": ["hero"]}`, key), nil)
		if resp.Status != http.StatusServiceUnavailable || !bytes.Contains(resp.Body, []byte("fenced")) {
			t.Errorf("decide for %s of the damaged partition: %d %s; want 503", key, resp.Status, resp.Body)
		}
	}
	if got := metricValue(t, e.url, `tailor_partition_fenced{partition="`+strconv.Itoa(broken)+`"}`); got != 1 {
		t.Errorf("tailor_partition_fenced of partition %d is %v, want 1", broken, got)
	}
	if !strings.Contains(logs.String(), "partition fenced") || !strings.Contains(logs.String(), "partition="+strconv.Itoa(broken)) {
		t.Errorf("no log line says partition %d is fenced:\n%s", broken, logs.String())
	}
	e.stop()

	// The operator removes the damaged store: it is rebuilt from the
	// events topic, with what was sent while it was fenced, once.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	e = startEngine(t, cfg)
	for _, key := range keys {
		v := e.waitProfile(t, key, func(v state.View) bool { return v.Events["Second"] >= 1 })
		if v.Events["First"] != 1 || v.Events["Second"] != 1 {
			t.Errorf("profile %s after the rebuild: events %v, want First and Second once", key, v.Events)
		}
	}
	if got := metricValue(t, e.url, `tailor_partition_fenced{partition="`+strconv.Itoa(broken)+`"}`); got != 0 {
		t.Errorf("tailor_partition_fenced of the rebuilt partition is %v", got)
	}
	resp := do(t, "POST", e.url+"/v1/decide", readKey, fmt.Appendf(nil, `{"userId": %q, "placements": ["hero"]}`, keys[0]), nil)
	var a decide.Answer
	if resp.json(t, &a); resp.Status != http.StatusOK || !a.Known {
		t.Errorf("decide after the rebuild: %d %s", resp.Status, resp.Body)
	}
}

// startEngineLogging is startEngine with the engine's log written to w.
func startEngineLogging(t *testing.T, cfg *config.Config, w *syncBuffer) *running {
	t.Helper()
	return startEngineLoggingTo(t, cfg, w)
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
