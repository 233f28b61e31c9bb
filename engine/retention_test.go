package engine_test

import (
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/state"
	"github.com/tailorcdp/tailor/stream"
)

// TestRetention: with store.retention, a profile with no event for that
// long, on the engine's clock, is deleted (its profile answers 404) and
// leaves each of its segments with one exited record whose reason is
// retention, and its link kept by another partition goes; a profile with
// a recent event is kept.
func TestRetention(t *testing.T) {
	cfg := testConfig(t, testkafka.Brokers(t), testkafka.Prefix(t), t.TempDir())
	const retention = 2 * time.Hour
	cfg.Store.Retention = config.Duration(retention)
	cfg.Segments = map[string]string{
		"french":  `traits.country == "FR"`,
		"shopper": `since("Product Added") < 1000d`,
	}
	now := time.Now().UTC().Truncate(time.Second)
	var clock atomic.Int64
	clock.Store(now.UnixMilli())
	cfg.Clock = func() time.Time { return time.UnixMilli(clock.Load()).UTC() }
	// old identifies with an anonymous id whose link is kept by another
	// partition than old's.
	anon := ""
	for i := 0; anon == ""; i++ {
		if id := "anon-" + strconv.Itoa(i); stream.PartitionOf(id, cfg.Kafka.Partitions) != stream.PartitionOf("old", cfg.Kafka.Partitions) {
			anon = id
		}
	}
	e := startEngine(t, cfg)

	// old's last event is 90 minutes old, recent's is now.
	for _, u := range []struct {
		key, anon string
		ago       time.Duration
	}{{"old", anon, 90 * time.Minute}, {"recent", "", 0}} {
		ts := now.Add(-u.ago).Format(time.RFC3339)
		ids := `"userId": "` + u.key + `"`
		if u.anon != "" {
			ids += `, "anonymousId": "` + u.anon + `"`
		}
		if resp := e.post(t, "/v1/batch", `{"batch": [
		  {"type": "identify", `+ids+`, "timestamp": "`+ts+`", "traits": {"country": "FR"}},
		  {"type": "track", "userId": "`+u.key+`", "timestamp": "`+ts+`", "event": "Product Added", "properties": {"product_id": "p1"}}]}`); resp.Status != http.StatusOK {
			t.Fatalf("batch of %s: %d %s", u.key, resp.Status, resp.Body)
		}
		e.waitProfile(t, u.key, func(v state.View) bool { return len(v.Segments) == 2 })
	}

	// 40 minutes on, old has had no event for 130 minutes: it goes.
	clock.Store(now.Add(40 * time.Minute).UnixMilli())
	waitFor(t, "the old profile to expire", 30*time.Second, func() bool {
		_, ok := e.profile(t, "old")
		return !ok
	})
	if _, ok := e.profile(t, "recent"); !ok {
		t.Error("the recent profile is gone too")
	}
	waitFor(t, "the expiry to be counted", 10*time.Second, func() bool {
		return metricSum(t, e.url, "tailor_profiles_expired_total") == 1
	})
	resp := do(t, "GET", e.url+"/v1/segments", readKey, nil, nil)
	var sizes struct {
		Segments []struct {
			Name string
			Size int64
		}
	}
	resp.json(t, &sizes)
	for _, s := range sizes.Segments {
		if s.Size != 1 {
			t.Errorf("segment %s: size %d, want 1 (recent only)", s.Name, s.Size)
		}
	}

	// Four entries, then one exit of each of old's segments, once: the
	// six are waited for (a loaded machine, -race, may take seconds),
	// then the topic is read again past them to see that no more come.
	recs := testkafka.Consume(t, cfg.Kafka.Brokers, e.Topics().Segments, 6, 60*time.Second)
	if more := testkafka.Consume(t, cfg.Kafka.Brokers, e.Topics().Segments, 7, 3*time.Second); len(more) > len(recs) {
		recs = more
	}
	var exits []string
	for _, r := range recs {
		var c stream.SegmentChange
		if err := json.Unmarshal(r.Value, &c); err != nil {
			t.Fatalf("change record %s: %v", r.Value, err)
		}
		if c.Change == "exited" {
			if c.Key != "old" || c.Reason != "retention" || c.MessageID != "" {
				t.Errorf("exit %s: want old's, for retention, with no messageId", r.Value)
			}
			exits = append(exits, c.Segment)
		}
	}
	sort.Strings(exits)
	if got := strings.Join(exits, ", "); got != "french, shopper" || len(recs) != 6 {
		t.Errorf("%d change records, exits %q; want 6, exits of french and shopper", len(recs), got)
	}

	// The link anon -> old goes too, in anon's partition: an event of
	// anon's starts a profile of its own rather than going to old.
	identity := `tailor_events_total{outcome="identity"}`
	waitFor(t, "the link and the unlink to be applied", 30*time.Second, func() bool { return metricSum(t, e.url, identity) == 2 })
	if resp := e.post(t, "/v1/track", `{"anonymousId": "`+anon+`", "event": "Page Viewed", "timestamp": "`+now.Add(40*time.Minute).Format(time.RFC3339)+`"}`); resp.Status != http.StatusOK {
		t.Fatalf("track: %d %s", resp.Status, resp.Body)
	}
	if v := e.waitProfile(t, anon, func(state.View) bool { return true }); v.Key != anon {
		t.Errorf("an event of %s after old expired went to profile %q", anon, v.Key)
	}

	// An event for old starts a new profile.
	if resp := e.post(t, "/v1/track", `{"userId": "old", "event": "Page Viewed", "timestamp": "`+now.Add(40*time.Minute).Format(time.RFC3339)+`"}`); resp.Status != http.StatusOK {
		t.Fatalf("track: %d %s", resp.Status, resp.Body)
	}
	v := e.waitProfile(t, "old", func(state.View) bool { return true })
	if v.Events["Product Added"] != 0 || len(v.Traits) != 0 {
		t.Errorf("old's new profile: events %v, traits %v; want neither of before", v.Events, v.Traits)
	}
}
