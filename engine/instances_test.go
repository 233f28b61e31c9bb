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
)

// TestTwoInstances runs two engines in one group, each holding some of the
// partitions: segment sizes and offer statistics are summed over both, so
// each instance reports the whole population.
func TestTwoInstances(t *testing.T) {
	brokers, prefix := testkafka.Brokers(t), testkafka.Prefix(t)
	var engines []*running
	for _, id := range []string{"a", "b"} {
		cfg := testConfig(t, brokers, prefix, t.TempDir())
		cfg.Kafka.InstanceID = id
		cfg.Segments = map[string]string{"french_adult": `traits.country == "FR" && traits.age >= 18`}
		cfg.Placements = map[string]config.Placement{"hero": {Fallback: "welcome"}}
		cfg.Offers = []config.Offer{{ID: "welcome", Placements: []string{"hero"}}}
		engines = append(engines, startEngine(t, cfg))
	}
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
