package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/state"
	"github.com/tailorcdp/tailor/stream"
)

// TestBadInputAfterwards sends the inputs that once poisoned profiles or
// were acknowledged and then lost, and checks what a user sees afterwards:
// the profile still reads, each event is applied or refused with its
// reason, a batch lands but for its invalid events, and nothing that was
// acknowledged is dead-lettered.
func TestBadInputAfterwards(t *testing.T) {
	brokers := testkafka.Brokers(t)
	e := startEngine(t, testConfig(t, brokers, testkafka.Prefix(t), t.TempDir()))
	topics := e.Topics()
	records := 0 // written to the events topic, by collect or directly
	post := func(path, body string, status int) response {
		t.Helper()
		resp := e.post(t, path, body)
		if resp.Status != status {
			t.Fatalf("POST %s %s: %d %s, want %d", path, body, resp.Status, resp.Body, status)
		}
		return resp
	}
	read := func(key string) state.View {
		t.Helper()
		v, ok := e.profile(t, url.PathEscape(key))
		if !ok {
			t.Fatalf("profile %q: not found", key)
		}
		if v.Key != key {
			t.Fatalf("GET /v1/profiles/%s answered the profile of %q, want %q", url.PathEscape(key), v.Key, key)
		}
		return v
	}

	// 1e400 at the edge: refused naming the field; the profile still reads.
	post("/v1/track", `{"userId": "inf", "event": "Before"}`, http.StatusOK)
	records++
	resp := post("/v1/track", `{"userId": "inf", "event": "Order Completed", "properties": {"order_id": "o1", "total": 1e400}}`, http.StatusBadRequest)
	if !strings.Contains(string(resp.Body), `"field":"properties.total"`) {
		t.Errorf("1e400: %s", resp.Body)
	}

	// Straight on Kafka, the consumer's validator is the same: 1e400 is a
	// dead letter with its reason, a numeric string the number it spells.
	p, err := stream.NewProducer(stream.ClientConfig{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	direct := []*kgo.Record{
		{Topic: topics.Events, Key: []byte("inf"), Value: []byte(`{"type": "track", "userId": "inf", "event": "Order Completed", "properties": {"total": 1e400}}`)},
		{Topic: topics.Events, Key: []byte("str"), Value: []byte(`{"type": "track", "userId": "str", "event": "Order Completed", "properties": {"order_id": "s1", "revenue": "19.99"}}`)},
	}
	if err := p.Produce(context.Background(), direct...); err != nil {
		t.Fatal(err)
	}
	records += len(direct)

	// Control characters in ids and names are kept, escaped as JSON.
	var ctl []string
	for i, c := range []string{`\u0000`, `\u0001`, `\u0007`, `\u000b`} {
		post("/v1/track", fmt.Sprintf(`{"userId": "u%s%d", "event": "E%s"}`, c, i, c), http.StatusOK)
		post("/v1/page", fmt.Sprintf(`{"anonymousId": "a%s%d", "name": "N%s"}`, c, i, c), http.StatusOK)
		records += 2
		var u, a, ev string
		json.Unmarshal([]byte(fmt.Sprintf(`["u%s%d", "a%s%d", "E%s"]`, c, i, c, i, c)), &[]*string{&u, &a, &ev})
		ctl = append(ctl, u, a, ev)
	}
	post("/v1/identify", `{"userId": "trait-ctl", "traits": {"name": "a\u0007b\u0000", "country": "F\u0007R", "email": "\u000b@x"}}`, http.StatusOK)
	records++

	// A batch lands but for its invalid events, which are listed.
	resp = post("/v1/batch", `{"batch": [
		{"type": "track", "userId": "b-ok", "event": "A"},
		{"type": "track", "userId": "b-str", "event": "Order Completed", "properties": {"order_id": "b1", "revenue": "19.99"}},
		{"type": "track", "userId": "b-bad", "event": "Order Completed", "properties": {"revenue": "much"}},
		{"type": "track", "userId": "b-inf", "event": "E", "properties": {"n": [1e400]}},
		{"type": "page", "anonymousId": "b-anon"}]}`, http.StatusOK)
	records += 3
	var answer struct {
		Success  bool   `json:"success"`
		Code     string `json:"code"`
		Message  string `json:"message"`
		Accepted int    `json:"accepted"`
		Refused  []struct {
			Index  int    `json:"index"`
			Field  string `json:"field"`
			Reason string `json:"reason"`
		} `json:"refused"`
	}
	resp.json(t, &answer)
	if answer.Success || answer.Code != "partly_stored" || answer.Message == "" || answer.Accepted != 3 || len(answer.Refused) != 2 ||
		answer.Refused[0].Index != 2 || answer.Refused[0].Field != "batch[2].properties.revenue" || !strings.Contains(answer.Refused[0].Reason, `not string "much"`) ||
		answer.Refused[1].Index != 3 || answer.Refused[1].Field != "batch[3].properties.n[0]" || !strings.Contains(answer.Refused[1].Reason, "out of range") {
		t.Errorf("partly refused batch answered %s", resp.Body)
	}

	// Keys are opaque: each reads back its own profile.
	keys := []string{"..", "c/../d", "d", "/x", "a b?c#%25", "%2e%2e"}
	for i, k := range keys {
		body, _ := json.Marshal(map[string]any{"userId": k, "event": "Keyed", "properties": map[string]int{"i": i}})
		post("/v1/track", string(body), http.StatusOK)
		records++
	}

	waitApplied(t, e, records)
	if v := read("inf"); v.Events["Before"] != 1 || v.Orders.Count != 0 {
		t.Errorf("profile inf: events %v orders %+v", v.Events, v.Orders)
	}
	if v := read("str"); v.Orders.Count != 1 || v.Orders.Revenue.String() != "19.99" {
		t.Errorf("numeric string straight on Kafka: orders %+v, want one of 19.99", v.Orders)
	}
	for i := 0; i < len(ctl); i += 3 {
		if v := read(ctl[i]); v.Events[ctl[i+2]] != 1 {
			t.Errorf("profile %q: events %v", ctl[i], v.Events)
		}
		if v := read(ctl[i+1]); v.Calls["page"] != 1 {
			t.Errorf("profile %q: calls %v", ctl[i+1], v.Calls)
		}
	}
	if v := read("trait-ctl"); string(v.Traits["name"]) != `"a\u0007b\u0000"` || string(v.Traits["country"]) != `"F\u0007R"` {
		t.Errorf("traits with control characters read %s", v.Traits)
	}
	read("b-ok")
	read("b-anon")
	if v := read("b-str"); v.Orders.Revenue.String() != "19.99" {
		t.Errorf("revenue \"19.99\" in a batch: orders %+v", v.Orders)
	}
	for _, k := range []string{"b-bad", "b-inf"} {
		if _, ok := e.profile(t, k); ok {
			t.Errorf("refused batch event reached profile %s", k)
		}
	}
	for _, k := range keys {
		if v := read(k); v.Calls["track"] != 1 {
			t.Errorf("profile %q: calls %v", k, v.Calls)
		}
	}

	// Only the record that bypassed collect is a dead letter.
	dead := testkafka.Consume(t, brokers, topics.DeadLetter, 2, 5*time.Second)
	if len(dead) != 1 || string(dead[0].Key) != "inf" {
		t.Fatalf("%d dead letters, want only the direct 1e400 record", len(dead))
	}
	for _, h := range dead[0].Headers {
		if h.Key == stream.HeaderReason && !strings.Contains(string(h.Value), "properties.total: number 1e400 is out of range") {
			t.Errorf("dead letter reason %q", h.Value)
		}
	}
}
