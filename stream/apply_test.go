package stream

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fastjson"

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/state"
)

// header returns the value of r's header key, "" when it has none.
func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// TestApplyRecord runs records through applyRecord, one store batch over a
// real store, in an order where each depends on the ones before: applied
// and duplicate events, dead letters, reroutes to the key's partition and
// along a link, and the identity records that link and merge profiles.
func TestApplyRecord(t *testing.T) {
	const n = 4
	store, err := state.Open(t.TempDir(), state.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	p := &Processor{cfg: ProcessorConfig{Partitions: n, Topics: NewTopics("t.")}}
	part := &partition{parser: event.NewParser(event.DefaultLimits())}
	batch := store.Begin()
	defer batch.Discard()

	at := func(key string) int32 { return PartitionOf(key, n) }
	other := func(key string) int32 { return (at(key) + 1) % n }
	identityHeader := func(kind string) []kgo.RecordHeader {
		return []kgo.RecordHeader{{Key: HeaderIdentity, Value: []byte(kind)}}
	}
	var moved []byte // the profile of v1, taken out by the link
	received := time.Now()
	offset := int64(0)
	for _, tc := range []struct {
		name      string
		partition int32
		key       string
		value     string
		headers   []kgo.RecordHeader
		outcome   outcome
		topic     string // of the record produced; "" for none
		outKey    string
		check     func(t *testing.T, out *kgo.Record)
	}{
		{name: "applied", partition: at("v1"), key: "v1", value: `{"type":"page","anonymousId":"v1","messageId":"m1"}`, outcome: applied},
		{name: "duplicate", partition: at("v1"), key: "v1", value: `{"type":"page","anonymousId":"v1","messageId":"m1"}`, outcome: duplicate},
		{name: "invalid", partition: at("v1"), key: "v1", value: `{"type":"track","anonymousId":"v1"}`, outcome: deadLettered, topic: "t.deadletter", outKey: "v1",
			check: func(t *testing.T, out *kgo.Record) {
				if string(out.Value) != `{"type":"track","anonymousId":"v1"}` || !strings.Contains(header(out, HeaderReason), "event: is required") {
					t.Errorf("dead letter %s, reason %q", out.Value, header(out, HeaderReason))
				}
			}},
		{name: "not JSON", partition: at("v1"), key: "v1", value: `{"type"`, outcome: deadLettered, topic: "t.deadletter", outKey: "v1"},
		{name: "wrong partition", partition: other("ada"), key: "ada", value: `{"type":"page","userId":"ada","messageId":"m2"}`, outcome: rerouted, topic: "t.events", outKey: "ada",
			check: func(t *testing.T, out *kgo.Record) {
				if header(out, headerRerouted) == "" || string(out.Value) != `{"type":"page","userId":"ada","messageId":"m2"}` {
					t.Errorf("rerouted %s with headers %v", out.Value, out.Headers)
				}
			}},
		{name: "wrong partition again", partition: other("ada"), key: "ada", value: `{"type":"page","userId":"ada","messageId":"m2"}`,
			headers: []kgo.RecordHeader{{Key: headerRerouted, Value: []byte("t.events/0/1")}}, outcome: deadLettered, topic: "t.deadletter", outKey: "ada",
			check: func(t *testing.T, out *kgo.Record) {
				if !strings.Contains(header(out, HeaderReason), "partition count is not 4") {
					t.Errorf("reason %q", header(out, HeaderReason))
				}
			}},
		{name: "link", partition: at("v1"), key: "v1", value: "ada", headers: identityHeader(IdentityLink), outcome: identity, topic: "t.events", outKey: "ada",
			check: func(t *testing.T, out *kgo.Record) {
				if header(out, HeaderIdentity) != IdentityMerge {
					t.Errorf("headers %v, want a merge", out.Headers)
				}
				prof, err := state.DecodeProfile(out.Value)
				if err != nil || prof.Key != "v1" || prof.TypeCounts[event.Page] != 1 {
					t.Fatalf("moved profile %+v, %v", prof, err)
				}
				moved = out.Value
			}},
		{name: "link again", partition: at("v1"), key: "v1", value: "ada", headers: identityHeader(IdentityLink), outcome: identity},
		{name: "follows the link", partition: at("v1"), key: "v1", value: `{"type":"track","anonymousId":"v1","event":"E","messageId":"m3"}`, outcome: rerouted, topic: "t.events", outKey: "ada",
			check: func(t *testing.T, out *kgo.Record) {
				v, err := fastjson.ParseBytes(out.Value)
				if err != nil || string(v.GetStringBytes("userId")) != "ada" || header(out, headerLinkHops) != "1" {
					t.Errorf("sent on %s with headers %v", out.Value, out.Headers)
				}
			}},
		{name: "links in a cycle", partition: at("v1"), key: "v1", value: `{"type":"track","anonymousId":"v1","event":"E","messageId":"m4"}`,
			headers: []kgo.RecordHeader{{Key: headerLinkHops, Value: []byte(strconv.Itoa(maxAliasHops))}}, outcome: deadLettered, topic: "t.deadletter", outKey: "v1",
			check: func(t *testing.T, out *kgo.Record) {
				if !strings.Contains(header(out, HeaderReason), "links in a cycle") {
					t.Errorf("reason %q", header(out, HeaderReason))
				}
			}},
		{name: "link on the wrong partition", partition: other("v2"), key: "v2", value: "ada", headers: identityHeader(IdentityLink), outcome: rerouted, topic: "t.events", outKey: "v2",
			check: func(t *testing.T, out *kgo.Record) {
				if header(out, HeaderIdentity) != IdentityLink || header(out, headerRerouted) == "" || string(out.Value) != "ada" {
					t.Errorf("sent on %s with headers %v", out.Value, out.Headers)
				}
			}},
		{name: "merge", partition: at("ada"), key: "ada", headers: identityHeader(IdentityMerge), outcome: identity,
			check: func(t *testing.T, _ *kgo.Record) {
				prof, err := batch.Profile("ada")
				if err != nil || prof.TypeCounts[event.Page] != 1 {
					t.Errorf("ada after the merge: %+v, %v; want v1's page", prof, err)
				}
			}},
		{name: "merge of a damaged profile", partition: at("ada"), key: "ada", value: "\x07", headers: identityHeader(IdentityMerge), outcome: deadLettered, topic: "t.deadletter", outKey: "ada",
			check: func(t *testing.T, out *kgo.Record) {
				if !strings.Contains(header(out, HeaderReason), "identity merge record") {
					t.Errorf("reason %q", header(out, HeaderReason))
				}
			}},
		{name: "identity of unknown kind", partition: at("ada"), key: "ada", value: "x", headers: identityHeader("split"), outcome: deadLettered, topic: "t.deadletter", outKey: "ada",
			check: func(t *testing.T, out *kgo.Record) {
				if !strings.Contains(header(out, HeaderReason), `unknown kind "split"`) {
					t.Errorf("reason %q", header(out, HeaderReason))
				}
			}},
	} {
		offset++
		value := []byte(tc.value)
		if tc.name == "merge" {
			value = moved
		}
		r := &kgo.Record{Topic: "t.events", Partition: tc.partition, Offset: offset, Key: []byte(tc.key), Value: value, Headers: tc.headers, Timestamp: received}
		v, err := p.applyRecord(batch, part, r)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if v.outcome != tc.outcome {
			t.Errorf("%s: outcome %v, want %v", tc.name, v.outcome, tc.outcome)
		}
		switch {
		case tc.topic == "" && v.out != nil:
			t.Errorf("%s: produces %s %q, want nothing", tc.name, v.out.Topic, v.out.Key)
		case tc.topic != "" && (v.out == nil || v.out.Topic != tc.topic || string(v.out.Key) != tc.outKey):
			t.Errorf("%s: produces %+v, want a record to %s keyed %q", tc.name, v.out, tc.topic, tc.outKey)
		case tc.topic == "t.deadletter" && header(v.out, HeaderSource) != "t.events/"+strconv.Itoa(int(tc.partition))+"/"+strconv.FormatInt(offset, 10):
			t.Errorf("%s: dead letter's source %q", tc.name, header(v.out, HeaderSource))
		case tc.check != nil:
			tc.check(t, v.out)
		}
	}
}

// TestOutcomeNames: every outcome has the metric label docs/operations.md names.
func TestOutcomeNames(t *testing.T) {
	for o, want := range map[outcome]string{applied: OutcomeApplied, duplicate: OutcomeDuplicate,
		deadLettered: OutcomeDeadLetter, rerouted: OutcomeRerouted, identity: OutcomeIdentity, erased: OutcomeErased} {
		if o.String() != want || want == "" {
			t.Errorf("outcome %d is %q, want %q", o, o.String(), want)
		}
	}
	if got := numOutcomes.String(); got != "outcome(6)" {
		t.Errorf("unknown outcome is %q", got)
	}
}
