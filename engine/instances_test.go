package engine_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/decide"
	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/serve"
	"github.com/tailorcdp/tailor/state"
	"github.com/tailorcdp/tailor/stream"
)

// startInstances starts two engines, a and b, in one group, each with
// the test configuration as configure changes it.
func startInstances(t *testing.T, configure func(*config.Config)) []*running {
	brokers, prefix := testkafka.Brokers(t), testkafka.Prefix(t)
	var engines []*running
	for _, id := range []string{"a", "b"} {
		cfg := testConfig(t, brokers, prefix, t.TempDir())
		cfg.Kafka.InstanceID = id
		configure(cfg)
		engines = append(engines, startEngine(t, cfg))
	}
	return engines
}

// TestTwoInstances runs two engines in one group, each holding some of the
// partitions: segment sizes and offer statistics are summed over both, so
// each instance reports the whole population.
func TestTwoInstances(t *testing.T) {
	engines := startInstances(t, func(cfg *config.Config) {
		cfg.Segments = map[string]string{"french_adult": `traits.country == "FR" && traits.age >= 18`}
		cfg.Placements = map[string]config.Placement{"hero": {Fallback: "welcome"}}
		cfg.Offers = []config.Offer{{ID: "welcome", Placements: []string{"hero"}}}
	})
	var batch []string
	const n = 40
	for i := range n {
		id := event.Decision{Placement: "hero", Offer: "welcome", At: time.Now().UnixMilli(), Nonce: uint32(i)}.ID()
		batch = append(batch, fmt.Sprintf(`{"type": "identify", "userId": "inst-%d", "traits": {"country": "FR", "age": 30}}`, i),
			fmt.Sprintf(`{"type": "track", "userId": "inst-%d", "event": "Offer Viewed", "properties": {"decision_id": %q}}`, i, id))
	}
	if resp := engines[0].post(t, "/v1/batch", `{"batch": [`+strings.Join(batch, ",")+`]}`); resp.Status != http.StatusOK {
		t.Fatalf("batch: %d %s", resp.Status, resp.Body)
	}
	for i, e := range engines {
		waitFor(t, fmt.Sprintf("instance %d to count %d French adults", i, n), 60*time.Second, func() bool {
			resp := do(t, "GET", e.url+"/v1/segments", readKey, nil, nil)
			var list struct{ Segments []serve.SegmentInfo }
			resp.json(t, &list)
			return len(list.Segments) == 1 && list.Segments[0].Size == n
		})
		waitFor(t, fmt.Sprintf("instance %d to count %d impressions", i, n), 60*time.Second, func() bool {
			var rep decide.Report
			do(t, "GET", e.url+"/v1/offers", readKey, nil, nil).json(t, &rep)
			return len(rep.Offers) == 1 && rep.Offers[0].Impressions == n
		})
	}
	// Each holds only some of the partitions.
	for i, e := range engines {
		if held := len(e.Applied()); held == 0 || held == 6 {
			t.Errorf("instance %d holds %d of 6 partitions", i, held)
		}
	}
}

// TestTwoInstancesIdentity: a visitor's profile held by one instance
// merges into the customer's held by the other; profile reads and decide
// calls by the anonymous id alone, at either instance, answer for the
// customer.
func TestTwoInstancesIdentity(t *testing.T) {
	engines := startInstances(t, func(cfg *config.Config) {
		cfg.Placements = map[string]config.Placement{"recs": {Kind: decide.KindRecentlyViewed}}
	})
	// Wait for the partitions to be split, then pick a visitor key held by
	// one instance and a customer key held by the other.
	waitFor(t, "both instances to hold partitions", 60*time.Second, func() bool {
		a, b := len(engines[0].Applied()), len(engines[1].Applied())
		return a > 0 && b > 0 && a+b == 6
	})
	held := func(e *running, prefix string) string {
		for i := 0; ; i++ {
			key := fmt.Sprintf("%s-%d", prefix, i)
			if _, ok := e.Applied()[stream.PartitionOf(key, 6)]; ok {
				return key
			}
		}
	}
	anon, user := held(engines[0], "visitor"), held(engines[1], "customer")
	if resp := engines[0].post(t, "/v1/batch", fmt.Sprintf(`{"batch": [
	  {"type": "track", "anonymousId": %q, "event": "Product Viewed", "properties": {"product_id": "p1"}},
	  {"type": "track", "anonymousId": %q, "event": "Product Viewed", "properties": {"product_id": "p2"}},
	  {"type": "identify", "userId": %q, "anonymousId": %q}]}`, anon, anon, user, anon)); resp.Status != http.StatusOK {
		t.Fatalf("batch: %d %s", resp.Status, resp.Body)
	}
	engines[1].waitProfile(t, user, func(v state.View) bool { return v.Events["Product Viewed"] == 2 })
	for i, e := range engines {
		if v, ok := e.profile(t, anon); !ok || v.Key != user {
			t.Errorf("instance %d: GET %s: %v %q, want %s's profile", i, anon, ok, v.Key, user)
		}
		resp := do(t, "POST", e.url+"/v1/decide", readKey, []byte(fmt.Sprintf(`{"anonymousId": %q, "placements": ["recs"]}`, anon)), nil)
		var a decide.Answer
		resp.json(t, &a)
		if resp.Status != http.StatusOK || a.Key != user || !a.Known || len(a.Decisions["recs"].Products) != 2 {
			t.Errorf("instance %d: decide by %s: %d %s", i, anon, resp.Status, resp.Body)
		}
	}
}
