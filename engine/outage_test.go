package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/decide"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/state"
)

// TestBrokerOutage: the broker is killed under load and started again.
// Throughout the outage the profiles the stores hold stay readable and
// decide knows its customers (the group session is lost, the stores stay
// open, stale); when the broker is back everything resumes by itself,
// and every event the collect API acknowledged is applied, each event
// that reached the topic exactly once.
func TestBrokerOutage(t *testing.T) {
	eachKillableBroker(t, testBrokerOutage)
}

func testBrokerOutage(t *testing.T, broker killableBroker) {
	cfg := testConfig(t, broker.Addrs(), testkafka.Prefix(t), t.TempDir())
	cfg.Placements = map[string]config.Placement{"hero": {Fallback: "welcome"}}
	cfg.Offers = []config.Offer{{ID: "welcome", Placements: []string{"hero"}}}
	var logs syncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("engine log:\n%s", logs.String())
		}
	})
	e := startEngineLogging(t, cfg, &logs)

	keys := make([]string, 24)
	for i := range keys {
		keys[i] = fmt.Sprintf("o-%d", i)
	}
	post := func(client *http.Client, event string, n string) bool {
		var b strings.Builder
		b.WriteString(`{"batch": [`)
		for i, key := range keys {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `{"type": "track", "userId": %q, "event": %q, "messageId": "%s-%s-%s"}`, key, event, event, n, key)
		}
		b.WriteString("]}")
		req, err := http.NewRequest("POST", e.url+"/v1/batch", strings.NewReader(b.String()))
		if err != nil {
			t.Error(err)
			return false
		}
		req.SetBasicAuth(writeKey, "")
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	client := &http.Client{Timeout: 20 * time.Second}
	if !post(client, "Seed", "0") {
		t.Fatal("seed batch not acknowledged")
	}
	for _, key := range keys {
		e.waitProfile(t, key, func(v state.View) bool { return v.Events["Seed"] == 1 })
	}

	// Load: three senders, each a batch of one event per key at a time,
	// acknowledged or not (during the outage collect cannot produce).
	var mu sync.Mutex
	var acked []string
	stop := make(chan struct{})
	var load sync.WaitGroup
	for sender := range 3 {
		load.Go(func() {
			for n := 1; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("%d.%d", sender, n)
				if post(client, "Load", id) {
					mu.Lock()
					acked = append(acked, id)
					mu.Unlock()
				}
			}
		})
	}
	ackedCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	waitFor(t, "load acknowledged before the outage", 60*time.Second, func() bool { return ackedCount() >= 5 })

	broker.Kill(t)
	killed := time.Now()
	// Reads and decide, until the group session is seen lost and a while
	// after: the stores answer what they hold.
	failures := 0
	check := func() {
		for _, key := range keys[:6] {
			resp := do(t, "GET", e.url+"/v1/profiles/"+key, readKey, nil, nil)
			var v state.View
			if resp.Status == http.StatusOK {
				resp.json(t, &v)
			}
			if resp.Status != http.StatusOK || v.Events["Seed"] != 1 {
				if failures++; failures <= 5 {
					t.Errorf("during the outage, profile %s: %d %s", key, resp.Status, resp.Body)
				}
			}
			resp = do(t, "POST", e.url+"/v1/decide", readKey, fmt.Appendf(nil, `{"userId": %q, "placements": ["hero"]}`, key), nil)
			var a decide.Answer
			if resp.Status == http.StatusOK {
				resp.json(t, &a)
			}
			if resp.Status != http.StatusOK || !a.Known {
				if failures++; failures <= 5 {
					t.Errorf("during the outage, decide for %s: %d %s", key, resp.Status, resp.Body)
				}
			}
		}
	}
	waitFor(t, "the group session to be lost", 120*time.Second, func() bool {
		check()
		return strings.Contains(logs.String(), "group session lost")
	})
	t.Logf("group session lost %s after the kill", time.Since(killed).Round(time.Millisecond))
	for range 20 {
		check()
		time.Sleep(100 * time.Millisecond)
	}

	broker.Start(t)
	before := ackedCount()
	waitFor(t, "load acknowledged after the restart", 120*time.Second, func() bool { return ackedCount() >= before+10 })
	close(stop)
	load.Wait()
	waitFor(t, "the engine to be ready again", 120*time.Second, func() bool {
		return do(t, "GET", e.url+"/readyz", "", nil, nil).Status == http.StatusOK
	})

	// Every acknowledged event applied; every event in the topic once.
	landed := landedMessageIDs(t, broker.Addrs(), e.Topics().Events)
	mu.Lock()
	defer mu.Unlock()
	for _, key := range keys {
		for _, n := range acked {
			if id := fmt.Sprintf("Load-%s-%s", n, key); !landed[key][id] {
				t.Errorf("acknowledged event %s is not in the events topic", id)
			}
		}
		want := uint64(len(landed[key]) - 1) // less the seed
		v := e.waitProfile(t, key, func(v state.View) bool { return v.Events["Load"] >= want })
		if v.Events["Load"] != want || v.Events["Seed"] != 1 {
			t.Errorf("profile %s: events %v, want Load %d times (%d acknowledged) and Seed once", key, v.Events, want, len(acked))
		}
	}
	if got := metricValue(t, e.url, `tailor_events_total{outcome="dead_letter"}`); got != 0 {
		t.Errorf("%v dead letters", got)
	}
	select {
	case err := <-e.done:
		t.Fatalf("the engine stopped: %v", err)
	default:
	}
	t.Logf("%d of the load batches acknowledged, %d landed", len(acked), len(landed[keys[0]])-1)
}

// landedMessageIDs reads the events topic to its end and returns the
// messageIds of the committed events, by record key.
func landedMessageIDs(t *testing.T, brokers []string, topic string) map[string]map[string]bool {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	left := make(map[int32]int64)
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	out := make(map[string]map[string]bool)
	for len(left) > 0 {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s: %v (partitions left: %v)", topic, ctx.Err(), left)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if end, ok := left[r.Partition]; ok && r.Offset+1 >= end {
				delete(left, r.Partition)
			}
			if r.Attrs.IsControl() {
				return
			}
			var ev struct {
				MessageID string `json:"messageId"`
			}
			if err := json.Unmarshal(r.Value, &ev); err != nil || !bytes.Contains(r.Value, []byte(`"event"`)) {
				return
			}
			if out[string(r.Key)] == nil {
				out[string(r.Key)] = make(map[string]bool)
			}
			out[string(r.Key)][ev.MessageID] = true
		})
	}
	return out
}
