package serve

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/valyala/fastjson"
)

func basic(user string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":")) }

// TestCollectHandler: the write key from each place it may come, the
// method, one event and a batch, and what reaches Events.
func TestCollectHandler(t *testing.T) {
	const track = `{"type": "track", "userId": "u1", "event": "Order Completed", "messageId": "m1"}`
	for _, tc := range []struct {
		name    string
		r       request
		status  int
		code    string   // of an error answer
		records []string // keys produced, in order
	}{
		{"basic auth", request{method: "POST", uri: "/v1/track", auth: basic("w"), body: track}, 200, "", []string{"u1"}},
		{"bearer", request{method: "POST", uri: "/v1/track", auth: "Bearer w", body: track}, 200, "", []string{"u1"}},
		{"key in body", request{method: "POST", uri: "/v1/t", body: `{"writeKey": "w", "type": "track", "anonymousId": "a1", "event": "E"}`}, 200, "", []string{"a1"}},
		{"key in query", request{method: "POST", uri: "/v1/page?writeKey=w", body: `{"anonymousId": "a2"}`}, 200, "", []string{"a2"}},
		{"no key", request{method: "POST", uri: "/v1/track", body: track}, 401, "unauthorized", nil},
		{"wrong key", request{method: "POST", uri: "/v1/track", auth: basic("r"), body: track}, 401, "unauthorized", nil},
		{"wrong key in body", request{method: "POST", uri: "/v1/track", body: `{"writeKey": "x", "type": "track", "userId": "u", "event": "E"}`}, 401, "unauthorized", nil},
		// Without Basic auth nothing is said about the body before its key
		// is checked: a malformed body or a refused event without a valid
		// key is unauthorised, with one it is what it is.
		{"not JSON, no key", request{method: "POST", uri: "/v1/t", body: `{"type"`}, 401, "unauthorized", nil},
		{"not JSON, key in query", request{method: "POST", uri: "/v1/t?writeKey=w", body: `{"type"`}, 400, "invalid_body", nil},
		{"invalid event, key in body", request{method: "POST", uri: "/v1/t", body: `{"writeKey": "w", "type": "track", "userId": "u"}`}, 400, "invalid_event", nil},
		{"invalid event, wrong key in body", request{method: "POST", uri: "/v1/t", body: `{"writeKey": "x", "type": "track", "userId": "u"}`}, 401, "unauthorized", nil},
		{"batch, key in body", request{method: "POST", uri: "/v1/b", body: `{"writeKey": "w", "batch": [{"type": "page", "userId": "u4"}]}`}, 200, "", []string{"u4"}},
		{"batch, key only in an event", request{method: "POST", uri: "/v1/b", body: `{"batch": [{"type": "page", "userId": "u4", "writeKey": "w"}]}`}, 401, "unauthorized", nil},
		{"batch all refused, key in body", request{method: "POST", uri: "/v1/b", body: `{"writeKey": "w", "batch": [{"type": "page"}]}`}, 400, "invalid_batch", nil},
		{"batch all refused, no key", request{method: "POST", uri: "/v1/b", body: `{"batch": [{"type": "page"}]}`}, 401, "unauthorized", nil},
		{"batch not a list, key in body", request{method: "POST", uri: "/v1/b", body: `{"writeKey": "w", "batch": 1}`}, 400, "invalid_event", nil},
		{"batch not a list, no key", request{method: "POST", uri: "/v1/b", body: `{"batch": 1}`}, 401, "unauthorized", nil},
		{"GET", request{method: "GET", uri: "/v1/track", auth: basic("w")}, 405, "method_not_allowed", nil},
		{"invalid event", request{method: "POST", uri: "/v1/track", auth: basic("w"), body: `{"userId": "u"}`}, 400, "invalid_event", nil},
		{"type of another endpoint", request{method: "POST", uri: "/v1/identify", auth: basic("w"), body: track}, 400, "invalid_event", nil},
		{"not JSON", request{method: "POST", uri: "/v1/track", auth: basic("w"), body: `{"type"`}, 400, "invalid_body", nil},
		{"empty body", request{method: "POST", uri: "/v1/track", auth: basic("w")}, 400, "bad_request", nil},
		{"batch", request{method: "POST", uri: "/v1/batch", auth: basic("w"),
			body: `{"batch": [{"type": "page", "userId": "u2"}, {"type": "identify", "anonymousId": "a3"}]}`}, 200, "", []string{"u2", "a3"}},
		{"batch all refused", request{method: "POST", uri: "/v1/batch", auth: basic("w"),
			body: `{"batch": [{"type": "page"}, {"type": "nope", "userId": "u"}]}`}, 400, "invalid_batch", nil},
		{"batch not a list", request{method: "POST", uri: "/v1/batch", auth: basic("w"), body: `{"batch": {}}`}, 400, "invalid_event", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			s := handlerServer(t, Config{}, rec, noProfiles{})
			a := serveOnce(s, tc.r)
			if a.status != tc.status {
				t.Fatalf("%d %s, want %d", a.status, a.body, tc.status)
			}
			if tc.code != "" {
				if e := errorOf(t, a); e.Code != tc.code {
					t.Errorf("code %q (%s), want %q", e.Code, e.Message, tc.code)
				}
			} else if a.body != `{"success":true}` {
				t.Errorf("body %s, want success", a.body)
			}
			if len(rec.records) != len(tc.records) {
				t.Fatalf("%d records produced, want %d", len(rec.records), len(tc.records))
			}
			for i, r := range rec.records {
				v, err := fastjson.ParseBytes(r.Value)
				if err != nil {
					t.Fatal(err)
				}
				if string(r.Key) != tc.records[i] || r.Topic != "events" ||
					v.GetStringBytes("receivedAt") == nil || len(v.GetStringBytes("messageId")) == 0 {
					t.Errorf("record %d: key %q topic %q value %s", i, r.Key, r.Topic, r.Value)
				}
			}
		})
	}
}

// TestCollectBatchPartlyRefused: the valid events of a batch are stored,
// the others answered by index, in the batch's order.
func TestCollectBatchPartlyRefused(t *testing.T) {
	rec := &recorder{}
	s := handlerServer(t, Config{}, rec, noProfiles{})
	a := serveOnce(s, request{method: "POST", uri: "/v1/batch", auth: basic("w"), body: `{"batch": [
		{"type": "track", "userId": "u"},
		{"type": "page", "userId": "u"},
		{"type": "alias", "previousId": "p"}]}`})
	var got BatchAnswer
	if err := json.Unmarshal([]byte(a.body), &got); err != nil || a.status != 200 {
		t.Fatalf("%d %s: %v", a.status, a.body, err)
	}
	if got.Code != "partly_stored" || got.Accepted != 1 || len(got.Refused) != 2 ||
		got.Refused[0].Index != 0 || got.Refused[0].Field != "batch[0].event" || got.Refused[1].Index != 2 {
		t.Errorf("answer %+v", got)
	}
	if len(rec.records) != 1 || string(rec.records[0].Key) != "u" {
		t.Errorf("records %v, want the page of u", rec.records)
	}
}

// TestCollectProduceFails: events Kafka did not take are answered 503 with
// Retry-After, to be sent again.
func TestCollectProduceFails(t *testing.T) {
	s := handlerServer(t, Config{}, failing{errors.New("no brokers")}, noProfiles{})
	for _, r := range []request{
		{method: "POST", uri: "/v1/track", auth: basic("w"), body: `{"userId": "u", "event": "E"}`},
		{method: "POST", uri: "/v1/batch", auth: basic("w"), body: `{"batch": [{"type": "page", "userId": "u"}]}`},
	} {
		a := serveOnce(s, r)
		e := errorOf(t, a)
		if a.status != 503 || e.Code != "unavailable" || !strings.Contains(e.Message, "no brokers") ||
			string(a.header.Peek("Retry-After")) != "5" {
			t.Errorf("%s: %d %s, Retry-After %q", r.uri, a.status, a.body, a.header.Peek("Retry-After"))
		}
	}
}

// TestInsertRefused: refusals found late go in index order.
func TestInsertRefused(t *testing.T) {
	var list []RefusedEvent
	for _, i := range []int{3, 1, 4, 0, 2} {
		list = insertRefused(list, RefusedEvent{Index: i})
	}
	for i, r := range list {
		if r.Index != i {
			t.Fatalf("order %v", list)
		}
	}
}
