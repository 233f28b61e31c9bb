package testkafka

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/stream"
)

// EnvBrokers names the environment variable with the real test brokers.
const EnvBrokers = "TAILOR_TEST_BROKERS"

// Brokers returns the brokers for t. An embedded broker started for t is
// closed when t ends.
func Brokers(t testing.TB) []string {
	t.Helper()
	if b := os.Getenv(EnvBrokers); b != "" {
		return strings.Split(b, ",")
	}
	e, err := stream.StartEmbedded(t.TempDir(), 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("start embedded broker: %v", err)
	}
	t.Cleanup(e.Close)
	return e.Addrs()
}

// Real reports whether the tests run against a real Kafka broker.
func Real() bool { return os.Getenv(EnvBrokers) != "" }

// Prefix returns a topic prefix no other test of this run uses, so tests
// sharing a real broker do not see each other's topics.
func Prefix(t testing.TB) string {
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	if len(name) > 40 {
		name = name[:40]
	}
	return "test-" + name + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "."
}

// Consume reads every committed record of topic from the start (read
// committed, as consumers of tailor's transactional outputs must) until n
// records have arrived or the timeout passes, and returns them.
func Consume(t testing.TB, brokers []string, topic string, n int, timeout time.Duration) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n && ctx.Err() == nil {
		fetches := cl.PollFetches(ctx)
		fetches.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

// DeleteRecords deletes every record of topic, as retention would.
func DeleteRecords(t testing.TB, brokers []string, topic string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	offsets := make(kadm.Offsets)
	ends.Each(func(o kadm.ListedOffset) { offsets.AddOffset(o.Topic, o.Partition, o.Offset, -1) })
	resps, err := adm.DeleteRecords(ctx, offsets)
	if err == nil {
		err = resps.Error()
	}
	if err != nil {
		t.Fatalf("delete the records of %s: %v", topic, err)
	}
}
