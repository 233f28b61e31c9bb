package stream

import (
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/state"
)

// Routing: every record is applied by the partition its key maps to
// (PartitionOf, the murmur2 of Kafka's default partitioner), whatever the
// producer that wrote it did. A record read from another partition (a
// producer with its own partitioner, such as kcat's default, or one that
// did not key it by the profile key) is produced again to the right one,
// in the batch's transaction like every output (decision 0007), so it is
// applied there exactly once, and counted as rerouted here.
//
// What "its key" is depends on the record:
//   - an event: its profile key, userId else anonymousId, from its body;
//     the record key does not matter;
//   - an identity record (HeaderIdentity): its record key, the key whose
//     profile it moves (link) or joins (merge).
//
// An event whose key was merged into another follows it (applyRecord,
// counting hops: links in a cycle end in the dead-letter topic). A record
// the engine rerouted carries headerRerouted; if it is read from the wrong
// partition again, the producers' partitioning disagrees with PartitionOf
// (the events topic's partition count changed under a running engine) and
// it goes to the dead-letter topic rather than round and round.

// headerRerouted marks a record produced again to its key's partition; the
// value is where it was read (topic/partition/offset).
const headerRerouted = "tailor.rerouted-from"

// misplaced reports whether r was read from another partition than key's.
func (p *Processor) misplaced(r *kgo.Record, key string) bool {
	return PartitionOf(key, p.cfg.Partitions) != r.Partition
}

// routeEvent returns ok when the event ev read in r belongs to the
// partition r was read from; otherwise the record to produce instead: ev
// sent on to its partition, or a dead letter.
func (p *Processor) routeEvent(r *kgo.Record, ev *event.Event) (out *kgo.Record, ok bool) {
	key := ev.Key()
	if !p.misplaced(r, key) {
		return nil, true
	}
	if hasHeader(r, headerRerouted) {
		return p.deadLetter(r, p.loopError(r, key)), false
	}
	return p.reroute(r, ev, ""), false
}

// routeIdentity is routeEvent for an identity record: it belongs to the
// partition of its record key, and is sent on there unchanged.
func (p *Processor) routeIdentity(r *kgo.Record) (out *kgo.Record, ok bool) {
	key := string(r.Key)
	if !p.misplaced(r, key) {
		return nil, true
	}
	if hasHeader(r, headerRerouted) {
		return p.deadLetter(r, p.loopError(r, key)), false
	}
	return &kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value, Headers: withRerouted(r.Headers, r)}, false
}

func (p *Processor) loopError(r *kgo.Record, key string) error {
	return fmt.Errorf("key %q maps to partition %d of %d, but the record was read from partition %d after being produced again to its key's partition: the events topic's partition count is not %d",
		key, PartitionOf(key, p.cfg.Partitions), p.cfg.Partitions, r.Partition, p.cfg.Partitions)
}

// hasHeader reports whether r has a header named key.
func hasHeader(r *kgo.Record, key string) bool {
	for _, h := range r.Headers {
		if h.Key == key {
			return true
		}
	}
	return false
}

// withRerouted returns headers with headerRerouted set to where r was read,
// in a new slice.
func withRerouted(headers []kgo.RecordHeader, r *kgo.Record) []kgo.RecordHeader {
	out := make([]kgo.RecordHeader, 0, len(headers)+1)
	for _, h := range headers {
		if h.Key != headerRerouted {
			out = append(out, h)
		}
	}
	return append(out, kgo.RecordHeader{Key: headerRerouted, Value: []byte(source(r))})
}

// reroute returns the record to produce again, keyed by the event's profile
// key, or with to as its userId and key when to is not empty (the key's
// profile was merged into to's). An event without a messageId gets one
// derived from where it was read, so that a crash before the commit
// cannot apply it twice.
func (p *Processor) reroute(r *kgo.Record, ev *event.Event, to string) *kgo.Record {
	value := r.Value
	if ev.MessageID == "" {
		ev.SetString("messageId", "reroute-"+r.Topic+"-"+strconv.Itoa(int(r.Partition))+"-"+strconv.FormatInt(r.Offset, 10))
		value = nil
	}
	key := ev.Key()
	if to != "" {
		ev.SetString("userId", to)
		key, value = to, nil
	}
	if value == nil {
		value = ev.AppendJSON(nil)
	}
	return &kgo.Record{Topic: r.Topic, Key: []byte(key), Value: value, Headers: withRerouted(r.Headers, r)}
}

// headerLinkHops counts the times a record was sent on to the profile its
// key was merged into: links that form a cycle (a merged into b, then b
// into a) would send it on forever.
const headerLinkHops = "tailor.link-hops"

// linkHops returns how many times r was sent on along links.
func linkHops(r *kgo.Record) int {
	for _, h := range r.Headers {
		if h.Key == headerLinkHops {
			n, _ := strconv.Atoi(string(h.Value))
			return n
		}
	}
	return 0
}

// withLinkHop returns out, sent on along a link from r, counting the hop.
func withLinkHop(out, r *kgo.Record) *kgo.Record {
	n := linkHops(r) + 1
	headers := make([]kgo.RecordHeader, 0, len(out.Headers)+1)
	for _, h := range out.Headers {
		if h.Key != headerLinkHops {
			headers = append(headers, h)
		}
	}
	out.Headers = append(headers, kgo.RecordHeader{Key: headerLinkHops, Value: []byte(strconv.Itoa(n))})
	return out
}

// identityKind returns the kind of an identity record, "" for an event.
func identityKind(r *kgo.Record) string { return headerValue(r, HeaderIdentity) }

// headerValue returns the value of r's header named key, "" without one.
func headerValue(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// linkRecord returns the record asking the partition of l.From to move
// its profile into l.To.
func (p *Processor) linkRecord(l state.Link) *kgo.Record {
	return &kgo.Record{Topic: p.cfg.Topics.Events, Key: []byte(l.From), Value: []byte(l.To),
		Headers: []kgo.RecordHeader{{Key: HeaderIdentity, Value: []byte(IdentityLink)}}}
}
