package deliver

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkDeliver measures deliveries per second to a local receiver
// that answers 204 at once, from a backlog of b.N changes over 1000 keys
// on the segments topic (embedded broker), per batch size; and, at a
// steady 1000 changes a second, the latency from a change's record to its
// delivery (p50, p99).
func BenchmarkDeliver(b *testing.B) {
	for _, batch := range []int{1, 50} {
		b.Run(fmt.Sprintf("backlog/batch=%d", batch), func(b *testing.B) { benchBacklog(b, batch) })
	}
	b.Run("steady/1000/s", benchSteady)
	b.Run("steady/1000/s/baseline-consume-only", benchSteadyConsume)
}

// benchSteadyConsume is the baseline of benchSteady: a plain
// read_committed consumer of the same records, no HTTP; its latency is
// the part of the delivery latency Kafka takes.
func benchSteadyConsume(b *testing.B) {
	brokers, topics, cl := testTopics(b)
	consumer, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topics.Segments),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		b.Fatal(err)
	}
	defer consumer.Close()
	hist := hdrhistogram.New(1, 3600*1e6, 3)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for seen := 0; seen < b.N; {
			fetches := consumer.PollFetches(context.Background())
			now := time.Now()
			fetches.EachRecord(func(r *kgo.Record) {
				seen++
				_ = hist.RecordValue(max(1, now.Sub(r.Timestamp).Microseconds()))
			})
		}
	}()
	b.ResetTimer()
	steadyProduce(b, cl, topics.Segments, 0, b.N)
	<-done
	b.ReportMetric(float64(hist.ValueAtQuantile(50))/1000, "p50-ms")
	b.ReportMetric(float64(hist.ValueAtQuantile(99))/1000, "p99-ms")
}

// steadyProduce writes n changes from from on, 1000 a second.
func steadyProduce(b *testing.B, cl *kgo.Client, topic string, from, n int) {
	const perTick, tick = 10, 10 * time.Millisecond
	for sent := from; sent < from+n; {
		k := min(perTick, from+n-sent)
		benchProduce(b, cl, topic, sent, k)
		sent += k
		time.Sleep(tick)
	}
}

// countingReceiver answers 204 and counts the changes it received.
func countingReceiver(b *testing.B) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		changes, err := decodeBodyFrom(r)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		n.Add(int64(changes))
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(srv.Close)
	return srv, &n
}

func decodeBodyFrom(r *http.Request) (int, error) {
	var buf [1 << 16]byte
	raw := make([]byte, 0, 1<<12)
	for {
		n, err := r.Body.Read(buf[:])
		raw = append(raw, buf[:n]...)
		if err != nil {
			break
		}
	}
	changes, err := decodeBody(raw)
	return len(changes), err
}

func benchProduce(b *testing.B, cl *kgo.Client, topic string, from, n int) {
	records := make([]*kgo.Record, 0, n)
	for i := from; i < from+n; i++ {
		key := fmt.Sprintf("k%d", i%1000)
		v := fmt.Sprintf(`{"key":%q,"segment":"cart_abandoner","change":"entered","time":%q}`, key, time.Now().UTC().Format(time.RFC3339Nano))
		records = append(records, &kgo.Record{Topic: topic, Key: []byte(key), Value: []byte(v)})
	}
	if err := cl.ProduceSync(context.Background(), records...).FirstErr(); err != nil {
		b.Fatal(err)
	}
}

func benchBacklog(b *testing.B, batch int) {
	brokers, topics, cl := testTopics(b)
	benchProduce(b, cl, topics.Segments, 0, b.N)
	srv, got := countingReceiver(b)
	b.ResetTimer()
	start := time.Now()
	startDeliverer(b, brokers, topics, "bench-deliver", testDest("crm", srv.URL, batch))
	for got.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "deliveries/s")
}

func benchSteady(b *testing.B) {
	brokers, topics, cl := testTopics(b)
	srv, got := countingReceiver(b)
	d := startDeliverer(b, brokers, topics, "bench-deliver", testDest("crm", srv.URL, 1))
	// Wait for the group: one change delivered.
	benchProduce(b, cl, topics.Segments, 0, 1)
	for got.Load() < 1 {
		time.Sleep(time.Millisecond)
	}
	b.ResetTimer()
	steadyProduce(b, cl, topics.Segments, 1, b.N)
	for got.Load() < int64(b.N+1) {
		time.Sleep(time.Millisecond)
	}
	s := d.Stats()[0]
	b.ReportMetric(s.Latency.P50*1000, "p50-ms")
	b.ReportMetric(s.Latency.P99*1000, "p99-ms")
}
