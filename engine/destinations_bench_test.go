package engine_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/internal/testkafka"
)

// BenchmarkDestinationDelivery sends identify calls to the collect API at
// about 1,000 a second (batches of 10 every 10 ms), each putting a new
// profile in a segment that a webhook destination receives, and reports
// the delivery latency from the change's record to the receiver's 2xx
// (the destination's histogram: what delivery adds), and from the start
// of the collect call that sent the event to the change's arrival at the
// receiver (the whole pipeline: collect, Kafka, apply, the transaction,
// delivery).
func BenchmarkDestinationDelivery(b *testing.B) {
	crm := newHook(b)
	parsed, err := config.Parse([]byte(destinationDoc(fmt.Sprintf(
		"  crm:\n    webhook: {url: %q, secret: %q, headers: {X-Shop: test}}\n    segments: [adult]\n", crm.srv.URL, hookSecret))), "bench")
	if err != nil {
		b.Fatal(err)
	}
	cfg := testConfig(b, testkafka.Brokers(b), testkafka.Prefix(b), b.TempDir())
	cfg.Segments, cfg.Destinations = parsed.Segments, parsed.Destinations
	e := startEngine(b, cfg)
	posted := make(map[string]time.Time, b.N)
	b.ResetTimer()
	for sent := 0; sent < b.N; {
		var batch []string
		now := time.Now()
		for range min(10, b.N-sent) {
			key := fmt.Sprintf("bench-%d", sent)
			posted[key] = now
			batch = append(batch, fmt.Sprintf(`{"type": "identify", "userId": %q, "traits": {"age": 30}}`, key))
			sent++
		}
		if resp := e.post(b, "/v1/batch", `{"batch": [`+strings.Join(batch, ",")+`]}`); resp.Status != http.StatusOK {
			b.Fatalf("batch: %d %s", resp.Status, resp.Body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitFor(b, "every change delivered", 5*time.Minute, func() bool { return len(crm.changes()) >= b.N })
	b.StopTimer()
	whole := hdrhistogram.New(1, 3600*1e6, 3)
	for key, at := range crm.arrivals() {
		_ = whole.RecordValue(max(1, at.Sub(posted[key]).Microseconds()))
	}
	var body struct {
		Destinations []struct {
			Latency struct{ P50, P99 float64 }
		}
	}
	do(b, "GET", e.url+"/v1/destinations", readKey, nil, nil).json(b, &body)
	b.ReportMetric(body.Destinations[0].Latency.P50*1000, "record-p50-ms")
	b.ReportMetric(body.Destinations[0].Latency.P99*1000, "record-p99-ms")
	b.ReportMetric(float64(whole.ValueAtQuantile(50))/1000, "collect-p50-ms")
	b.ReportMetric(float64(whole.ValueAtQuantile(99))/1000, "collect-p99-ms")
}
