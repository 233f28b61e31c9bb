package stream

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/event"
)

// TestRoute: where a record read from a partition goes, by its kind.
func TestRoute(t *testing.T) {
	const n = 6
	p := &Processor{cfg: ProcessorConfig{Partitions: n, Topics: NewTopics("t.")}}
	at := func(key string) int32 { return PartitionOf(key, n) }
	other := func(key string) int32 { return (at(key) + 1) % n }
	rerouted := []kgo.RecordHeader{{Key: headerRerouted, Value: []byte("t.events/1/7")}}
	link := []kgo.RecordHeader{{Key: HeaderIdentity, Value: []byte(IdentityLink)}}
	for _, tc := range []struct {
		name      string
		partition int32
		key       string
		value     string
		headers   []kgo.RecordHeader
		// want: "" applied here, else the topic of the record produced
		wantTopic string
		wantKey   string
	}{
		{"keyed right", at("ada"), "ada", `{"type":"track","userId":"ada","event":"x"}`, nil, "", ""},
		{"keyed right, wrong partition", other("ada"), "ada", `{"type":"track","userId":"ada","event":"x"}`, nil, "t.events", "ada"},
		{"control characters, wrong partition", other("a\x07"), "a\x07", `{"type":"track","userId":"a\u0007","event":"x\u0000\u000b"}`, nil, "t.events", "a\x07"},
		{"anonymous, wrong partition", other("v1"), "v1", `{"type":"page","anonymousId":"v1"}`, nil, "t.events", "v1"},
		{"userId wins over anonymousId", other("ada"), "v1", `{"type":"track","userId":"ada","anonymousId":"v1","event":"x"}`, nil, "t.events", "ada"},
		{"keyed otherwise, right partition", at("ada"), "someone", `{"type":"track","userId":"ada","event":"x"}`, nil, "", ""},
		{"unkeyed, wrong partition", other("ada"), "", `{"type":"track","userId":"ada","event":"x"}`, nil, "t.events", "ada"},
		{"rerouted before, right partition", at("ada"), "ada", `{"type":"track","userId":"ada","event":"x"}`, rerouted, "", ""},
		{"rerouted before, wrong again", other("ada"), "ada", `{"type":"track","userId":"ada","event":"x"}`, rerouted, "t.deadletter", "ada"},
		{"link, right partition", at("v1"), "v1", "ada", link, "", ""},
		{"link, wrong partition", other("v1"), "v1", "ada", link, "t.events", "v1"},
		{"link rerouted before, wrong again", other("v1"), "v1", "ada", append(rerouted, link...), "t.deadletter", "v1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &kgo.Record{Topic: "t.events", Partition: tc.partition, Offset: 42, Key: []byte(tc.key), Value: []byte(tc.value), Headers: tc.headers}
			var out *kgo.Record
			var ok bool
			if identityKind(r) != "" {
				out, ok = p.routeIdentity(r)
			} else {
				ev, err := event.NewParser(event.DefaultLimits()).Parse(r.Value, 0, time.Now())
				if err != nil {
					t.Fatal(err)
				}
				out, ok = p.routeEvent(r, &ev)
			}
			if tc.wantTopic == "" {
				if !ok || out != nil {
					t.Fatalf("sent on to %+v, want it applied here", out)
				}
				return
			}
			if ok || out == nil {
				t.Fatalf("applied here, want it sent to %s", tc.wantTopic)
			}
			if out.Topic != tc.wantTopic || string(out.Key) != tc.wantKey {
				t.Fatalf("sent to %s keyed %q, want %s keyed %q", out.Topic, out.Key, tc.wantTopic, tc.wantKey)
			}
			if out.Topic != "t.events" {
				return
			}
			if !hasHeader(out, headerRerouted) {
				t.Errorf("headers %v: no %s", out.Headers, headerRerouted)
			}
			if identityKind(out) != identityKind(r) {
				t.Errorf("identity kind %q, want %q", identityKind(out), identityKind(r))
			}
			if identityKind(r) == "" {
				var v map[string]any
				if err := json.Unmarshal(out.Value, &v); err != nil {
					t.Fatalf("value %s: %v", out.Value, err)
				}
				if v["messageId"] == "" || v["messageId"] == nil {
					t.Errorf("value %s has no messageId: a redelivery would count twice", out.Value)
				}
			}
		})
	}
}

// TestRerouteWritesJSON: a record sent on to the profile its key was
// merged into is written as JSON the consumer reads back, with the new
// userId, whatever characters the keys hold.
func TestRerouteWritesJSON(t *testing.T) {
	p := &Processor{}
	parser := event.NewParser(event.DefaultLimits())
	for _, to := range []string{"ada", "a\x07\x00b", `q"\`} {
		r := &kgo.Record{Topic: "t.events", Partition: 1, Offset: 7, Value: []byte(`{"type":"track","anonymousId":"v\u0001","event":"x\u000b"}`)}
		ev, err := parser.Parse(r.Value, 0, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		out := p.reroute(r, &ev, to)
		back, err := parser.Parse(out.Value, 0, time.Now())
		if err != nil {
			t.Fatalf("to %q: %s reads back with %v", to, out.Value, err)
		}
		if back.UserID != to || back.AnonymousID != "v\x01" || back.Name != "x\x0b" || string(out.Key) != to || back.MessageID == "" {
			t.Errorf("to %q: %s reads back as userId %q, anonymousId %q, event %q, messageId %q (key %q)",
				to, out.Value, back.UserID, back.AnonymousID, back.Name, back.MessageID, out.Key)
		}
	}
}
