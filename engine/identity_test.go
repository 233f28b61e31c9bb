package engine_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/decide"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/money"
	"github.com/tailorcdp/tailor/state"
	"github.com/tailorcdp/tailor/stream"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestIdentityMerge: an anonymous visitor who signs in brings what they
// did before into the customer's profile (counts, aggregates, interests),
// the anonymous profile's memberships end and the customer's follow;
// later events with the anonymous id alone, and reads of it, go to the
// customer's profile.
func TestIdentityMerge(t *testing.T) {
	cfg := testConfig(t, testkafka.Brokers(t), testkafka.Prefix(t), t.TempDir())
	cfg.Aggregates = map[string]config.Aggregate{
		"views_1d": {Event: "Product Viewed", Fn: "count", Window: config.Duration(24 * time.Hour)},
	}
	cfg.Segments = map[string]string{
		"browser":     `views_1d >= 2`,
		"big_browser": `views_1d >= 4`,
		"named":       `traits.name == "Ann"`,
	}
	cfg.Placements = map[string]config.Placement{"recs": {Kind: decide.KindRecentlyViewed}}
	e := startEngine(t, cfg)
	post := func(body string) {
		t.Helper()
		if resp := e.post(t, "/v1/batch", body); resp.Status != http.StatusOK {
			t.Fatalf("batch: %d %s", resp.Status, resp.Body)
		}
	}
	// A visitor browses two products without signing in; the customer
	// viewed two others on another device. An order reaches both: from
	// the web SDK under the anonymous id, from the shop's server under
	// the user id.
	post(`{"batch": [
	  {"type": "track", "anonymousId": "anon-1", "event": "Product Viewed", "properties": {"product_id": "p1", "category": "shoes"}},
	  {"type": "track", "anonymousId": "anon-1", "event": "Product Viewed", "properties": {"product_id": "p2", "category": "shoes"}},
	  {"type": "track", "anonymousId": "anon-1", "event": "Order Completed", "properties": {"order_id": "ord-1", "total": 30}},
	  {"type": "track", "userId": "cust-1", "event": "Product Viewed", "properties": {"product_id": "p3", "category": "bags"}},
	  {"type": "track", "userId": "cust-1", "event": "Product Viewed", "properties": {"product_id": "p4", "category": "bags"}},
	  {"type": "track", "userId": "cust-1", "event": "Order Completed", "properties": {"order_id": "ord-1", "total": 30}}]}`)
	e.waitProfile(t, "anon-1", func(v state.View) bool {
		return v.Key == "anon-1" && v.Events["Product Viewed"] == 2 && v.Orders.Count == 1
	})
	e.waitProfile(t, "cust-1", func(v state.View) bool { return v.Events["Product Viewed"] == 2 && v.Orders.Count == 1 })

	// The visitor signs in.
	post(`{"batch": [{"type": "identify", "userId": "cust-1", "anonymousId": "anon-1", "traits": {"name": "Ann"}}]}`)
	v := e.waitProfile(t, "cust-1", func(v state.View) bool { return v.Events["Product Viewed"] == 4 })
	if !slices.Contains(v.AnonymousIDs, "anon-1") || v.Aggregates["views_1d"] != 4.0 || len(v.Interests) != 2 || len(v.RecentlyViewed) != 4 {
		t.Errorf("merged profile: anonymousIds %v, views_1d %v, interests %v, recently viewed %v", v.AnonymousIDs, v.Aggregates["views_1d"], v.Interests, v.RecentlyViewed)
	}
	if _, in := v.Segments["big_browser"]; !in || len(v.Segments) != 3 {
		t.Errorf("merged profile's segments %v, want browser, big_browser and named", v.Segments)
	}
	if v.Orders.Count != 1 || v.Orders.Revenue != money.Units(30) {
		t.Errorf("merged profile's orders: %+v, want the one order", v.Orders)
	}
	// The anonymous id now reads the customer's profile.
	if a, ok := e.profile(t, "anon-1"); !ok || a.Key != "cust-1" {
		t.Errorf("GET anon-1: %v key %q, want cust-1's profile", ok, a.Key)
	}
	// A decide call by the anonymous id alone answers for the customer.
	resp := do(t, "POST", e.url+"/v1/decide", readKey, []byte(`{"anonymousId": "anon-1", "placements": ["recs"]}`), nil)
	var a decide.Answer
	resp.json(t, &a)
	if resp.Status != http.StatusOK || a.Key != "cust-1" || !a.Known || len(a.Decisions["recs"].Products) != 4 {
		t.Errorf("decide by anon-1: %d %s", resp.Status, resp.Body)
	}
	// An event with the anonymous id alone follows it there; a copy of
	// the order sent again does not count.
	post(`{"batch": [
	  {"type": "track", "anonymousId": "anon-1", "event": "Order Completed", "properties": {"order_id": "ord-1", "total": 30}},
	  {"type": "track", "anonymousId": "anon-1", "event": "Product Viewed", "properties": {"product_id": "p5"}}]}`)
	v = e.waitProfile(t, "cust-1", func(v state.View) bool { return v.Events["Product Viewed"] == 5 })
	if v.Orders.Count != 1 || v.Orders.Revenue != money.Units(30) {
		t.Errorf("orders after a copy of the order: %+v, want the one order", v.Orders)
	}

	// Segment records: the anonymous profile left browser when it moved;
	// the customer's entered the segments the merge put it in.
	recs := testkafka.Consume(t, cfg.Kafka.Brokers, e.Topics().Segments, 5, 20*time.Second)
	var got []string
	for _, r := range recs {
		var c stream.SegmentChange
		if err := json.Unmarshal(r.Value, &c); err != nil {
			t.Fatal(err)
		}
		got = append(got, c.Key+" "+c.Change+" "+c.Segment)
	}
	sort.Strings(got)
	want := "anon-1 entered browser, anon-1 exited browser, cust-1 entered big_browser, cust-1 entered browser, cust-1 entered named"
	if strings.Join(got, ", ") != want {
		t.Errorf("segment changes:\n%s\nwant\n%s", strings.Join(got, ", "), want)
	}
}

// TestIdentityCycle: two links crossing each other (each asked for while
// the other was on its way) would send a profile from one key to the
// other forever; past a bound it goes to the dead-letter topic, saying
// why, and the engine keeps serving. (Events cannot make such links one
// after the other: an event of a linked key is applied to the profile it
// joined.)
func TestIdentityCycle(t *testing.T) {
	brokers := testkafka.Brokers(t)
	cfg := testConfig(t, brokers, testkafka.Prefix(t), t.TempDir())
	e := startEngine(t, cfg)
	if resp := e.post(t, "/v1/batch", `{"batch": [{"type": "track", "userId": "x1", "event": "E"}, {"type": "track", "userId": "y1", "event": "E"}]}`); resp.Status != http.StatusOK {
		t.Fatalf("batch: %d %s", resp.Status, resp.Body)
	}
	e.waitProfile(t, "x1", func(v state.View) bool { return v.Events["E"] == 1 })
	e.waitProfile(t, "y1", func(v state.View) bool { return v.Events["E"] == 1 })
	p, err := stream.NewProducer(stream.ClientConfig{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	link := func(from, to string) *kgo.Record {
		return &kgo.Record{Topic: e.Topics().Events, Key: []byte(from), Value: []byte(to),
			Headers: []kgo.RecordHeader{{Key: stream.HeaderIdentity, Value: []byte(stream.IdentityLink)}}}
	}
	if err := p.Produce(context.Background(), link("x1", "y1"), link("y1", "x1")); err != nil {
		t.Fatal(err)
	}
	// Each profile on its way when the cycle closed goes round it: one
	// (the other was merged into it first) or both (both moved before
	// either landed). Together they hold both keys' events: nothing lost.
	dead := testkafka.Consume(t, brokers, e.Topics().DeadLetter, 2, 10*time.Second)
	if len(dead) == 0 {
		t.Fatal("no dead letter: the merge record sent around the cycle is missing")
	}
	events := uint64(0)
	for _, r := range dead {
		reason := ""
		for _, h := range r.Headers {
			if h.Key == stream.HeaderReason {
				reason = string(h.Value)
			}
		}
		if !strings.Contains(reason, "links in a cycle") {
			t.Errorf("dead letter reason %q", reason)
		}
		moved, err := state.DecodeProfile(r.Value)
		if err != nil {
			t.Fatalf("dead letter %q is not a profile: %v", r.Key, err)
		}
		events += moved.EventCounts["E"]
	}
	if events != 2 {
		t.Errorf("the dead-lettered profiles hold %d events E, want both keys' 2", events)
	}
	if resp := do(t, "GET", e.url+"/healthz", "", nil, nil); resp.Status != http.StatusOK {
		t.Errorf("engine unhealthy after the cycle: %d", resp.Status)
	}
}
