package engine_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/bench/dataset"
	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/decide"
	"github.com/tailorcdp/tailor/engine"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/money"
	"github.com/tailorcdp/tailor/state"
	"github.com/tailorcdp/tailor/stream"
)

func TestEndToEnd(t *testing.T) {
	e := newEngine(t)
	batch := `{"batch": [
	  {"type": "identify", "userId": "ada", "anonymousId": "anon-1", "messageId": "m1",
	   "timestamp": "2026-03-01T10:00:00Z", "traits": {"email": "ada@example.com", "plan": "free", "age": 36}},
	  {"type": "page", "anonymousId": "anon-1", "userId": "ada", "messageId": "m2", "name": "Home",
	   "timestamp": "2026-03-01T10:01:00Z", "properties": {"path": "/"}},
	  {"type": "track", "userId": "ada", "event": "Product Viewed", "messageId": "m3",
	   "timestamp": "2026-03-01T10:02:00Z", "properties": {"product_id": "p1", "category": "shoes"}},
	  {"type": "track", "userId": "ada", "event": "Product Viewed", "messageId": "m4",
	   "timestamp": "2026-03-01T10:03:00Z", "properties": {"product_id": "p2"}},
	  {"type": "track", "userId": "ada", "event": "Order Completed", "messageId": "m5",
	   "timestamp": "2026-03-01T10:05:00Z", "properties": {"order_id": "o-1", "revenue": 90.5, "total": 100}},
	  {"type": "track", "userId": "ada", "event": "Order Completed", "messageId": "m6",
	   "timestamp": "2026-03-02T09:00:00Z", "properties": {"order_id": "o-2", "total": 40}},
	  {"type": "track", "userId": "ada", "event": "Order Completed", "messageId": "m7",
	   "timestamp": "2026-03-03T09:00:00Z", "properties": {"order_id": 3,
	     "products": [{"product_id": "p1", "price": 10, "quantity": 2}, {"product_id": "p2", "price": 5.25}]}},
	  {"type": "track", "userId": "ada", "event": "Order Completed", "messageId": "m8-resent-order",
	   "timestamp": "2026-03-03T09:00:01Z", "properties": {"order_id": "o-2", "total": 40}},
	  {"type": "track", "userId": "ada", "event": "Order Refunded", "messageId": "m9",
	   "timestamp": "2026-03-04T09:00:00Z", "properties": {"order_id": "o-2", "total": -40}},
	  {"type": "identify", "userId": "ada", "messageId": "m10",
	   "timestamp": "2026-02-01T00:00:00Z", "traits": {"plan": "stale", "city": "London"}},
	  {"type": "identify", "userId": "ada", "messageId": "m11",
	   "timestamp": "2026-03-05T00:00:00Z", "traits": {"plan": "pro"},
	   "context": {"consent": {"categoryPreferences": {"Advertising": false, "Analytics": true}}}}
	]}`
	if resp := e.post(t, "/v1/batch", batch); resp.Status != http.StatusOK || string(resp.Body) != `{"success":true}` {
		t.Fatalf("batch: %d %s", resp.Status, resp.Body)
	}
	p := e.waitProfile(t, "ada", func(v state.View) bool { return v.Calls["identify"] == 3 && v.Orders.Refunds == 1 })

	if p.Key != "ada" || p.UserID != "ada" || strings.Join(p.AnonymousIDs, ",") != "anon-1" {
		t.Errorf("ids: key %q userId %q anonymousIds %v", p.Key, p.UserID, p.AnonymousIDs)
	}
	wantTraits := map[string]string{"email": `"ada@example.com"`, "plan": `"pro"`, "age": `36`, "city": `"London"`}
	for k, want := range wantTraits {
		if got := string(p.Traits[k]); got != want {
			t.Errorf("trait %s = %s, want %s", k, got, want)
		}
	}
	if len(p.Traits) != len(wantTraits) {
		t.Errorf("traits %v, want exactly %v", p.Traits, wantTraits)
	}
	if want := map[string]uint64{"identify": 3, "page": 1, "track": 7}; fmt.Sprint(p.Calls) != fmt.Sprint(want) {
		t.Errorf("calls %v, want %v", p.Calls, want)
	}
	if want := map[string]uint64{"Product Viewed": 2, "Order Completed": 4, "Order Refunded": 1}; fmt.Sprint(p.Events) != fmt.Sprint(want) {
		t.Errorf("events %v, want %v", p.Events, want)
	}
	// o-1 by revenue (not total), o-2 by total once (resent with a new
	// messageId), 3 by its products: 2×10 + 5.25.
	if p.Orders.Count != 3 || p.Orders.Revenue != money.MustParse("155.75") {
		t.Errorf("orders %d revenue %v, want 3 and 155.75", p.Orders.Count, p.Orders.Revenue)
	}
	if want := time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC); p.Orders.LastOrderAt == nil || !p.Orders.LastOrderAt.Equal(want) {
		t.Errorf("lastOrderAt %v, want %v", p.Orders.LastOrderAt, want)
	}
	if p.Orders.Refunds != 1 || p.Orders.RefundedAmount != money.Units(40) {
		t.Errorf("refunds %d amount %v, want 1 and 40", p.Orders.Refunds, p.Orders.RefundedAmount)
	}
	if len(p.Interests) != 1 || p.Interests[0].Category != "shoes" || p.Interests[0].Affinity != 1 {
		t.Errorf("interests %v, want shoes alone", p.Interests)
	}
	if want := map[string]bool{"Advertising": false, "Analytics": true}; fmt.Sprint(p.Consent) != fmt.Sprint(want) {
		t.Errorf("consent %v, want %v", p.Consent, want)
	}
	if !p.FirstSeen.Equal(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)) || !p.LastSeen.Equal(time.Date(2026, 3, 5, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("first/last seen %v %v", p.FirstSeen, p.LastSeen)
	}

	// The single-event endpoints, an anonymous visitor, and gzip.
	if resp := e.post(t, "/v1/page", `{"anonymousId": "visitor-9", "name": "Pricing"}`); resp.Status != http.StatusOK {
		t.Fatalf("page: %d %s", resp.Status, resp.Body)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(`{"anonymousId": "visitor-9", "event": "Signed Up"}`))
	zw.Close()
	resp := do(t, "POST", e.url+"/v1/track", writeKey, gz.Bytes(), map[string]string{"Content-Encoding": "gzip"})
	if resp.Status != http.StatusOK {
		t.Fatalf("gzip track: %d %s", resp.Status, resp.Body)
	}
	for _, path := range []string{"/v1/screen", "/v1/group", "/v1/alias"} {
		body := map[string]string{
			"/v1/screen": `{"anonymousId": "visitor-9", "name": "Cart"}`,
			"/v1/group":  `{"anonymousId": "visitor-9", "groupId": "acme", "traits": {"name": "Acme"}}`,
			"/v1/alias":  `{"userId": "visitor-9", "previousId": "anon-old"}`,
		}[path]
		if resp := e.post(t, path, body); resp.Status != http.StatusOK {
			t.Fatalf("%s: %d %s", path, resp.Status, resp.Body)
		}
	}
	v := e.waitProfile(t, "visitor-9", func(v state.View) bool { return v.Calls["alias"] == 1 })
	if v.Calls["page"] != 1 || v.Calls["track"] != 1 || v.Calls["screen"] != 1 || v.Calls["group"] != 1 || v.Events["Signed Up"] != 1 {
		t.Errorf("visitor calls %v events %v", v.Calls, v.Events)
	}
}

func TestDuplicateMessageID(t *testing.T) {
	e := newEngine(t)
	ev := `{"userId": "dup", "event": "Order Completed", "messageId": "same-id", "properties": {"order_id": "a", "total": 10}}`
	for range 2 { // an SDK retry after a lost response
		if resp := e.post(t, "/v1/track", ev); resp.Status != http.StatusOK {
			t.Fatalf("track: %d %s", resp.Status, resp.Body)
		}
	}
	// The same messageId twice in one batch, and a different event after.
	batch := `{"batch": [
	  {"type": "track", "userId": "dup", "event": "Clicked", "messageId": "same-2"},
	  {"type": "track", "userId": "dup", "event": "Clicked", "messageId": "same-2"},
	  {"type": "track", "userId": "dup", "event": "Done", "messageId": "last"}]}`
	if resp := e.post(t, "/v1/batch", batch); resp.Status != http.StatusOK {
		t.Fatalf("batch: %d %s", resp.Status, resp.Body)
	}
	p := e.waitProfile(t, "dup", func(v state.View) bool { return v.Events["Done"] == 1 })
	if p.Calls["track"] != 3 || p.Events["Clicked"] != 1 || p.Orders.Count != 1 || p.Orders.Revenue != money.Units(10) {
		t.Errorf("duplicates applied: calls %v events %v orders %+v", p.Calls, p.Events, p.Orders)
	}
}

func TestDeadLetter(t *testing.T) {
	brokers := testkafka.Brokers(t)
	cfg := testConfig(t, brokers, testkafka.Prefix(t), t.TempDir())
	e := startEngine(t, cfg)
	topics := e.Topics()

	// A producer that bypasses the collect API.
	p, err := stream.NewProducer(stream.ClientConfig{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	bad := [][]byte{
		[]byte(`{"type": "track", "userId": "dl", "event": "x"`),
		[]byte(`{"type": "track", "userId": 7, "event": "x"}`),
		[]byte(`{"type": "purchase", "userId": "dl"}`),
		{0xff, 0xfe},
	}
	var recs []*kgo.Record
	for _, b := range bad {
		recs = append(recs, &kgo.Record{Topic: topics.Events, Key: []byte("dl"), Value: b})
	}
	recs = append(recs, &kgo.Record{Topic: topics.Events, Key: []byte("dl"), Value: []byte(`{"type": "track", "userId": "dl", "event": "Good"}`)})
	// Records not keyed by their profile key are sent on to the right
	// partition, once each.
	recs = append(recs,
		&kgo.Record{Topic: topics.Events, Value: []byte(`{"type": "track", "userId": "rk", "event": "Unkeyed"}`)},
		&kgo.Record{Topic: topics.Events, Key: []byte("someone-else"), Value: []byte(`{"type": "track", "userId": "rk", "event": "Miskeyed", "messageId": "mk"}`)},
	)
	if err := p.Produce(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	prof := e.waitProfile(t, "dl", func(v state.View) bool { return v.Events["Good"] == 1 })
	if prof.Calls["track"] != 1 {
		t.Errorf("invalid records reached the profile: %v", prof.Calls)
	}
	rk := e.waitProfile(t, "rk", func(v state.View) bool { return v.Events["Unkeyed"] == 1 && v.Events["Miskeyed"] == 1 })
	if rk.Calls["track"] != 2 {
		t.Errorf("rerouted events applied %d times, want 2", rk.Calls["track"])
	}
	dead := testkafka.Consume(t, brokers, topics.DeadLetter, len(bad), 20*time.Second)
	if len(dead) != len(bad) {
		t.Fatalf("%d dead letters, want %d", len(dead), len(bad))
	}
	wantReasons := []string{"malformed JSON", "userId: must be a string", `type: unknown event type "purchase"`, "not valid UTF-8"}
	for i, r := range dead {
		if !bytes.Equal(r.Value, bad[i]) {
			t.Errorf("dead letter %d: value %q, want the original %q", i, r.Value, bad[i])
		}
		headers := map[string]string{}
		for _, h := range r.Headers {
			headers[h.Key] = string(h.Value)
		}
		if !strings.Contains(headers[stream.HeaderReason], wantReasons[i]) {
			t.Errorf("dead letter %d: reason %q, want it to contain %q", i, headers[stream.HeaderReason], wantReasons[i])
		}
		if want := topics.Events + "/"; !strings.HasPrefix(headers[stream.HeaderSource], want) {
			t.Errorf("dead letter %d: source %q", i, headers[stream.HeaderSource])
		}
	}
}

// TestBatchTooLargeIsSplit: after a batch of records that add little to
// their profile (track calls for one customer), a store counts little for
// each record in a batch's size (state.Batch.Grow); records that then add
// far more (identify calls with 30 KB of traits for new customers) make a
// batch too large for one store transaction. It is applied again in
// smaller batches, and every record lands once. Everything is produced
// before the engine starts, so that it comes in one fetch.
func TestBatchTooLargeIsSplit(t *testing.T) {
	brokers := testkafka.Brokers(t)
	cfg := testConfig(t, brokers, testkafka.Prefix(t), t.TempDir()) // 4 MB memtables: transactions of at most 600 KB
	topics := stream.NewTopics(cfg.Kafka.TopicPrefix)
	p, err := stream.NewProducer(stream.ClientConfig{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := stream.EnsureTopics(context.Background(), p.Client(), topics, int32(cfg.Kafka.Partitions), 1); err != nil {
		t.Fatal(err)
	}
	// keys returns n profile keys of partition 0.
	keys := func(prefix string, n int) []string {
		var ks []string
		for i := 0; len(ks) < n; i++ {
			if key := prefix + strconv.Itoa(i); stream.PartitionOf(key, cfg.Kafka.Partitions) == 0 {
				ks = append(ks, key)
			}
		}
		return ks
	}
	// Enough track calls to fill a first batch, counted whole.
	regular := keys("regular-", 1)[0]
	var recs []*kgo.Record
	for i := range 5000 {
		recs = append(recs, &kgo.Record{Topic: topics.Events, Key: []byte(regular),
			Value: []byte(`{"type": "track", "userId": "` + regular + `", "event": "Page Viewed", "messageId": "p` + strconv.Itoa(i) + `"}`)})
	}
	bio := strings.Repeat("x", 30_000)
	big := keys("big-", 120)
	for _, key := range big {
		recs = append(recs, &kgo.Record{Topic: topics.Events, Key: []byte(key),
			Value: []byte(`{"type": "identify", "userId": "` + key + `", "messageId": "m-` + key + `", "traits": {"bio": "` + bio + `"}}`)})
	}
	if err := p.Produce(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}

	e := startEngine(t, cfg)
	e.waitProfile(t, regular, func(v state.View) bool { return v.Calls["track"] == 5000 })
	for _, key := range big {
		v := e.waitProfile(t, key, func(v state.View) bool { return v.Calls["identify"] > 0 })
		if v.Calls["identify"] != 1 || len(v.Traits["bio"]) != len(bio)+2 {
			t.Fatalf("%s: %d identify calls, bio of %d bytes; want 1 and %d", key, v.Calls["identify"], len(v.Traits["bio"]), len(bio)+2)
		}
	}
	metrics := string(do(t, "GET", e.url+"/metrics", "", nil, nil).Body)
	if !strings.Contains(metrics, "tailor_batch_retries_total") || strings.Contains(metrics, "tailor_batch_retries_total 0") {
		t.Error("no batch was applied again: the test did not make one too large")
	}
}

func TestRestartKeepsData(t *testing.T) {
	// The embedded broker and the stores share the data directory.
	cfg := testConfig(t, nil, "tailor.", t.TempDir())
	e := startEngine(t, cfg)
	for i := range 3 {
		if resp := e.post(t, "/v1/track", fmt.Sprintf(`{"userId": "r", "event": "Seen", "messageId": "r%d"}`, i)); resp.Status != http.StatusOK {
			t.Fatalf("track: %d %s", resp.Status, resp.Body)
		}
	}
	e.waitProfile(t, "r", func(v state.View) bool { return v.Events["Seen"] == 3 })
	e.stop()

	e2 := startEngine(t, cfg)
	if p, ok := e2.profile(t, "r"); !ok || p.Events["Seen"] != 3 {
		t.Fatalf("after restart: found %v, events %v; want the 3 events kept", ok, p.Events)
	}
	if resp := e2.post(t, "/v1/track", `{"userId": "r", "event": "Seen", "messageId": "r3"}`); resp.Status != http.StatusOK {
		t.Fatalf("track: %d %s", resp.Status, resp.Body)
	}
	// Exactly one more: nothing replayed from the broker's persisted log.
	p := e2.waitProfile(t, "r", func(v state.View) bool { return v.Events["Seen"] >= 4 })
	time.Sleep(300 * time.Millisecond)
	if p, _ = e2.profile(t, "r"); p.Events["Seen"] != 4 {
		t.Errorf("after restart and one more event: %d, want 4", p.Events["Seen"])
	}
	waitFor(t, "readiness", 20*time.Second, func() bool { return do(t, "GET", e2.url+"/readyz", "", nil, nil).Status == http.StatusOK })
}

// TestRetailReplay imports the whole Online Retail data set through Kafka
// and checks every customer's order facts against the CSV.
func TestRetailReplay(t *testing.T) {
	const csvPath = "../../shared/data/online-retail.csv.gz"
	if _, err := os.Stat(csvPath); err != nil {
		t.Skipf("data set not present: %v", err)
	}
	open := func() *bufio.Reader {
		f, err := dataset.OpenMaybeGzip(csvPath, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return bufio.NewReader(f)
	}
	var events bytes.Buffer
	n, err := dataset.WriteRetailEvents(open(), &events)
	if err != nil {
		t.Fatal(err)
	}
	truth, err := dataset.RetailFacts(open())
	if err != nil {
		t.Fatal(err)
	}

	brokers := testkafka.Brokers(t)
	cfg := testConfig(t, brokers, testkafka.Prefix(t), t.TempDir())
	// RFM as of the day after the data set ends, with the standard RFM
	// segments (the clock moves on below, for their hourly refresh).
	now := time.Date(2011, 12, 10, 0, 0, 0, 0, time.UTC)
	var clock atomic.Int64
	clock.Store(now.UnixMilli())
	cfg.Clock = func() time.Time { return time.UnixMilli(clock.Load()).UTC() }
	cfg.RFMSegments = true
	cfg.Placements = map[string]config.Placement{"also_bought": {Kind: decide.KindBoughtTogether, Count: 10}}
	together := coBought(t, events.Bytes(), retailAnchor)
	e := startEngine(t, cfg)
	p, err := stream.NewProducer(stream.ClientConfig{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	stats, err := stream.Import(context.Background(), &events, stream.ImportOptions{Producer: p, Topic: e.Topics().Events, Limits: testLimits()})
	if err != nil || stats.Accepted != n || stats.Rejected != 0 {
		t.Fatalf("import: %v; %s", err, stats)
	}
	waitApplied(t, e, n)
	views := make(map[string]state.View)
	checkRetailProfiles(t, truth, func(key string) (state.View, bool) {
		v, ok := e.profile(t, key)
		views[key] = v
		return v, ok
	})
	// Each customer's RFM segments agree with the scores it shows, those
	// of the quintiles as they stood at its last order.
	checkRFMSegments(t, truth, views)
	// An hour on, the refresh re-scores every customer on the quintiles
	// of all of them, and re-evaluates the segments with them.
	later := now.Add(time.Hour + time.Minute)
	clock.Store(later.UnixMilli())
	waitFor(t, "the RFM refresh to walk every profile", 3*time.Minute, func() bool {
		return metricSum(t, e.url, "tailor_backfill_profiles_total") >= float64(len(truth)) &&
			metricSum(t, e.url, "tailor_backfill_remaining_profiles") == 0
	})
	for id := range truth {
		views[id], _ = e.profile(t, id)
	}
	checkRFM(t, truth, views, later)
	checkRFMSegments(t, truth, views)
	checkBoughtTogether(t, e, together)
}

// checkRFMSegments checks that every customer with orders is in the RFM
// segments its shown scores give.
func checkRFMSegments(t *testing.T, truth map[string]*dataset.CustomerFacts, views map[string]state.View) {
	t.Helper()
	for id, f := range truth {
		if f.Orders > 0 && views[id].RFM != nil {
			checkRFMAgrees(t, id, views[id])
		}
	}
}

// metricSum sums the samples of a metric on the engine's /metrics.
func metricSum(t *testing.T, url, name string) float64 {
	resp := do(t, "GET", url+"/metrics", "", nil, nil)
	total := 0.0
	for _, line := range strings.Split(string(resp.Body), "\n") {
		if f := strings.Fields(line); len(f) == 2 && (f[0] == name || strings.HasPrefix(f[0], name+"{")) {
			v, _ := strconv.ParseFloat(f[1], 64)
			total += v
		}
	}
	return total
}

// retailAnchor is the data set's best seller, WHITE HANGING HEART T-LIGHT
// HOLDER.
const retailAnchor = "85123A"

// coBought counts, from the events themselves, the orders in which each
// product was bought with anchor.
func coBought(t *testing.T, events []byte, anchor string) map[string]int {
	counts := make(map[string]int)
	for _, line := range bytes.Split(events, []byte("\n")) {
		if !bytes.Contains(line, []byte(`"Order Completed"`)) {
			continue
		}
		var ev struct {
			Properties struct {
				Products []struct {
					ID string `json:"product_id"`
				} `json:"products"`
			} `json:"properties"`
		}
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatal(err)
		}
		ids := make(map[string]bool)
		for _, p := range ev.Properties.Products {
			ids[p.ID] = true
		}
		if !ids[anchor] {
			continue
		}
		for id := range ids {
			if id != anchor {
				counts[id]++
			}
		}
	}
	return counts
}

// checkBoughtTogether asks decide what is bought with the anchor and
// checks the answer against the direct count: every product really
// co-occurs with it, and most are among the true top 20.
func checkBoughtTogether(t *testing.T, e *running, truth map[string]int) {
	t.Helper()
	resp := do(t, "POST", e.url+"/v1/decide", readKey, []byte(`{"userId": "nobody", "placements": ["also_bought"], "context": {"product_id": "`+retailAnchor+`"}}`), nil)
	if resp.Status != http.StatusOK {
		t.Fatalf("decide: %d %s", resp.Status, resp.Body)
	}
	var a decide.Answer
	resp.json(t, &a)
	got := a.Decisions["also_bought"].Products
	ranked := make([]string, 0, len(truth))
	for id := range truth {
		ranked = append(ranked, id)
	}
	sort.Slice(ranked, func(i, j int) bool {
		if truth[ranked[i]] != truth[ranked[j]] {
			return truth[ranked[i]] > truth[ranked[j]]
		}
		return ranked[i] < ranked[j]
	})
	top20 := ranked[:min(20, len(ranked))]
	if len(got) != 10 {
		t.Fatalf("bought with %s: %d products, want 10: %s", retailAnchor, len(got), resp.Body)
	}
	inTop := 0
	for _, p := range got {
		if truth[p.ID] == 0 {
			t.Errorf("%s (%s) is never bought with %s", p.ID, p.Name, retailAnchor)
		}
		if slices.Contains(top20, p.ID) {
			inTop++
		}
	}
	if inTop < 8 {
		t.Errorf("only %d of the 10 answered are among the 20 bought most with %s", inTop, retailAnchor)
	}
	if !slices.Contains(ranked[:5], got[0].ID) {
		t.Errorf("first answer %s (%d orders) is not among the top 5 %v", got[0].ID, truth[got[0].ID], ranked[:5])
	}
	for i, p := range got[:3] {
		t.Logf("bought with %s #%d: %s %s, %d orders in the CSV (true #%d: %s, %d)", retailAnchor, i+1, p.ID, p.Name, truth[p.ID], i+1, ranked[i], truth[ranked[i]])
	}
}

// checkRFM compares every customer's RFM values with the CSV at now, and
// the scores with exact quintiles of the whole population.
func checkRFM(t *testing.T, truth map[string]*dataset.CustomerFacts, views map[string]state.View, now time.Time) {
	t.Helper()
	var days, orders, revenue []float64
	for _, f := range truth {
		if f.Orders > 0 {
			days = append(days, math.Floor(float64(f.LastOrderAt.Unix())/86400))
			orders = append(orders, float64(f.Orders))
			revenue = append(revenue, f.Revenue.Float64())
		}
	}
	quintiles := func(vs []float64) [4]float64 {
		s := append([]float64(nil), vs...)
		sort.Float64s(s)
		var q [4]float64
		for k := range q {
			q[k] = s[int(math.Ceil(float64(len(s))*float64(k+1)/5))-1]
		}
		return q
	}
	score := func(v float64, q [4]float64) float64 {
		s := 1.0
		for _, b := range q {
			if v > b {
				s++
			}
		}
		return s
	}
	qd, qf, qm := quintiles(days), quintiles(orders), quintiles(revenue)

	customers, agree, wrongRaw := 0, 0, 0
	for id, f := range truth {
		v := views[id]
		if f.Orders == 0 {
			if v.RFM != nil {
				t.Errorf("customer %s without orders has RFM %+v", id, v.RFM)
			}
			continue
		}
		customers++
		if v.RFM == nil {
			t.Errorf("customer %s: no RFM", id)
			continue
		}
		recency := math.Floor(now.Sub(f.LastOrderAt).Hours() / 24)
		if v.RFM.Recency != recency || v.RFM.Frequency != float64(f.Orders) || v.RFM.Monetary != f.Revenue {
			wrongRaw++
			if wrongRaw <= 5 {
				t.Errorf("customer %s: RFM %+v, want recency %v frequency %d monetary %s", id, *v.RFM, recency, f.Orders, f.Revenue)
			}
		}
		day := math.Floor(float64(f.LastOrderAt.Unix()) / 86400)
		if v.RFM.R == score(day, qd) && v.RFM.F == score(float64(f.Orders), qf) && v.RFM.M == score(f.Revenue.Float64(), qm) {
			agree++
		}
	}
	if share := float64(agree) / float64(customers); share < 0.98 {
		t.Errorf("RFM scores agree with exact quintiles for %.2f%% of %d customers, want at least 98%%", 100*share, customers)
	} else {
		t.Logf("RFM scores agree with exact quintiles for %.2f%% of %d customers", 100*share, customers)
	}
}

// checkRetailProfiles fails t for every customer whose profile differs
// from the facts computed from the CSV.
func checkRetailProfiles(t *testing.T, truth map[string]*dataset.CustomerFacts, get func(string) (state.View, bool)) {
	t.Helper()
	diffs := dataset.CompareRetail(truth, get)
	for i, d := range diffs {
		if i == 10 {
			t.Errorf("... and %d more", len(diffs)-10)
			break
		}
		t.Error(d)
	}
	if len(truth) < 4000 {
		t.Errorf("only %d customers in the truth, want the data set's 4372", len(truth))
	}
}

// waitApplied waits until the engine has consumed n records (applied,
// duplicate or dead-lettered), read from its metrics.
func waitApplied(t *testing.T, e *running, n int) {
	t.Helper()
	waitFor(t, strconv.Itoa(n)+" records consumed", 3*time.Minute, func() bool {
		return consumed(t, e.url) >= n
	})
}

func consumed(t *testing.T, url string) int {
	resp := do(t, "GET", url+"/metrics", "", nil, nil)
	total := 0
	for _, line := range strings.Split(string(resp.Body), "\n") {
		if strings.HasPrefix(line, "tailor_events_total{") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			total += int(v)
		}
	}
	return total
}

// TestAggregates declares aggregates in the config and reads them from
// the profile API as events arrive.
func TestAggregates(t *testing.T) {
	cfg := testConfig(t, testkafka.Brokers(t), testkafka.Prefix(t), t.TempDir())
	cfg.Aggregates = map[string]config.Aggregate{
		"shoe_views_7d": {Event: "Product Viewed", Where: `properties.category == "shoes"`, Fn: "count", Window: config.Duration(7 * 24 * time.Hour)},
		"spend_30d":     {Event: "Order Completed", Fn: "sum", Property: "total", Window: config.Duration(30 * 24 * time.Hour)},
		"last_order":    {Event: "Order Completed", Fn: "last_seen"},
	}
	e := startEngine(t, cfg)
	now := time.Now().UTC().Truncate(time.Second)
	ts := func(ago time.Duration) string { return now.Add(-ago).Format(time.RFC3339) }
	batch := `{"batch": [
	  {"type": "track", "userId": "agg", "event": "Product Viewed", "timestamp": "` + ts(time.Hour) + `", "properties": {"category": "shoes"}},
	  {"type": "track", "userId": "agg", "event": "Product Viewed", "timestamp": "` + ts(time.Hour) + `", "properties": {"category": "bags"}},
	  {"type": "track", "userId": "agg", "event": "Product Viewed", "timestamp": "` + ts(8*24*time.Hour) + `", "properties": {"category": "shoes"}},
	  {"type": "track", "userId": "agg", "event": "Order Completed", "timestamp": "` + ts(2*time.Hour) + `", "properties": {"order_id": "a", "total": 20}},
	  {"type": "track", "userId": "agg", "event": "Order Completed", "timestamp": "` + ts(40*24*time.Hour) + `", "properties": {"order_id": "b", "total": 500}}
	]}`
	if resp := e.post(t, "/v1/batch", batch); resp.Status != http.StatusOK {
		t.Fatalf("batch: %d %s", resp.Status, resp.Body)
	}
	p := e.waitProfile(t, "agg", func(v state.View) bool { return v.Orders.Count == 2 })
	if p.Aggregates["shoe_views_7d"] != 1.0 || p.Aggregates["spend_30d"] != 20.0 || p.Aggregates["last_order"] != now.Add(-2*time.Hour).Format(time.RFC3339) {
		t.Errorf("aggregates %v: want 1 shoe view in 7 days, 20 spent in 30 days, last order %s", p.Aggregates, now.Add(-2*time.Hour).Format(time.RFC3339))
	}

	// A bad aggregate stops the engine from starting, naming it.
	bad := testConfig(t, nil, "bad.", t.TempDir())
	bad.Aggregates = map[string]config.Aggregate{"oops": {Event: "E", Fn: "count", Where: `properties.x ==`}}
	if _, err := engine.Start(context.Background(), bad, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), `rule "aggregates.oops.where" at 1:16`) {
		t.Errorf("bad aggregate: %v", err)
	}
}

// TestSegments declares segments in the config and reads membership from
// the profile API as events arrive, and as time alone passes.
func TestSegments(t *testing.T) {
	cfg := testConfig(t, testkafka.Brokers(t), testkafka.Prefix(t), t.TempDir())
	cfg.Aggregates = map[string]config.Aggregate{
		"cart_adds_1h": {Event: "Product Added", Fn: "count", Window: config.Duration(time.Hour)},
	}
	cfg.Segments = map[string]string{
		"cart_abandoner": `cart_adds_1h > 0 && since("Order Completed") > 30m`,
		"french_adult":   `traits.country == "FR" && traits.age >= 18`,
		"just_added":     `since("Product Added") < 3s`,
	}
	e := startEngine(t, cfg)
	if resp := e.post(t, "/v1/batch", `{"batch": [
	  {"type": "identify", "userId": "seg", "traits": {"country": "FR", "age": 40}},
	  {"type": "track", "userId": "seg", "event": "Product Added", "properties": {"product_id": "p1"}}]}`); resp.Status != http.StatusOK {
		t.Fatalf("batch: %d %s", resp.Status, resp.Body)
	}
	p := e.waitProfile(t, "seg", func(v state.View) bool { return v.Events["Product Added"] == 1 })
	if len(p.Segments) != 3 || p.Segments["cart_abandoner"].IsZero() || p.Segments["french_adult"].IsZero() || p.Segments["just_added"].IsZero() {
		t.Errorf("segments %v, want cart_abandoner, french_adult and just_added", p.Segments)
	}
	added := p.LastSeen
	if resp := e.post(t, "/v1/track", `{"userId": "seg", "event": "Order Completed", "properties": {"order_id": "1", "total": 9}}`); resp.Status != http.StatusOK {
		t.Fatalf("track: %d %s", resp.Status, resp.Body)
	}
	p = e.waitProfile(t, "seg", func(v state.View) bool { return v.Orders.Count == 1 })
	if _, in := p.Segments["cart_abandoner"]; in || len(p.Segments) != 2 {
		t.Errorf("after the order: segments %v, want french_adult and just_added", p.Segments)
	}
	// Three seconds after the cart add, with no new event, the profile
	// leaves just_added.
	e.waitProfile(t, "seg", func(v state.View) bool { return len(v.Segments) == 1 })

	// Each change is one record on the segments topic, in order; the one
	// time made carries no messageId.
	recs := testkafka.Consume(t, cfg.Kafka.Brokers, e.Topics().Segments, 5, 20*time.Second)
	var got []string
	for i, r := range recs {
		var c stream.SegmentChange
		if err := json.Unmarshal(r.Value, &c); err != nil || string(r.Key) != "seg" || c.Key != "seg" || (c.MessageID == "") != (i == 4) || c.Time.IsZero() {
			t.Errorf("change record %q %s: %v", r.Key, r.Value, err)
		}
		if i == 4 && c.Time.Before(added.Add(3*time.Second)) {
			t.Errorf("just_added exited at %v, before the 3 s since the cart add at %v were over", c.Time, added)
		}
		got = append(got, c.Change+" "+c.Segment)
	}
	if want := "entered french_adult, entered cart_abandoner, entered just_added, exited cart_abandoner, exited just_added"; strings.Join(got, ", ") != want {
		t.Errorf("changes %q, want %q", strings.Join(got, ", "), want)
	}

	// Sizes: one more French adult, then the list.
	if resp := e.post(t, "/v1/identify", `{"userId": "seg2", "traits": {"country": "FR", "age": 22}}`); resp.Status != http.StatusOK {
		t.Fatalf("identify: %d %s", resp.Status, resp.Body)
	}
	e.waitProfile(t, "seg2", func(v state.View) bool { return len(v.Segments) == 1 })
	resp := do(t, "GET", e.url+"/v1/segments", readKey, nil, nil)
	if want := `{"segments":[{"name":"cart_abandoner","rule":"cart_adds_1h > 0 && since(\"Order Completed\") > 30m","size":0},{"name":"french_adult","rule":"traits.country == \"FR\" && traits.age >= 18","size":2},{"name":"just_added","rule":"since(\"Product Added\") < 3s","size":0}]}`; resp.Status != http.StatusOK || string(resp.Body) != want {
		t.Errorf("GET /v1/segments: %d\n%s\nwant\n%s", resp.Status, resp.Body, want)
	}
}
