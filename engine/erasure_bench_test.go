package engine_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/state"
)

// BenchmarkErasure is erasures through the whole pipeline, over HTTP:
// DELETE /v1/profiles/{key} (acknowledged by Kafka), the partition
// applying it in a store batch and Kafka transaction of its own, and GET
// /v1/erasures/{id} seeing it done, polled every millisecond: from then
// on nothing of the profile is in the store. Each profile has traits, an
// order and two segments. "one" asks one erasure at a time; "8-clients"
// eight at a time, each asking the next once its last is done. It
// reports erasures/s and the time from DELETE to done (p50, p99).
func BenchmarkErasure(b *testing.B) {
	for _, clients := range []int{1, 8} {
		b.Run(fmt.Sprintf("%d-clients", clients), func(b *testing.B) {
			cfg := testConfig(b, testkafka.Brokers(b), testkafka.Prefix(b), b.TempDir())
			cfg.HTTP.AdminKeys = config.NewKeys(adminKey)
			cfg.Segments = map[string]string{"french": `traits.country == "FR"`, "buyer": `rfm.frequency > 0`}
			e := startEngine(b, cfg)
			n := max(b.N, clients)
			keys := make([]string, n)
			for i := range keys {
				keys[i] = fmt.Sprintf("erase-%d", i)
			}
			for start := 0; start < n; start += 100 {
				var batch strings.Builder
				batch.WriteString(`{"batch": [`)
				for i, key := range keys[start:min(start+100, n)] {
					if i > 0 {
						batch.WriteString(",")
					}
					fmt.Fprintf(&batch, `{"type": "identify", "userId": %q, "traits": {"country": "FR", "email": "%s@example.com"}},
					  {"type": "track", "userId": %q, "event": "Order Completed", "properties": {"order_id": "o-%s", "total": 10}}`, key, key, key, key)
				}
				batch.WriteString("]}")
				if resp := e.post(b, "/v1/batch", batch.String()); resp.Status != http.StatusOK {
					b.Fatalf("batch: %d %s", resp.Status, resp.Body)
				}
			}
			for _, key := range keys {
				e.waitProfile(b, key, func(v state.View) bool { return len(v.Segments) == 2 })
			}
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
			took := make([]time.Duration, n)
			var wg sync.WaitGroup
			next := make(chan int)
			b.ResetTimer()
			start := time.Now()
			for range clients {
				wg.Go(func() {
					for i := range next {
						took[i] = eraseAndWait(b, client, e.url, keys[i])
					}
				})
			}
			for i := range keys {
				next <- i
			}
			close(next)
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			slices.Sort(took)
			b.ReportMetric(float64(n)/elapsed.Seconds(), "erasures/s")
			b.ReportMetric(float64(took[n/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(took[n*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// eraseAndWait erases key and polls its erasure until it is done,
// returning how long that took.
func eraseAndWait(b *testing.B, client *http.Client, url, key string) time.Duration {
	start := time.Now()
	req, _ := http.NewRequest(http.MethodDelete, url+"/v1/profiles/"+key, nil)
	req.SetBasicAuth(adminKey, "")
	resp, err := client.Do(req)
	if err != nil {
		b.Error(err)
		return 0
	}
	var asked erasure
	err = jsonBody(resp, &asked)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		b.Errorf("DELETE %s: %d %v", key, resp.StatusCode, err)
		return 0
	}
	for {
		req, _ := http.NewRequest(http.MethodGet, url+"/v1/erasures/"+asked.ID, nil)
		req.SetBasicAuth(adminKey, "")
		resp, err := client.Do(req)
		if err != nil {
			b.Error(err)
			return 0
		}
		var got erasure
		if err := jsonBody(resp, &got); err != nil || resp.StatusCode != http.StatusOK {
			b.Errorf("GET erasure %s: %d %v", asked.ID, resp.StatusCode, err)
			return 0
		}
		if got.State == "done" {
			if got.Found == nil || !*got.Found {
				b.Errorf("erasure of %s found nothing", key)
			}
			return time.Since(start)
		}
		time.Sleep(time.Millisecond)
	}
}

// jsonBody decodes resp's JSON body into v and closes it.
func jsonBody(resp *http.Response, v any) error {
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
