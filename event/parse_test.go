package event_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/event"
)

var received = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func TestParse(t *testing.T) {
	tests := []struct {
		name  string
		want  event.Type // endpoint type, 0 for the event's own
		in    string
		check func(t *testing.T, ev event.Event)
		field string // expected error field; "" with err "" means valid
		err   string
	}{
		{name: "track", want: event.Track, in: `{"userId": "u", "event": "Signed Up", "messageId": "m", "timestamp": "2026-04-30T10:00:00.5+02:00"}`,
			check: func(t *testing.T, ev event.Event) {
				if ev.Type != event.Track || ev.Name != "Signed Up" || ev.Key() != "u" || ev.MessageID != "m" {
					t.Errorf("got %+v", ev)
				}
				if want := time.Date(2026, 4, 30, 8, 0, 0, 5e8, time.UTC); !ev.Time.Equal(want) || ev.Time.Location() != time.UTC {
					t.Errorf("time %v, want %v in UTC", ev.Time, want)
				}
			}},
		{name: "anonymous key", in: `{"type": "page", "anonymousId": "a", "name": "Home"}`,
			check: func(t *testing.T, ev event.Event) {
				if ev.Key() != "a" || ev.Name != "Home" || !ev.Time.Equal(received) {
					t.Errorf("got key %q name %q time %v", ev.Key(), ev.Name, ev.Time)
				}
			}},
		{name: "userId wins over anonymousId", in: `{"type": "identify", "anonymousId": "a", "userId": "u", "traits": {"x": 1}}`,
			check: func(t *testing.T, ev event.Event) {
				if ev.Key() != "u" || ev.Traits == nil {
					t.Errorf("key %q traits %v", ev.Key(), ev.Traits)
				}
			}},
		{name: "sentAt when no timestamp", in: `{"type": "screen", "userId": "u", "sentAt": "2026-04-01T00:00:00Z"}`,
			check: func(t *testing.T, ev event.Event) {
				if !ev.Time.Equal(time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)) {
					t.Errorf("time %v", ev.Time)
				}
			}},
		{name: "event receivedAt trusted", in: `{"type": "track", "userId": "u", "event": "E", "receivedAt": "2026-03-01T00:00:00Z"}`,
			check: func(t *testing.T, ev event.Event) {
				if !ev.ReceivedAt.Equal(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) || !ev.Time.Equal(ev.ReceivedAt) {
					t.Errorf("receivedAt %v time %v", ev.ReceivedAt, ev.Time)
				}
			}},
		{name: "nulls are absent", in: `{"type": "track", "userId": "u", "anonymousId": null, "event": "E", "properties": null, "timestamp": null}`},
		{name: "numeric order_id", in: `{"type": "track", "userId": "u", "event": "Order Completed", "properties": {"order_id": 1234, "total": 5}}`,
			check: func(t *testing.T, ev event.Event) {
				if ev.OrderID() != "1234" {
					t.Errorf("order id %q", ev.OrderID())
				}
			}},
		{name: "alias", in: `{"type": "alias", "userId": "u", "previousId": "a"}`},
		{name: "group", in: `{"type": "group", "anonymousId": "a", "groupId": "g", "traits": {"n": 1}}`},

		{name: "not JSON", in: `{`, err: "malformed JSON"},
		{name: "number body", in: `42`, err: "must be a JSON object, not number"},
		{name: "no type", in: `{"userId": "u"}`, field: "type", err: "type: is required"},
		{name: "type not string", in: `{"type": 1, "userId": "u"}`, field: "type", err: "type: must be a string"},
		{name: "unknown type", in: `{"type": "purchase", "userId": "u"}`, field: "type", err: `type: unknown event type "purchase": want identify, track, page, screen, group or alias`},
		{name: "endpoint mismatch", want: event.Page, in: `{"type": "track", "userId": "u"}`, field: "type", err: `type: is "track" but this endpoint takes "page"`},
		{name: "messageId number", in: `{"type": "page", "userId": "u", "messageId": 5}`, field: "messageId", err: "messageId: must be a string, not number"},
		{name: "long userId", in: `{"type": "page", "userId": "` + strings.Repeat("u", 300) + `"}`, field: "userId", err: "userId: is 300 bytes long, the limit is 256"},
		{name: "no ids", in: `{"type": "page"}`, field: "userId", err: "userId: userId or anonymousId is required"},
		{name: "track without event", in: `{"type": "track", "userId": "u", "event": ""}`, field: "event", err: "event: is required for a track call"},
		{name: "alias without userId", in: `{"type": "alias", "anonymousId": "a", "previousId": "p"}`, field: "userId", err: "userId: is required for an alias call"},
		{name: "context array", in: `{"type": "page", "userId": "u", "context": []}`, field: "context", err: "context: must be an object, not array"},
		{name: "bad time", in: `{"type": "page", "userId": "u", "timestamp": "yesterday"}`, field: "timestamp", err: `timestamp: "yesterday" is not an ISO-8601 time with a zone`},
		{name: "future", in: `{"type": "page", "userId": "u", "timestamp": "2026-05-03T12:00:00Z"}`, field: "timestamp", err: "timestamp: 2026-05-03T12:00:00Z is more than 24h0m0s after the receive time 2026-05-01T12:00:00Z"},
		{name: "ancient", in: `{"type": "page", "userId": "u", "sentAt": "1999-12-31T23:59:59Z"}`, field: "sentAt", err: "sentAt: 1999-12-31T23:59:59Z is before 2000-01-01T00:00:00Z, the oldest event time accepted"},
		{name: "order total string", in: `{"type": "track", "userId": "u", "event": "Order Refunded", "properties": {"total": "5"}}`, field: "properties.total", err: "properties.total: must be a number, not string"},
		{name: "order_id object", in: `{"type": "track", "userId": "u", "event": "Order Completed", "properties": {"order_id": {}}}`, field: "properties.order_id", err: "must be a string or a number, not object"},
		{name: "product not object", in: `{"type": "track", "userId": "u", "event": "Order Completed", "properties": {"products": [1]}}`, field: "properties.products[0]", err: "properties.products[0]: must be an object, not number"},
		{name: "invalid UTF-8", in: "{\"type\": \"page\", \"userId\": \"\xc3\x28\"}", err: "body is not valid UTF-8"},
	}
	p := event.NewParser(event.DefaultLimits())
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := p.Parse([]byte(tc.in), tc.want, received)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if tc.check != nil {
					tc.check(t, ev)
				}
				return
			}
			var fe *event.Error
			if !errors.As(err, &fe) {
				t.Fatalf("error %v, want an *event.Error", err)
			}
			if fe.Field != tc.field || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %q (field %q), want field %q and %q", err, fe.Field, tc.field, tc.err)
			}
		})
	}
}

func TestParseBatch(t *testing.T) {
	p := event.NewParser(event.DefaultLimits())
	evs, err := p.ParseBatch([]byte(`{"batch": [{"type": "identify", "userId": "a"}, {"type": "track", "anonymousId": "b", "event": "E"}], "sentAt": "2026-05-01T00:00:00Z"}`), received)
	if err != nil || len(evs) != 2 || evs[0].Type != event.Identify || evs[1].Key() != "b" {
		t.Fatalf("got %d events, %v", len(evs), err)
	}
	_, err = p.ParseBatch([]byte(`{"batch": [{"type": "identify", "userId": "a"}, {"type": "track", "userId": "b"}]}`), received)
	var fe *event.Error
	if !errors.As(err, &fe) || fe.Field != "batch[1].event" {
		t.Errorf("error %v, want one on batch[1].event", err)
	}
	big := `{"type": "track", "userId": "u", "event": "E", "properties": {"p": "` + strings.Repeat("x", 40<<10) + `"}}`
	if _, err := p.ParseBatch([]byte(`{"batch": [`+big+`]}`), received); !errors.Is(err, event.ErrTooLarge) {
		t.Errorf("oversized batch item: %v, want ErrTooLarge", err)
	}
	if _, err := p.Parse([]byte(big), 0, received); !errors.Is(err, event.ErrTooLarge) {
		t.Errorf("oversized event: %v, want ErrTooLarge", err)
	}
}

func TestOrderAmount(t *testing.T) {
	tests := []struct {
		props string
		want  string
		ok    bool
	}{
		{`{"revenue": 10, "total": 12}`, "10", true},
		{`{"total": 12}`, "12", true},
		{`{"products": [{"price": 2.5, "quantity": 4}, {"price": 1}]}`, "11", true},
		{`{"products": [{"price": 0.1, "quantity": 3}, {"price": 0.2}]}`, "0.5", true}, // exactly
		{`{"revenue": 5391.21}`, "5391.21", true},
		{`{"revenue": 1e400}`, "9223372036854.775807", true}, // saturates
		{`{"products": [{"name": "no price"}]}`, "0", false},
		{`{}`, "0", false},
	}
	p := event.NewParser(event.Limits{})
	for _, tc := range tests {
		ev, err := p.Parse([]byte(`{"type": "track", "userId": "u", "event": "Order Completed", "properties": `+tc.props+`}`), 0, received)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := ev.OrderAmount(); got.String() != tc.want || ok != tc.ok {
			t.Errorf("%s: amount %v %v, want %v %v", tc.props, got, ok, tc.want, tc.ok)
		}
	}
}

// FuzzParse feeds arbitrary bytes to the decoder: it must never panic, and
// what it accepts must have a profile key and an event time.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"type": "track", "userId": "u", "event": "E", "properties": {"revenue": 1}}`,
		`{"type": "identify", "anonymousId": "a", "traits": {"x": [1, {"y": null}]}}`,
		`{"type": "track", "userId": "u", "event": "Order Completed", "properties": {"order_id": 1, "products": [{"price": 1, "quantity": 2}]}}`,
		`{"batch": [{"type": "page", "userId": "u"}]}`,
		`{"type": "alias", "userId": "u", "previousId": "p", "timestamp": "2026-01-01T00:00:00Z"}`,
		"{\"type\": \"page\", \"userId\": \"\xff\"}", `[`, `{"a":1e999}`,
	} {
		f.Add([]byte(s))
	}
	p := event.NewParser(event.DefaultLimits())
	f.Fuzz(func(t *testing.T, data []byte) {
		if evs, err := p.ParseBatch(data, received); err == nil {
			for _, ev := range evs {
				if ev.Key() == "" || ev.Time.IsZero() {
					t.Fatalf("accepted batch event without key or time: %q", data)
				}
			}
		}
		ev, err := p.Parse(data, 0, received)
		if err != nil {
			var fe *event.Error
			if !errors.As(err, &fe) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if ev.Key() == "" || ev.Time.IsZero() {
			t.Fatalf("accepted event without key or time: %q", data)
		}
		ev.OrderAmount()
		ev.OrderID()
	})
}
