package engine_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/state"
	"github.com/tailorcdp/tailor/stream"
)

// TestMisplacedRecordsAreRerouted: a producer whose partitioner is not
// Kafka's murmur2 (kcat's default, a hand-picked partition) writes
// correctly keyed records to every partition but the right one. Each is
// produced again to its key's partition and applied there once: one
// profile per key, in its own partition's store, every event counted
// once, readable by its key, and each record counted as rerouted. An
// identity record read from the wrong partition moves the profile all the
// same.
func TestMisplacedRecordsAreRerouted(t *testing.T) {
	brokers := testkafka.Brokers(t)
	cfg := testConfig(t, brokers, testkafka.Prefix(t), t.TempDir())
	e := startEngine(t, cfg)
	topics := e.Topics()
	n := cfg.Kafka.Partitions

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	produce := func(recs ...*kgo.Record) {
		t.Helper()
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	wrong := func(key string) []int32 {
		var out []int32
		for p := range int32(n) {
			if p != stream.PartitionOf(key, n) {
				out = append(out, p)
			}
		}
		return out
	}

	// Events keyed by their profile key (userId, else anonymousId), each
	// written to every wrong partition; one without a messageId.
	type keyed struct{ key, member string }
	var keys []keyed
	for i := range 8 {
		keys = append(keys, keyed{"user-" + strconv.Itoa(i), "userId"}, keyed{"anon-" + strconv.Itoa(i), "anonymousId"})
	}
	var recs []*kgo.Record
	for _, k := range keys {
		for _, p := range wrong(k.key) {
			value := fmt.Sprintf(`{"type": "track", %q: %q, "event": "Misplaced", "messageId": "m-%s-%d"}`, k.member, k.key, k.key, p)
			if p == wrong(k.key)[0] {
				value = fmt.Sprintf(`{"type": "track", %q: %q, "event": "Misplaced"}`, k.member, k.key)
			}
			recs = append(recs, &kgo.Record{Topic: topics.Events, Partition: p, Key: []byte(k.key), Value: []byte(value)})
		}
	}
	// A visitor's events on its own partition, then a link record (the
	// engine's own kind) moving its profile into a customer's, read from
	// a wrong partition.
	const visitor, customer = "visitor-x", "customer-x"
	for i := range 3 {
		recs = append(recs, &kgo.Record{Topic: topics.Events, Partition: stream.PartitionOf(visitor, n), Key: []byte(visitor),
			Value: fmt.Appendf(nil, `{"type": "track", "anonymousId": %q, "event": "Browsed", "messageId": "v-%d"}`, visitor, i)})
	}
	produce(recs...)
	e.waitProfile(t, visitor, func(v state.View) bool { return v.Events["Browsed"] == 3 })
	produce(&kgo.Record{Topic: topics.Events, Partition: wrong(visitor)[0], Key: []byte(visitor), Value: []byte(customer),
		Headers: []kgo.RecordHeader{{Key: stream.HeaderIdentity, Value: []byte(stream.IdentityLink)}}})
	misplaced := len(recs) - 3 + 1

	for _, k := range keys {
		v := e.waitProfile(t, k.key, func(v state.View) bool { return v.Events["Misplaced"] >= uint64(n-1) })
		if v.Key != k.key || v.Events["Misplaced"] != uint64(n-1) || v.Calls["track"] != uint64(n-1) {
			t.Errorf("profile %s: key %q, events %v, calls %v; want %d Misplaced", k.key, v.Key, v.Events, v.Calls, n-1)
		}
	}
	moved := e.waitProfile(t, visitor, func(v state.View) bool { return v.Key == customer })
	if moved.Events["Browsed"] != 3 {
		t.Errorf("visitor's profile moved into %s with events %v, want 3 Browsed", moved.Key, moved.Events)
	}
	waitFor(t, "the rerouted count", 30*time.Second, func() bool {
		return metricValue(t, e.url, `tailor_events_total{outcome="rerouted"}`) >= float64(misplaced)
	})
	if got := metricValue(t, e.url, `tailor_events_total{outcome="rerouted"}`); got != float64(misplaced) {
		t.Errorf("rerouted %v records, want %d", got, misplaced)
	}
	if got := metricValue(t, e.url, `tailor_events_total{outcome="dead_letter"}`); got != 0 {
		t.Errorf("%v dead letters, want none", got)
	}

	// One profile per key, in its own partition's store.
	e.stop()
	for p := range n {
		dir := filepath.Join(cfg.DataDir, topics.Events+"-"+strconv.Itoa(p))
		for _, key := range storedKeys(t, dir) {
			if want := stream.PartitionOf(key, n); want != int32(p) {
				t.Errorf("profile %q stored in partition %d, its key's partition is %d", key, p, want)
			}
		}
	}
}

// storedKeys returns the profile keys in the store in dir.
func storedKeys(t *testing.T, dir string) []string {
	t.Helper()
	opts := state.DefaultOptions()
	opts.MemTableSize, opts.BlockCacheSize = 4<<20, 4<<20
	s, err := state.Open(dir, opts)
	if err != nil {
		t.Fatalf("open store %s: %v", dir, err)
	}
	defer s.Close()
	var keys []string
	if err := s.Each(context.Background(), func(p *state.Profile) error {
		keys = append(keys, p.Key)
		return nil
	}); err != nil {
		t.Fatalf("profiles of %s: %v", dir, err)
	}
	return keys
}

// metricValue returns the value of the sample named (with its labels) on
// the engine's /metrics, 0 when absent.
func metricValue(t *testing.T, url, sample string) float64 {
	t.Helper()
	resp := do(t, "GET", url+"/metrics", "", nil, nil)
	if resp.Status != http.StatusOK {
		t.Fatalf("GET /metrics: %d", resp.Status)
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`)
	m := re.FindSubmatch(resp.Body)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(m[1])), 64)
	if err != nil {
		t.Fatalf("metric %s: %v", sample, err)
	}
	return v
}
