package state

import (
	"errors"
	"fmt"
	"iter"
	"math"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tailorcdp/tailor/money"
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
	fieldTrait          = 4  // message {1: name, 2: JSON value, 3: updated ms}, repeated
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
// messages in scratch, and returns both.
func (p *Profile) appendEncode(dst, scratch []byte) (b, _ []byte) {
	start := len(dst)
	b = append(dst, formatV1)
	b = appendString(b, fieldKey, p.Key)
	b = appendString(b, fieldUserID, p.UserID)
	for _, id := range p.AnonymousIDs {
		b = protowire.AppendTag(b, fieldAnonymousID, protowire.BytesType)
		b = protowire.AppendString(b, id)
	}
	msg := scratch[:0]
	for name, t := range p.Traits {
		msg = msg[:0]
		msg = protowire.AppendTag(msg, 1, protowire.BytesType)
		msg = protowire.AppendString(msg, name)
		msg = protowire.AppendTag(msg, 2, protowire.BytesType)
		msg = protowire.AppendBytes(msg, t.Value)
		msg = appendVarint(msg, 3, uint64(t.UpdatedAt))
		b = protowire.AppendTag(b, fieldTrait, protowire.BytesType)
		b = protowire.AppendBytes(b, msg)
	}
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
	b = appendVarint(b, fieldOrders, p.Orders)
	b = appendVarint(b, fieldRevenueExact, protowire.EncodeZigZag(p.Revenue.Millionths()))
	b = appendVarint(b, fieldLastOrderAt, uint64(p.LastOrderAt))
	b = appendVarint(b, fieldRefunds, p.Refunds)
	b = appendVarint(b, fieldRefundedExact, protowire.EncodeZigZag(p.RefundedAmount.Millionths()))
	b = appendVarint(b, fieldWakeAt, uint64(p.WakeAt))
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
	if p.recent.len() > 0 {
		b = protowire.AppendTag(b, fieldRecentHashes, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(8*p.recent.len()))
		for m := range p.recent.all() {
			b = protowire.AppendFixed64(b, m.hash)
		}
		msg = appendTimeDeltas(msg[:0], p.recent.all(), func(m seenMessage) int64 { return m.receivedAt })
		b = protowire.AppendTag(b, fieldRecentTimes, protowire.BytesType)
		b = protowire.AppendBytes(b, msg)
	}
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
	for id, h := range p.offers {
		b = protowire.AppendTag(b, fieldOffer, protowire.BytesType)
		msg = h.appendEncode(msg[:0], id)
		b = protowire.AppendBytes(b, msg)
	}
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
	p.encodedSize = len(b) - start
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

// DecodeProfile decodes a stored profile of any format this version knows.
func DecodeProfile(data []byte) (*Profile, error) { return decodeProfile(data, nil) }

// decodeProfile decodes a stored profile, its aggregate states for aggs
// (nil: none declared).
func decodeProfile(data []byte, aggs *Aggregates) (*Profile, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty", errCorrupt)
	}
	if data[0] != formatV1 {
		return nil, fmt.Errorf("%w: unknown format %d (written by a newer tailor?)", errCorrupt, data[0])
	}
	p := &Profile{encodedSize: len(data)}
	var hashes, times, orderTimes, orderAmounts, orderExact []byte
	var revenue, refunded legacyAmount
	err := eachField(data[1:], func(num protowire.Number, typ protowire.Type, v uint64, raw []byte) error {
		switch {
		case num == fieldKey && typ == protowire.BytesType:
			p.Key = string(raw)
		case num == fieldUserID && typ == protowire.BytesType:
			p.UserID = string(raw)
		case num == fieldAnonymousID && typ == protowire.BytesType:
			p.AnonymousIDs = append(p.AnonymousIDs, string(raw))
		case num == fieldTrait && typ == protowire.BytesType:
			var name string
			var t Trait
			err := eachField(raw, func(num protowire.Number, typ protowire.Type, v uint64, raw []byte) error {
				switch num {
				case 1:
					name = string(raw)
				case 2:
					t.Value = append([]byte(nil), raw...)
				case 3:
					t.UpdatedAt = int64(v)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if p.Traits == nil {
				p.Traits = make(map[string]Trait)
			}
			p.Traits[name] = t
		case num == fieldFirstSeen && typ == protowire.VarintType:
			p.FirstSeen = int64(v)
		case num == fieldLastSeen && typ == protowire.VarintType:
			p.LastSeen = int64(v)
		case num == fieldTypeCount && typ == protowire.BytesType:
			t, _, n, _, err := decodeCount(raw)
			if err != nil {
				return err
			}
			if t < uint64(len(p.TypeCounts)) {
				p.TypeCounts[t] = n
			}
		case num == fieldEventCount && typ == protowire.BytesType:
			_, name, n, last, err := decodeCount(raw)
			if err != nil {
				return err
			}
			if p.EventCounts == nil {
				p.EventCounts = make(map[string]uint64)
				p.EventLast = make(map[string]int64)
			}
			p.EventCounts[string(name)] = n
			if last != 0 {
				p.EventLast[string(name)] = last
			}
		case num == fieldOrders && typ == protowire.VarintType:
			p.Orders = v
		case num == fieldRevenue && typ == protowire.Fixed64Type:
			revenue.float(v)
		case num == fieldRevenueExact && typ == protowire.VarintType:
			revenue.exact(v)
		case num == fieldRefundedExact && typ == protowire.VarintType:
			refunded.exact(v)
		case num == fieldOrderExact && typ == protowire.BytesType:
			orderExact = raw
		case num == fieldLastOrderAt && typ == protowire.VarintType:
			p.LastOrderAt = int64(v)
		case num == fieldRefunds && typ == protowire.VarintType:
			p.Refunds = v
		case num == fieldWakeAt && typ == protowire.VarintType:
			p.WakeAt = int64(v)
		case num == fieldRFMScores && typ == protowire.VarintType:
			p.rfmScores, p.rfmScored = decodeScores(v), true
		case num == fieldOrderTimes && typ == protowire.BytesType:
			orderTimes = raw
		case num == fieldOrderAmounts && typ == protowire.BytesType:
			if len(raw)%8 != 0 {
				return fmt.Errorf("%w: order amounts are %d bytes", errCorrupt, len(raw))
			}
			orderAmounts = raw
		case num == fieldMovedOrder && typ == protowire.BytesType:
			var o movedOrder
			err := eachField(raw, func(num protowire.Number, _ protowire.Type, v uint64, raw []byte) error {
				switch num {
				case 1:
					o.id = string(raw)
				case 2:
					if !o.known { // field 4 first wins
						o.amount, o.known = money.FromFloat(math.Float64frombits(v)), true
					}
				case 3:
					o.at = int64(v)
				case 4:
					o.amount, o.known = money.Millionths(protowire.DecodeZigZag(v)), true
				}
				return nil
			})
			p.movedOrders = append(p.movedOrders, o)
			return err
		case num == fieldRFMPoint && typ == protowire.BytesType:
			p.rfmRecorded = true
			return eachField(raw, func(num protowire.Number, _ protowire.Type, v uint64, _ []byte) error {
				switch num {
				case 1:
					p.rfm.ok = v == 1
				case 2:
					p.rfm.day = protowire.DecodeZigZag(v)
				case 3:
					p.rfm.orders = int64(v)
				case 4:
					p.rfm.money = protowire.DecodeZigZag(v)
				}
				return nil
			})
		case num == fieldRefundedAmount && typ == protowire.Fixed64Type:
			refunded.float(v)
		case num == fieldRecentHashes && typ == protowire.BytesType:
			if len(raw)%8 != 0 {
				return fmt.Errorf("%w: message hashes are %d bytes", errCorrupt, len(raw))
			}
			hashes = raw
		case num == fieldRecentTimes && typ == protowire.BytesType:
			times = raw
		case num == fieldSegment && typ == protowire.BytesType:
			_, name, at, _, err := decodeCount(raw)
			if err != nil {
				return err
			}
			if p.Segments == nil {
				p.Segments = make(map[string]int64)
			}
			p.Segments[string(name)] = int64(at)
		case num == fieldInterest && typ == protowire.BytesType:
			var name string
			var i interest
			err := eachField(raw, func(num protowire.Number, _ protowire.Type, v uint64, raw []byte) error {
				switch num {
				case 1:
					name = string(raw)
				case 2:
					i.score = math.Float64frombits(v)
				case 3:
					i.at = int64(v)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if p.interests == nil {
				p.interests = make(map[string]interest)
			}
			p.interests[name] = i
		case num == fieldConsent && typ == protowire.BytesType:
			_, purpose, granted, at, err := decodeCount(raw)
			if err != nil {
				return err
			}
			if p.consents == nil {
				p.consents = make(map[string]consent)
			}
			p.consents[string(purpose)] = consent{granted: granted == 1, at: at}
		case num == fieldOffer && typ == protowire.BytesType:
			id, h, err := decodeOffer(raw)
			if err != nil {
				return err
			}
			if p.offers == nil {
				p.offers = make(map[string]*offerHistory)
			}
			p.offers[id] = h
		case num == fieldViewed && typ == protowire.BytesType:
			p.viewed = append(p.viewed, string(raw))
		case num == fieldBought && typ == protowire.BytesType:
			p.bought = append(p.bought, string(raw))
		case (num == fieldAggregates || num == fieldAggregatesExact) && typ == protowire.BytesType:
			if err := checkPacked(raw); err != nil {
				return err
			}
			from := len(p.aggs.data)
			p.aggs.data = append(p.aggs.data, raw...)
			if num == fieldAggregates {
				exactSums(p.aggs.data[from:])
			}
		case num == fieldAggregate && typ == protowire.BytesType:
			if err := p.decodeAggregate(raw, aggs); err != nil {
				return err
			}
		}
		// Unknown fields are skipped: they come from a later version.
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(hashes) > 0 {
		recent := make([]seenMessage, len(hashes)/8)
		at := int64(0)
		for i := range recent {
			recent[i].hash, _ = protowire.ConsumeFixed64(hashes[8*i:])
			if at, err = nextTime(&times, at); err != nil {
				return nil, fmt.Errorf("%w: message times: %v", errCorrupt, err)
			}
			recent[i].receivedAt = at
		}
		p.recent = newMessageLog(recent)
	}
	p.Revenue, p.RefundedAmount = revenue.amount, refunded.amount
	if err := p.decodeOrderLog(orderTimes, orderAmounts, orderExact); err != nil {
		return nil, err
	}
	if !p.rfmRecorded {
		p.rfm = p.rfmPointAt(0, 0) // what a version before the order log counted
	}
	p.aggs.index(aggs)
	return p, nil
}

// decodeOrderLog decodes the order log from its times and its amounts,
// exact, or as float64 bits when written before amounts were exact.
func (p *Profile) decodeOrderLog(times, floats, exact []byte) error {
	n := len(floats) / 8
	if exact != nil {
		n = 0
		for _, c := range exact {
			if c < 0x80 {
				n++ // a varint's last byte
			}
		}
	}
	if n == 0 {
		return nil
	}
	p.orderLog = make([]orderRecord, n)
	at := int64(0)
	for i := range p.orderLog {
		var err error
		if at, err = nextTime(&times, at); err != nil {
			return fmt.Errorf("%w: order times: %v", errCorrupt, err)
		}
		var amount money.Amount
		if exact != nil {
			v, k := protowire.ConsumeVarint(exact)
			if k < 0 {
				return fmt.Errorf("%w: order amounts: %v", errCorrupt, protowire.ParseError(k))
			}
			exact, amount = exact[k:], money.Millionths(protowire.DecodeZigZag(v))
		} else {
			bits, _ := protowire.ConsumeFixed64(floats[8*i:])
			amount = money.FromFloat(math.Float64frombits(bits))
		}
		p.orderLog[i] = orderRecord{at: at, amount: amount}
	}
	return nil
}

// decodeCount decodes a {1: key, 2: count, 3: last} message, whose key is
// a varint (type counts) or bytes (event counts, segments, consents).
func decodeCount(raw []byte) (key uint64, name []byte, count uint64, last int64, err error) {
	err = eachField(raw, func(num protowire.Number, _ protowire.Type, v uint64, b []byte) error {
		switch num {
		case 1:
			key, name = v, b
		case 2:
			count = v
		case 3:
			last = int64(v)
		}
		return nil
	})
	return key, name, count, last, err
}

// eachField calls fn for each field of a wire-format message: v holds
// varint and fixed values, raw the bytes of length-delimited ones.
func eachField(b []byte, fn func(num protowire.Number, typ protowire.Type, v uint64, raw []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: %v", errCorrupt, protowire.ParseError(n))
		}
		b = b[n:]
		var v uint64
		var raw []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.Fixed64Type:
			v, n = protowire.ConsumeFixed64(b)
		case protowire.Fixed32Type:
			var v32 uint32
			v32, n = protowire.ConsumeFixed32(b)
			v = uint64(v32)
		case protowire.BytesType:
			raw, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("%w: field %d: %v", errCorrupt, num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(num, typ, v, raw); err != nil {
			return err
		}
	}
	return nil
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

func decodeOffer(raw []byte) (string, *offerHistory, error) {
	var id string
	h := &offerHistory{}
	var hashes, times, flags []byte
	err := eachField(raw, func(num protowire.Number, _ protowire.Type, v uint64, raw []byte) error {
		switch num {
		case 1:
			id = string(raw)
		case 2:
			h.clickedAt = int64(v)
		case 3:
			h.convertedAt = int64(v)
		case 4:
			h.touched = int64(v)
		case 5:
			hashes = raw
		case 6:
			times = raw
		case 7:
			flags = raw
		}
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	n := len(flags)
	if len(hashes) != 8*n {
		return "", nil, fmt.Errorf("%w: offer %q has %d decision hash bytes for %d decisions", errCorrupt, id, len(hashes), n)
	}
	h.decisions = make([]decisionMark, n)
	at := int64(0)
	for i := range h.decisions {
		h.decisions[i].hash, _ = protowire.ConsumeFixed64(hashes[8*i:])
		if at, err = nextTime(&times, at); err != nil {
			return "", nil, fmt.Errorf("%w: offer %q decision times: %v", errCorrupt, id, err)
		}
		h.decisions[i].at = at
		h.decisions[i].seen = Feedback(flags[i])
	}
	return id, h, nil
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

// nextTime reads the next time written by appendTimeDeltas, after prev.
func nextTime(deltas *[]byte, prev int64) (int64, error) {
	d, n := protowire.ConsumeVarint(*deltas)
	if n < 0 {
		return 0, protowire.ParseError(n)
	}
	*deltas = (*deltas)[n:]
	return prev + protowire.DecodeZigZag(d), nil
}
