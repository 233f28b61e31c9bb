package event_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fastjson"

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

		// RudderStack's SDKs send an identify call's traits in context.traits
		// only (rudder-sdk-python rudderstack/analytics/client.py identify;
		// rudder-sdk-js packages/analytics-js/src/components/eventManager/RudderEventFactory.ts).
		{name: "identify context.traits", in: `{"type": "identify", "userId": "u", "context": {"traits": {"email": "a@b.c"}}}`,
			check: wantTraits(`{"email":"a@b.c"}`)},
		{name: "identify null traits, context.traits", in: `{"type": "identify", "userId": "u", "traits": null, "context": {"traits": {"plan": "pro"}}}`,
			check: wantTraits(`{"plan":"pro"}`)},
		{name: "identify traits win over context.traits", in: `{"type": "identify", "userId": "u", "traits": {"plan": "pro"}, "context": {"traits": {"plan": "free"}}}`,
			check: wantTraits(`{"plan":"pro"}`)},
		{name: "identify empty traits win", in: `{"type": "identify", "userId": "u", "traits": {}, "context": {"traits": {"plan": "free"}}}`,
			check: wantTraits(`{}`)},
		{name: "context.traits not an object is ignored", in: `{"type": "identify", "userId": "u", "context": {"traits": "x"}}`,
			check: wantTraits("")},
		{name: "track context.traits not read", in: `{"type": "track", "userId": "u", "event": "E", "context": {"traits": {"plan": "free"}}}`,
			check: wantTraits("")},
		{name: "group context.traits not read", in: `{"type": "group", "userId": "u", "groupId": "g", "context": {"traits": {"plan": "free"}}}`,
			check: wantTraits("")},
		// rudder-sdk-js sends originalTimestamp and sentAt, no timestamp
		// (packages/analytics-js/src/components/eventManager/utilities.ts getEnrichedEvent).
		{name: "originalTimestamp", in: `{"type": "track", "anonymousId": "a", "event": "E", "originalTimestamp": "2026-05-01T11:00:00.123Z", "sentAt": "2026-05-01T11:59:00.000Z"}`,
			check: wantTime(time.Date(2026, 5, 1, 11, 0, 0, 123e6, time.UTC))},
		{name: "timestamp wins over originalTimestamp", in: `{"type": "track", "anonymousId": "a", "event": "E", "timestamp": "2026-05-01T10:00:00Z", "originalTimestamp": "2026-05-01T11:00:00Z"}`,
			check: wantTime(time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC))},
		{name: "malformed originalTimestamp ignored", in: `{"type": "track", "anonymousId": "a", "event": "E", "originalTimestamp": "soon", "sentAt": "2026-05-01T11:59:00Z"}`,
			check: wantTime(time.Date(2026, 5, 1, 11, 59, 0, 0, time.UTC))},
		{name: "ancient originalTimestamp ignored", in: `{"type": "track", "anonymousId": "a", "event": "E", "originalTimestamp": "1970-01-01T00:00:00Z", "sentAt": "2026-05-01T11:59:00Z"}`,
			check: wantTime(time.Date(2026, 5, 1, 11, 59, 0, 0, time.UTC))},
		{name: "future originalTimestamp ignored", in: `{"type": "track", "anonymousId": "a", "event": "E", "originalTimestamp": "2027-01-01T00:00:00Z"}`,
			check: wantTime(received)},
		{name: "originalTimestamp number ignored", in: `{"type": "track", "anonymousId": "a", "event": "E", "originalTimestamp": 5}`,
			check: wantTime(received)},

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
		{name: "order total string", in: `{"type": "track", "userId": "u", "event": "Order Refunded", "properties": {"total": "five"}}`, field: "properties.total", err: `properties.total: must be a number, not string "five"`},
		{name: "decimal comma", in: `{"type": "track", "userId": "u", "event": "Order Completed", "properties": {"revenue": "19,99"}}`, field: "properties.revenue", err: `must be a number, not string "19,99"`},
		{name: "numeric string revenue", in: `{"type": "track", "userId": "u", "event": "Order Completed", "properties": {"revenue": "19.99"}}`,
			check: func(t *testing.T, ev event.Event) {
				if a, ok := ev.OrderAmount(); a.String() != "19.99" || !ok {
					t.Errorf("amount %v %v", a, ok)
				}
				if got := string(ev.AppendJSON(nil)); !strings.Contains(got, `"revenue":19.99`) {
					t.Errorf("written as %s, want the number", got)
				}
			}},
		{name: "numeric string products", in: `{"type": "track", "userId": "u", "event": "Order Completed", "properties": {"products": [{"price": "2.50", "quantity": "3"}]}}`,
			check: func(t *testing.T, ev event.Event) {
				if a, ok := ev.OrderAmount(); a.String() != "7.5" || !ok {
					t.Errorf("amount %v %v", a, ok)
				}
			}},
		{name: "numeric string out of range", in: `{"type": "track", "userId": "u", "event": "Order Completed", "properties": {"total": "1e400"}}`, field: "properties.total", err: "number 1e400 is out of range"},
		{name: "total 1e400", in: `{"type": "track", "userId": "u", "event": "Order Completed", "properties": {"order_id": "o1", "total": 1e400}}`, field: "properties.total", err: "properties.total: number 1e400 is out of range"},
		{name: "deep -1e400", in: `{"type": "track", "userId": "u", "event": "E", "properties": {"x": {"y": [1, -1E+309]}}}`, field: "properties.x.y[1]", err: "number -1E+309 is out of range"},
		{name: "trait 1e400", in: `{"type": "identify", "userId": "u", "traits": {"age": 1e400}}`, field: "traits.age", err: "out of range"},
		{name: "huge integer in context", in: `{"type": "page", "userId": "u", "context": {"n": 1` + strings.Repeat("0", 400) + `}}`, field: "context.n", err: "out of range"},
		{name: "tiny number kept", in: `{"type": "track", "userId": "u", "event": "E", "properties": {"x": 1e-400}}`},
		{name: "control characters kept", in: `{"type": "track", "userId": "a\u0000b\u0007", "anonymousId": "\u000b", "event": "E\u0001"}`,
			check: func(t *testing.T, ev event.Event) {
				if ev.Key() != "a\x00b\a" || ev.AnonymousID != "\v" || ev.Name != "E\x01" {
					t.Errorf("key %q anonymousId %q name %q", ev.Key(), ev.AnonymousID, ev.Name)
				}
			}},
		{name: "zero timestamp", in: `{"type": "page", "userId": "u", "timestamp": "0001-01-01T00:00:00Z"}`, field: "timestamp", err: "timestamp: 0001-01-01T00:00:00Z is before 2000-01-01T00:00:00Z"},
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
	b, err := p.ParseBatch([]byte(`{"batch": [{"type": "identify", "userId": "a"}, {"type": "track", "anonymousId": "b", "event": "E"}], "sentAt": "2026-05-01T00:00:00Z"}`), received)
	if err != nil || len(b.Events) != 2 || b.Events[0].Type != event.Identify || b.Events[1].Key() != "b" || len(b.Refused) != 0 {
		t.Fatalf("got %+v, %v", b, err)
	}

	// Each event has its own verdict.
	b, err = p.ParseBatch([]byte(`{"batch": [{"type": "identify", "userId": "a"}, {"type": "track", "userId": "b"},
		{"type": "track", "userId": "c", "event": "Order Completed", "properties": {"revenue": "19.99"}},
		{"type": "track", "userId": "d", "event": "Order Completed", "properties": {"revenue": "much"}}]}`), received)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Events) != 2 || b.Index[0] != 0 || b.Index[1] != 2 || b.Events[1].Key() != "c" {
		t.Errorf("accepted %d events at %v, want batch[0] and batch[2]", len(b.Events), b.Index)
	}
	if len(b.Refused) != 2 || b.Refused[0].Index != 1 || b.Refused[0].Err.Field != "batch[1].event" ||
		b.Refused[1].Index != 3 || b.Refused[1].Err.Field != "batch[3].properties.revenue" {
		t.Errorf("refused %+v, want batch[1].event and batch[3].properties.revenue", b.Refused)
	}

	// What is wrong with the body as a whole is an error.
	for body, want := range map[string]string{
		`{"batch": {}}`:  "batch: must be an array",
		`{"batch": []}`:  "batch: must not be empty",
		`{"events": []}`: "batch: is required",
		`[1]`:            "must be a JSON object",
		`{"batch": [`:    "malformed JSON",
	} {
		if _, err := p.ParseBatch([]byte(body), received); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseBatch(%s): %v, want %q", body, err, want)
		}
	}

	// An event over the limit once written is refused when written.
	big := `{"type": "track", "userId": "u", "event": "E", "properties": {"p": "` + strings.Repeat("x", 40<<10) + `"}}`
	b, err = p.ParseBatch([]byte(`{"batch": [`+big+`]}`), received)
	if err != nil || len(b.Events) != 1 {
		t.Fatalf("%+v %v", b, err)
	}
	if _, err := p.AppendRecord(nil, &b.Events[0], "batch[0]"); !errors.Is(err, event.ErrTooLarge) {
		t.Errorf("oversized batch item: %v, want ErrTooLarge", err)
	}
	if _, err := p.Parse([]byte(big), 0, received); !errors.Is(err, event.ErrTooLarge) {
		t.Errorf("oversized event: %v, want ErrTooLarge", err)
	}
}

// TestZeroTimes: a time given as the zero time is refused as too old,
// not taken for an absent one, with any bound, by collect and consumer.
func TestZeroTimes(t *testing.T) {
	const zero = "0001-01-01T00:00:00Z"
	for _, l := range []event.Limits{event.DefaultLimits(), {}} {
		for _, stamp := range []bool{true, false} {
			p := event.NewParser(l)
			p.Stamp = stamp
			for _, member := range []string{"timestamp", "sentAt"} {
				_, err := p.Parse([]byte(`{"type": "page", "userId": "u", "`+member+`": "`+zero+`"}`), 0, received)
				var fe *event.Error
				if !errors.As(err, &fe) || fe.Field != member || !strings.Contains(err.Error(), "is before") {
					t.Errorf("limits %+v stamp %v: %s %s: %v", l, stamp, member, zero, err)
				}
			}
		}
		// The consumer reads the receive time from the record.
		p := event.NewParser(l)
		if _, err := p.Parse([]byte(`{"type": "page", "userId": "u", "receivedAt": "`+zero+`"}`), 0, received); err == nil {
			t.Errorf("limits %+v: receivedAt %s accepted", l, zero)
		}
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
		{`{"revenue": 1e20}`, "9223372036854.775807", true}, // saturates
		{`{"products": [{"price": 1e300, "quantity": 1e300}]}`, "9223372036854.775807", true},
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

// FuzzParse feeds arbitrary bytes to the decoder: it must never panic,
// what it accepts must have a profile key and an event time, and what
// collect writes to Kafka of an accepted event (stamped, re-encoded) must
// be accepted by the consumer's validator as the same event.
// wantTraits checks an event's traits, written as JSON ("": none).
func wantTraits(want string) func(t *testing.T, ev event.Event) {
	return func(t *testing.T, ev event.Event) {
		t.Helper()
		got := ""
		if ev.Traits != nil {
			got = string(ev.Traits.MarshalTo(nil))
		}
		if got != want {
			t.Errorf("traits %s, want %s", got, want)
		}
	}
}

// wantTime checks an event's time.
func wantTime(want time.Time) func(t *testing.T, ev event.Event) {
	return func(t *testing.T, ev event.Event) {
		t.Helper()
		if !ev.Time.Equal(want) {
			t.Errorf("time %v, want %v", ev.Time, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"type": "track", "userId": "u", "event": "E", "properties": {"revenue": 1}}`,
		`{"type": "identify", "anonymousId": "a", "traits": {"x": [1, {"y": null}]}}`,
		`{"type": "track", "userId": "u", "event": "Order Completed", "properties": {"order_id": 1, "products": [{"price": 1, "quantity": 2}]}}`,
		`{"type": "track", "userId": "u", "event": "Order Completed", "properties": {"revenue": "19.99", "products": [{"price": "1e2"}]}}`,
		`{"batch": [{"type": "page", "userId": "u"}, {"type": "track", "userId": "\u0007"}]}`,
		`{"type": "alias", "userId": "u", "previousId": "p", "timestamp": "2026-01-01T00:00:00Z"}`,
		`{"type": "track", "userId": "\u0000\u0001\u0007\u000b\ud800", "event": "\t\"\\", "messageId": "m\u2028"}`,
		`{"type": "page", "userId": "u", "name": "x", "name": "y", "receivedAt": "2020-01-01T00:00:00Z"}`,
		`{"type": "identify", "userId": "u", "context": {"traits": {"email": "a@b.c"}}, "channel": "server"}`,
		`{"type": "track", "anonymousId": "a", "event": "E", "originalTimestamp": "2026-05-01T11:00:00Z", "sentAt": "2026-05-01T11:59:00Z"}`,
		"{\"type\": \"page\", \"userId\": \"\xff\"}", `[`, `{"a":1e999}`, `{"type": "page", "userId": "u", "context": {"n": -1e400}}`,
	} {
		f.Add([]byte(s))
	}
	collect := event.NewParser(event.DefaultLimits())
	collect.Stamp = true
	consumer := event.NewParser(event.DefaultLimits())
	f.Fuzz(func(t *testing.T, data []byte) {
		if b, err := collect.ParseBatch(data, received); err == nil {
			for i := range b.Events {
				checkAccepted(t, collect, consumer, &b.Events[i], data)
			}
		}
		ev, err := collect.Parse(data, 0, received)
		if err != nil {
			var fe *event.Error
			if !errors.As(err, &fe) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		checkAccepted(t, collect, consumer, &ev, data)
	})
}

// checkAccepted checks an event collect accepted: it has a key and a time,
// and the record collect writes of it is the same event to the consumer.
func checkAccepted(t *testing.T, collect, consumer *event.Parser, ev *event.Event, data []byte) {
	t.Helper()
	if ev.Key() == "" || ev.Time.IsZero() {
		t.Fatalf("accepted event without key or time: %q", data)
	}
	ev.OrderID()
	var a fastjson.Arena
	ev.Stamp(&a, a.NewString(received.Format(time.RFC3339Nano)), func() string { return "generated" })
	rec, err := collect.AppendRecord(nil, ev, "")
	if errors.Is(err, event.ErrTooLarge) {
		return // refused by collect, never written
	}
	if err != nil || !json.Valid(rec) {
		t.Fatalf("%q: record %q: %v", data, rec, err)
	}
	back, err := consumer.Parse(rec, 0, received.Add(time.Hour))
	if err != nil {
		t.Fatalf("collect accepted %q and wrote %s, which the consumer refuses: %v", data, rec, err)
	}
	amount, ok := ev.OrderAmount()
	backAmount, backOK := back.OrderAmount()
	if back.Type != ev.Type || back.UserID != ev.UserID || back.AnonymousID != ev.AnonymousID ||
		back.MessageID != ev.MessageID || back.Name != ev.Name || back.GroupID != ev.GroupID ||
		back.PreviousID != ev.PreviousID || !back.Time.Equal(ev.Time) || !back.ReceivedAt.Equal(ev.ReceivedAt) ||
		back.OrderID() != ev.OrderID() || amount != backAmount || ok != backOK ||
		(back.Properties == nil) != (ev.Properties == nil) || (back.Traits == nil) != (ev.Traits == nil) {
		t.Fatalf("collect accepted %q as %+v; the consumer reads its record %s as %+v", data, *ev, rec, back)
	}
	if again := back.AppendJSON(nil); string(again) != string(rec) {
		t.Fatalf("record %s written again as %s", rec, again)
	}
}
