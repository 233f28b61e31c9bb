package state

import (
	"errors"
	"iter"
	"math"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
)

// Profile encoding
//
// A stored profile is one format byte followed by protobuf wire-format
// fields (numbered as below; no generated code, just protowire). The wire
// format is what makes the encoding last: a later version may add fields,
// and readers skip field numbers they do not know, so state written by this
// version stays readable by later ones and the other way round. The format
// byte changes only for a change that the field rules cannot express; a
// reader must then keep decoding every earlier format.
//
// Never reuse or renumber a field. testdata/profile-v1.bin pins format 1.

// formatV1 is the first profile encoding.
const formatV1 byte = 1

// Field numbers of format 1.
const (
	fieldKey            = 1  // bytes
	fieldUserID         = 2  // bytes
	fieldAnonymousID    = 3  // bytes, repeated
	fieldTrait          = 4  // message {1: name, 2: JSON value, 3: updated ms, 4: source, 5: why not normalised}, repeated (4 and 5 absent when written before decision 0026, or empty)
	fieldFirstSeen      = 5  // varint ms
	fieldLastSeen       = 6  // varint ms
	fieldTypeCount      = 7  // message {1: event.Type, 2: count}, repeated
	fieldEventCount     = 8  // message {1: name, 2: count, 3: last event ms}, repeated
	fieldOrders         = 9  // varint
	fieldRevenue        = 10 // read only, written before fieldRevenueExact: fixed64 float64 bits
	fieldLastOrderAt    = 11 // varint ms
	fieldRefunds        = 12 // varint
	fieldRefundedAmount = 13 // read only, written before fieldRefundedExact: fixed64 float64 bits
	fieldRecentHashes   = 14 // packed fixed64: messageId hashes, oldest first
	fieldRecentTimes    = 15 // packed zigzag varint: their receive ms, each as the difference to the one before
	fieldAggregate      = 16 // read only, written before fieldAggregates: message {4: id fixed64, 3: bucket message, repeated}, repeated; before ids, {1: name, 2: fingerprint fixed64} in place of 4
	fieldSegment        = 17 // message {1: name, 2: entered ms}, repeated
	fieldInterest       = 18 // message {1: category, 2: score fixed64, 3: ms}, repeated
	fieldConsent        = 19 // message {1: purpose, 2: granted 0/1, 3: ms}, repeated
	fieldOffer          = 20 // message {1: offer id, 2: clicked ms, 3: converted ms, 4: touched ms, 5: decision hashes packed fixed64, 6: their ms packed zigzag deltas, 7: their feedback flags, one byte each}, repeated
	fieldViewed         = 21 // bytes, repeated: product ids viewed, oldest first
	fieldBought         = 22 // bytes, repeated: product ids bought, oldest first
	fieldWakeAt         = 23 // varint ms: when time alone may next change a segment
	fieldOrderTimes     = 24 // packed zigzag varint: the order log's event ms, each as the difference to the one before
	fieldOrderAmounts   = 25 // read only, written before fieldOrderExact: packed fixed64 float64 bits: their amounts
	fieldRFMPoint       = 26 // message {1: counted 0/1, 2: day zigzag, 3: orders, 4: revenue bin zigzag}: where the RFM histograms count the profile
	fieldMovedOrder     = 27 // message {1: order id, 2: amount fixed64 float64 bits (read only), 3: event ms, 4: amount zigzag millionths}, repeated: in a profile taken out by Batch.Link only, the order ids its store counted (2, 3 and 4 absent when counted before they were kept)
	fieldAggregates     = 28 // read only, written before fieldAggregatesExact: bytes: every aggregate state, packed (packed.go), sums as float64 bits
	// Money exactly (decision 0016): amounts as zigzag varints of
	// millionths (money.Amount), in place of the float64 fields above,
	// which are still read when these are absent.
	fieldRevenueExact    = 29 // varint zigzag millionths
	fieldRefundedExact   = 30 // varint zigzag millionths
	fieldOrderExact      = 31 // packed zigzag varint millionths: the order log's amounts
	fieldAggregatesExact = 32 // bytes: every aggregate state, packed (packed.go), sums as int64 millionths
	fieldRFMScores       = 33 // varint 1<<12 | m<<8 | f<<4 | r: the RFM scores the segments were last evaluated on (0: absent)
	fieldConsentChange   = 34 // message {1: purpose, 2: granted 0/1, 3: event ms, 4: source}, repeated, oldest first: the consent history (decision 0029; absent when written before)
)

// Fields of an aggregate bucket message (fieldAggregate).
const (
	bucketStart  = 1 // zigzag varint ms
	bucketCount  = 2 // varint
	bucketSum    = 3 // fixed64 float64 bits
	bucketMin    = 4 // fixed64 float64 bits
	bucketMax    = 5 // fixed64 float64 bits
	bucketFirst  = 6 // zigzag varint ms
	bucketLast   = 7 // zigzag varint ms
	bucketHashes = 8 // packed fixed64
)

// errCorrupt is wrapped by every decoding error.
var errCorrupt = errors.New("corrupt profile encoding")

// AppendEncode appends the profile's encoding to dst.
func (p *Profile) AppendEncode(dst []byte) []byte {
	b, _ := p.appendEncode(dst, nil)
	return b
}

// appendEncode appends the profile's encoding to dst, building nested
// messages in scratch, and returns both. The fields are written in groups,
// each by its own step; the order is the same on every call.
func (p *Profile) appendEncode(dst, scratch []byte) (b, _ []byte) {
	start := len(dst)
	b = append(dst, formatV1)
	msg := scratch[:0]
	b, msg = p.appendIdentity(b, msg)
	b, msg = p.appendActivity(b, msg)
	b = p.appendOrderTotals(b)
	b = appendVarint(b, fieldWakeAt, uint64(p.WakeAt))
	b, msg = p.appendRFM(b, msg)
	b, msg = p.appendRecent(b, msg)
	b, msg = p.appendPreferences(b, msg)
	for _, id := range p.viewed {
		b = appendString(b, fieldViewed, id)
	}
	for _, id := range p.bought {
		b = appendString(b, fieldBought, id)
	}
	if len(p.aggs.data) > 0 {
		b = protowire.AppendTag(b, fieldAggregatesExact, protowire.BytesType)
		b = protowire.AppendBytes(b, p.aggs.data)
	}
	b, msg = p.appendMovedOrders(b, msg)
	p.encodedSize = len(b) - start
	return b, msg
}

// appendIdentity appends who the profile is: its key, ids and traits.
func (p *Profile) appendIdentity(b, msg []byte) ([]byte, []byte) {
	b = appendString(b, fieldKey, p.Key)
	b = appendString(b, fieldUserID, p.UserID)
	for _, id := range p.AnonymousIDs {
		b = protowire.AppendTag(b, fieldAnonymousID, protowire.BytesType)
		b = protowire.AppendString(b, id)
	}
	for name, t := range p.Traits {
		msg = msg[:0]
		msg = protowire.AppendTag(msg, 1, protowire.BytesType)
		msg = protowire.AppendString(msg, name)
		msg = protowire.AppendTag(msg, 2, protowire.BytesType)
		msg = protowire.AppendBytes(msg, t.Value)
		msg = appendVarint(msg, 3, uint64(t.UpdatedAt))
		msg = appendString(msg, 4, t.Source)
		msg = appendString(msg, 5, t.Unnormalised)
		b = protowire.AppendTag(b, fieldTrait, protowire.BytesType)
		b = protowire.AppendBytes(b, msg)
	}
	return b, msg
}

// appendActivity appends when the profile was seen and its counts of
// calls and events.
func (p *Profile) appendActivity(b, msg []byte) ([]byte, []byte) {
	b = appendVarint(b, fieldFirstSeen, uint64(p.FirstSeen))
	b = appendVarint(b, fieldLastSeen, uint64(p.LastSeen))
	for t, n := range p.TypeCounts {
		if n == 0 {
			continue
		}
		msg = msg[:0]
		msg = appendVarint(msg, 1, uint64(t))
		msg = appendVarint(msg, 2, n)
		b = protowire.AppendTag(b, fieldTypeCount, protowire.BytesType)
		b = protowire.AppendBytes(b, msg)
	}
	for name, n := range p.EventCounts {
		b, msg = appendNamedCount(b, msg, fieldEventCount, name, n, p.EventLast[name])
	}
	return b, msg
}

// appendOrderTotals appends the order and refund totals.
func (p *Profile) appendOrderTotals(b []byte) []byte {
	b = appendVarint(b, fieldOrders, p.Orders)
	b = appendVarint(b, fieldRevenueExact, protowire.EncodeZigZag(p.Revenue.Millionths()))
	b = appendVarint(b, fieldLastOrderAt, uint64(p.LastOrderAt))
	b = appendVarint(b, fieldRefunds, p.Refunds)
	return appendVarint(b, fieldRefundedExact, protowire.EncodeZigZag(p.RefundedAmount.Millionths()))
}

// appendRFM appends the RFM scores last evaluated, the order log and where
// the RFM histograms count the profile.
func (p *Profile) appendRFM(b, msg []byte) ([]byte, []byte) {
	if p.rfmScored {
		b = appendVarint(b, fieldRFMScores, p.rfmScores.encode())
	}
	if len(p.orderLog) > 0 {
		msg = appendTimeDeltas(msg[:0], slices.Values(p.orderLog), func(o orderRecord) int64 { return o.at })
		b = protowire.AppendTag(b, fieldOrderTimes, protowire.BytesType)
		b = protowire.AppendBytes(b, msg)
		msg = msg[:0]
		for _, o := range p.orderLog {
			msg = protowire.AppendVarint(msg, protowire.EncodeZigZag(o.amount.Millionths()))
		}
		b = protowire.AppendTag(b, fieldOrderExact, protowire.BytesType)
		b = protowire.AppendBytes(b, msg)
	}
	if p.rfmRecorded {
		msg = msg[:0]
		counted := uint64(0)
		if p.rfm.ok {
			counted = 1
		}
		msg = protowire.AppendTag(msg, 1, protowire.VarintType)
		msg = protowire.AppendVarint(msg, counted)
		msg = appendVarint(msg, 2, protowire.EncodeZigZag(p.rfm.day))
		msg = appendVarint(msg, 3, uint64(p.rfm.orders))
		msg = appendVarint(msg, 4, protowire.EncodeZigZag(p.rfm.money))
		b = protowire.AppendTag(b, fieldRFMPoint, protowire.BytesType)
		b = protowire.AppendBytes(b, msg)
	}
	return b, msg
}

// appendRecent appends the messageIds remembered for dedup.
func (p *Profile) appendRecent(b, msg []byte) ([]byte, []byte) {
	if p.recent.len() == 0 {
		return b, msg
	}
	b = protowire.AppendTag(b, fieldRecentHashes, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(8*p.recent.len()))
	for m := range p.recent.all() {
		b = protowire.AppendFixed64(b, m.hash)
	}
	msg = appendTimeDeltas(msg[:0], p.recent.all(), func(m seenMessage) int64 { return m.receivedAt })
	b = protowire.AppendTag(b, fieldRecentTimes, protowire.BytesType)
	return protowire.AppendBytes(b, msg), msg
}

// appendPreferences appends the segments, interests, consents, consent
// history and offer histories.
func (p *Profile) appendPreferences(b, msg []byte) ([]byte, []byte) {
	for name, at := range p.Segments {
		b, msg = appendNamedCount(b, msg, fieldSegment, name, uint64(at), 0)
	}
	for name, i := range p.interests {
		msg = msg[:0]
		msg = protowire.AppendTag(msg, 1, protowire.BytesType)
		msg = protowire.AppendString(msg, name)
		msg = protowire.AppendTag(msg, 2, protowire.Fixed64Type)
		msg = protowire.AppendFixed64(msg, math.Float64bits(i.score))
		msg = appendVarint(msg, 3, uint64(i.at))
		b = protowire.AppendTag(b, fieldInterest, protowire.BytesType)
		b = protowire.AppendBytes(b, msg)
	}
	for purpose, c := range p.consents {
		granted := uint64(0)
		if c.granted {
			granted = 1
		}
		b, msg = appendNamedCount(b, msg, fieldConsent, purpose, granted, c.at)
	}
	for _, c := range p.consentLog {
		msg = msg[:0]
		msg = protowire.AppendTag(msg, 1, protowire.BytesType)
		msg = protowire.AppendString(msg, c.purpose)
		if c.granted {
			msg = appendVarint(msg, 2, 1)
		}
		msg = appendVarint(msg, 3, uint64(c.at))
		msg = appendString(msg, 4, c.source)
		b = protowire.AppendTag(b, fieldConsentChange, protowire.BytesType)
		b = protowire.AppendBytes(b, msg)
	}
	for id, h := range p.offers {
		b = protowire.AppendTag(b, fieldOffer, protowire.BytesType)
		msg = h.appendEncode(msg[:0], id)
		b = protowire.AppendBytes(b, msg)
	}
	return b, msg
}

// appendMovedOrders appends the order ids of a profile taken out by
// Batch.Link.
func (p *Profile) appendMovedOrders(b, msg []byte) ([]byte, []byte) {
	for _, o := range p.movedOrders {
		msg = msg[:0]
		msg = protowire.AppendTag(msg, 1, protowire.BytesType)
		msg = protowire.AppendString(msg, o.id)
		if o.known {
			msg = appendVarint(msg, 3, uint64(o.at))
			msg = protowire.AppendTag(msg, 4, protowire.VarintType) // even when 0: known
			msg = protowire.AppendVarint(msg, protowire.EncodeZigZag(o.amount.Millionths()))
		}
		b = protowire.AppendTag(b, fieldMovedOrder, protowire.BytesType)
		b = protowire.AppendBytes(b, msg)
	}
	return b, msg
}

// appendNamedCount appends field num as a {1: name, 2: count, 3: last}
// message (read back by decodeCount), building it in scratch.
func appendNamedCount(b, scratch []byte, num protowire.Number, name string, count uint64, last int64) ([]byte, []byte) {
	scratch = scratch[:0]
	scratch = protowire.AppendTag(scratch, 1, protowire.BytesType)
	scratch = protowire.AppendString(scratch, name)
	scratch = appendVarint(scratch, 2, count)
	scratch = appendVarint(scratch, 3, uint64(last))
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, scratch), scratch
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendFloat(b []byte, num protowire.Number, f float64) []byte {
	if f == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, math.Float64bits(f))
}

func (h *offerHistory) appendEncode(b []byte, id string) []byte {
	b = appendString(b, 1, id)
	b = appendVarint(b, 2, uint64(h.clickedAt))
	b = appendVarint(b, 3, uint64(h.convertedAt))
	b = appendVarint(b, 4, uint64(h.touched))
	if len(h.decisions) == 0 {
		return b
	}
	b = protowire.AppendTag(b, 5, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(8*len(h.decisions)))
	for _, m := range h.decisions {
		b = protowire.AppendFixed64(b, m.hash)
	}
	times := appendTimeDeltas(nil, slices.Values(h.decisions), func(m decisionMark) int64 { return m.at })
	flags := make([]byte, len(h.decisions))
	for i, m := range h.decisions {
		flags[i] = byte(m.seen)
	}
	b = protowire.AppendTag(b, 6, protowire.BytesType)
	b = protowire.AppendBytes(b, times)
	b = protowire.AppendTag(b, 7, protowire.BytesType)
	return protowire.AppendBytes(b, flags)
}

// appendTimeDeltas appends the times of items (Unix ms, ascending as a
// rule), each as a zigzag varint difference to the one before.
func appendTimeDeltas[T any](b []byte, items iter.Seq[T], at func(T) int64) []byte {
	prev := int64(0)
	for it := range items {
		t := at(it)
		b = protowire.AppendVarint(b, protowire.EncodeZigZag(t-prev))
		prev = t
	}
	return b
}
