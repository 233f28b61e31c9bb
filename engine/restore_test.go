package engine_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/bench/dataset"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/state"
	"github.com/tailorcdp/tailor/stream"
)

// TestRestoreFromChangelog: an engine applies the first Online Retail
// events and stops; its partition stores are deleted, and the events
// topic's records too, as retention would. A new engine restores every
// store from the changelog: every profile, the segment sizes and the RFM
// segments read the same as before, and the restore metrics say so.
func TestRestoreFromChangelog(t *testing.T) {
	const csvPath = "../../shared/data/online-retail.csv.gz"
	if _, err := os.Stat(csvPath); err != nil {
		t.Skipf("data set not present: %v", err)
	}
	f, err := dataset.OpenMaybeGzip(csvPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var all bytes.Buffer
	if _, err := dataset.WriteRetailEvents(bufio.NewReader(f), &all); err != nil {
		t.Fatal(err)
	}
	const n = 5000
	lines := bytes.SplitAfterN(all.Bytes(), []byte("\n"), n+1)[:n]
	events := bytes.Join(lines, nil)
	keys := make(map[string]bool)
	for _, l := range lines {
		var ev struct {
			UserID string `json:"userId"`
		}
		if err := json.Unmarshal(l, &ev); err == nil && ev.UserID != "" {
			keys[ev.UserID] = true
		}
	}

	brokers := testkafka.Brokers(t)
	cfg := testConfig(t, brokers, testkafka.Prefix(t), t.TempDir())
	cfg.Store.Changelog = true
	var clock atomic.Int64
	clock.Store(time.Date(2011, 12, 10, 0, 0, 0, 0, time.UTC).UnixMilli())
	cfg.Clock = func() time.Time { return time.UnixMilli(clock.Load()).UTC() }
	cfg.RFMSegments = true
	e := startEngine(t, cfg)
	p, err := stream.NewProducer(stream.ClientConfig{Brokers: e.Brokers()})
	if err != nil {
		t.Fatal(err)
	}
	stats, err := stream.Import(context.Background(), bytes.NewReader(events), stream.ImportOptions{Producer: p, Topic: e.Topics().Events, Limits: testLimits()})
	p.Close()
	if err != nil || stats.Accepted != n {
		t.Fatalf("import: %v; %s", err, stats)
	}
	waitApplied(t, e, n)
	before := readAll(t, e, keys)
	topics := e.Topics()
	// The events are all applied: deleting them now is as deleting them
	// once the engine has stopped (the embedded broker stops with it).
	testkafka.DeleteRecords(t, e.Brokers(), topics.Events)
	e.stop()

	dirs, err := filepath.Glob(filepath.Join(cfg.DataDir, topics.Events+"-*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no partition store in the data directory: %v", err)
	}
	for _, dir := range dirs {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
	}
	e = startEngine(t, cfg)
	after := readAll(t, e, keys)
	for key, b := range before {
		if !bytes.Equal(after[key], b) {
			t.Errorf("%s after the restore:\n%s\nwant\n%s", key, after[key], b)
		}
	}
	restored := 0.0
	for id := range cfg.Kafka.Partitions {
		restored += metricValue(t, e.url, `tailor_restore_records_total{partition="`+strconv.Itoa(id)+`"}`)
	}
	if restored < float64(len(keys)) {
		t.Errorf("tailor_restore_records_total sums to %v, want at least a record per profile (%d)", restored, len(keys))
	}
}

// readAll reads every profile of keys and the segment sizes, by the
// path they are read at, once the engine answers for all.
func readAll(t *testing.T, e *running, keys map[string]bool) map[string][]byte {
	t.Helper()
	out := make(map[string][]byte)
	for key := range keys {
		path := "/v1/profiles/" + key
		var resp response
		waitFor(t, path, 60*time.Second, func() bool {
			resp = do(t, "GET", e.url+path, readKey, nil, nil)
			return resp.Status != http.StatusServiceUnavailable
		})
		if resp.Status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.Status, resp.Body)
		}
		out[path] = resp.Body
	}
	resp := do(t, "GET", e.url+"/v1/segments", readKey, nil, nil)
	if resp.Status != http.StatusOK {
		t.Fatalf("GET /v1/segments: %d %s", resp.Status, resp.Body)
	}
	out["/v1/segments"] = resp.Body
	return out
}

// TestDamagedStoreRestored: a partition's store is damaged between runs
// (a table truncated); with the changelog the next start restores it
// rather than fencing the partition, and its profiles read as before.
func TestDamagedStoreRestored(t *testing.T) {
	cfg := testConfig(t, testkafka.Brokers(t), testkafka.Prefix(t), t.TempDir())
	cfg.Store.Changelog = true
	const broken = 2
	keys := make(map[string]bool)
	var batch strings.Builder
	batch.WriteString(`{"batch": [`)
	for i := 0; i < 200; i++ {
		key := "c-" + strconv.Itoa(i)
		keys[key] = true
		if i > 0 {
			batch.WriteString(",")
		}
		fmt.Fprintf(&batch, `{"type": "track", "userId": %q, "event": "Seen", "messageId": "m-%d", "properties": {"n": %d}}`, key, i, i)
	}
	batch.WriteString("]}")
	e := startEngine(t, cfg)
	if resp := e.post(t, "/v1/batch", batch.String()); resp.Status != http.StatusOK {
		t.Fatalf("batch: %d %s", resp.Status, resp.Body)
	}
	for key := range keys {
		e.waitProfile(t, key, func(v state.View) bool { return v.Events["Seen"] == 1 })
	}
	before := readAll(t, e, keys)
	e.stop()
	dir := filepath.Join(cfg.DataDir, e.Topics().Events+"-"+strconv.Itoa(broken))
	tables, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	if err != nil || len(tables) == 0 {
		t.Fatalf("no table in %s: %v", dir, err)
	}
	info, err := os.Stat(tables[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(tables[0], info.Size()/2); err != nil {
		t.Fatal(err)
	}

	e = startEngine(t, cfg)
	after := readAll(t, e, keys)
	for key, b := range before {
		if !bytes.Equal(after[key], b) {
			t.Errorf("%s after the restore:\n%s\nwant\n%s", key, after[key], b)
		}
	}
	label := `{partition="` + strconv.Itoa(broken) + `"}`
	if got := metricValue(t, e.url, "tailor_partition_fenced"+label); got != 0 {
		t.Errorf("tailor_partition_fenced%s is %v, want 0", label, got)
	}
	if got := metricValue(t, e.url, "tailor_restore_records_total"+label); got == 0 {
		t.Errorf("tailor_restore_records_total%s is 0: the damaged store was not restored", label)
	}
}

// TestBehindStoreRestored: the stores are put back from an old copy
// (an old disk) after the events they lack have gone from the events
// topic; the stores, behind its start, are restored from the changelog
// rather than going on with what they had.
func TestBehindStoreRestored(t *testing.T) {
	cfg := testConfig(t, testkafka.Brokers(t), testkafka.Prefix(t), t.TempDir())
	cfg.Store.Changelog = true
	keys := make(map[string]bool)
	send := func(e *running, event string) {
		t.Helper()
		var b strings.Builder
		b.WriteString(`{"batch": [`)
		for i := range 100 {
			key := "c-" + strconv.Itoa(i)
			keys[key] = true
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `{"type": "track", "userId": %q, "event": %q, "messageId": "%s-%s"}`, key, event, key, event)
		}
		b.WriteString("]}")
		if resp := e.post(t, "/v1/batch", b.String()); resp.Status != http.StatusOK {
			t.Fatalf("batch: %d %s", resp.Status, resp.Body)
		}
		for key := range keys {
			e.waitProfile(t, key, func(v state.View) bool { return v.Events[event] == 1 })
		}
	}
	e := startEngine(t, cfg)
	send(e, "First")
	e.stop()
	old := t.TempDir()
	if err := os.CopyFS(old, os.DirFS(cfg.DataDir)); err != nil {
		t.Fatal(err)
	}
	e = startEngine(t, cfg)
	send(e, "Second")
	before := readAll(t, e, keys)
	testkafka.DeleteRecords(t, e.Brokers(), e.Topics().Events)
	e.stop()
	dirs, err := filepath.Glob(filepath.Join(cfg.DataDir, e.Topics().Events+"-*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no partition store in the data directory: %v", err)
	}
	for _, dir := range dirs {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.CopyFS(dir, os.DirFS(filepath.Join(old, filepath.Base(dir)))); err != nil {
			t.Fatal(err)
		}
	}

	e = startEngine(t, cfg)
	after := readAll(t, e, keys)
	for key, b := range before {
		if !bytes.Equal(after[key], b) {
			t.Errorf("%s after the restore:\n%s\nwant\n%s", key, after[key], b)
		}
	}
}
