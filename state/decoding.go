package state

import (
	"fmt"
	"math"

	"github.com/tailorcdp/tailor/money"
	"google.golang.org/protobuf/encoding/protowire"
)

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
	d := profileDecoder{p: &Profile{encodedSize: len(data)}, aggs: aggs}
	if err := eachField(data[1:], d.field); err != nil {
		return nil, err
	}
	return d.finish()
}

// profileDecoder is decodeProfile's state: the profile so far, and the
// fields that are decoded together once all are read.
type profileDecoder struct {
	p    *Profile
	aggs *Aggregates
	// hashes and times are the dedup log's; orderTimes, orderAmounts and
	// orderExact the order log's.
	hashes, times                        []byte
	orderTimes, orderAmounts, orderExact []byte
	revenue, refunded                    legacyAmount
}

// field decodes one field of a profile, by the group it belongs to.
// Unknown fields, and known ones of another wire type, are skipped: they
// come from a later version.
func (d *profileDecoder) field(num protowire.Number, typ protowire.Type, v uint64, raw []byte) error {
	switch num {
	case fieldKey, fieldUserID, fieldAnonymousID, fieldTrait:
		return d.identity(num, typ, raw)
	case fieldFirstSeen, fieldLastSeen, fieldTypeCount, fieldEventCount, fieldWakeAt:
		return d.activity(num, typ, v, raw)
	case fieldOrders, fieldRevenue, fieldRevenueExact, fieldLastOrderAt, fieldRefunds,
		fieldRefundedAmount, fieldRefundedExact, fieldOrderTimes, fieldOrderAmounts, fieldOrderExact,
		fieldMovedOrder:
		return d.orders(num, typ, v, raw)
	case fieldRFMScores, fieldRFMPoint:
		return d.rfm(num, typ, v, raw)
	case fieldRecentHashes, fieldRecentTimes:
		return d.recent(num, typ, raw)
	case fieldSegment, fieldInterest, fieldConsent, fieldConsentChange, fieldOffer:
		return d.preferences(num, typ, raw)
	case fieldViewed, fieldBought:
		if typ == protowire.BytesType {
			if num == fieldViewed {
				d.p.viewed = append(d.p.viewed, string(raw))
			} else {
				d.p.bought = append(d.p.bought, string(raw))
			}
		}
	case fieldAggregates, fieldAggregatesExact, fieldAggregate:
		return d.aggregates(num, typ, raw)
	}
	return nil
}

// identity decodes the key, the ids and the traits.
func (d *profileDecoder) identity(num protowire.Number, typ protowire.Type, raw []byte) error {
	if typ != protowire.BytesType {
		return nil
	}
	p := d.p
	switch num {
	case fieldKey:
		p.Key = string(raw)
	case fieldUserID:
		p.UserID = string(raw)
	case fieldAnonymousID:
		p.AnonymousIDs = append(p.AnonymousIDs, string(raw))
	case fieldTrait:
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
			case 4:
				if typ == protowire.BytesType {
					t.Source = string(raw)
				}
			case 5:
				if typ == protowire.BytesType {
					t.Unnormalised = string(raw)
				}
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
	}
	return nil
}

// activity decodes when the profile was seen, its counts of calls and
// events, and its next wake-up.
func (d *profileDecoder) activity(num protowire.Number, typ protowire.Type, v uint64, raw []byte) error {
	p := d.p
	switch {
	case num == fieldFirstSeen && typ == protowire.VarintType:
		p.FirstSeen = int64(v)
	case num == fieldLastSeen && typ == protowire.VarintType:
		p.LastSeen = int64(v)
	case num == fieldWakeAt && typ == protowire.VarintType:
		p.WakeAt = int64(v)
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
	}
	return nil
}

// orders decodes the order and refund totals, the order log's parts (put
// together by finish) and the order ids moved with the profile.
func (d *profileDecoder) orders(num protowire.Number, typ protowire.Type, v uint64, raw []byte) error {
	p := d.p
	switch {
	case num == fieldOrders && typ == protowire.VarintType:
		p.Orders = v
	case num == fieldRevenue && typ == protowire.Fixed64Type:
		d.revenue.float(v)
	case num == fieldRevenueExact && typ == protowire.VarintType:
		d.revenue.exact(v)
	case num == fieldRefundedAmount && typ == protowire.Fixed64Type:
		d.refunded.float(v)
	case num == fieldRefundedExact && typ == protowire.VarintType:
		d.refunded.exact(v)
	case num == fieldLastOrderAt && typ == protowire.VarintType:
		p.LastOrderAt = int64(v)
	case num == fieldRefunds && typ == protowire.VarintType:
		p.Refunds = v
	case num == fieldOrderTimes && typ == protowire.BytesType:
		d.orderTimes = raw
	case num == fieldOrderExact && typ == protowire.BytesType:
		d.orderExact = raw
	case num == fieldOrderAmounts && typ == protowire.BytesType:
		if len(raw)%8 != 0 {
			return fmt.Errorf("%w: order amounts are %d bytes", errCorrupt, len(raw))
		}
		d.orderAmounts = raw
	case num == fieldMovedOrder && typ == protowire.BytesType:
		o, err := decodeMovedOrder(raw)
		p.movedOrders = append(p.movedOrders, o)
		return err
	}
	return nil
}

// decodeMovedOrder decodes a fieldMovedOrder message.
func decodeMovedOrder(raw []byte) (movedOrder, error) {
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
	return o, err
}

// rfm decodes the RFM scores last evaluated and where the RFM histograms
// count the profile.
func (d *profileDecoder) rfm(num protowire.Number, typ protowire.Type, v uint64, raw []byte) error {
	p := d.p
	switch {
	case num == fieldRFMScores && typ == protowire.VarintType:
		p.rfmScores, p.rfmScored = decodeScores(v), true
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
	}
	return nil
}

// recent takes the dedup log's hashes and times, put together by finish.
func (d *profileDecoder) recent(num protowire.Number, typ protowire.Type, raw []byte) error {
	if typ != protowire.BytesType {
		return nil
	}
	if num == fieldRecentTimes {
		d.times = raw
		return nil
	}
	if len(raw)%8 != 0 {
		return fmt.Errorf("%w: message hashes are %d bytes", errCorrupt, len(raw))
	}
	d.hashes = raw
	return nil
}

// preferences decodes the segments, interests, consents, consent
// history and offer histories.
func (d *profileDecoder) preferences(num protowire.Number, typ protowire.Type, raw []byte) error {
	if typ != protowire.BytesType {
		return nil
	}
	p := d.p
	switch num {
	case fieldSegment:
		_, name, at, _, err := decodeCount(raw)
		if err != nil {
			return err
		}
		if p.Segments == nil {
			p.Segments = make(map[string]int64)
		}
		p.Segments[string(name)] = int64(at)
	case fieldInterest:
		return p.decodeInterest(raw)
	case fieldConsent:
		_, purpose, granted, at, err := decodeCount(raw)
		if err != nil {
			return err
		}
		if p.consents == nil {
			p.consents = make(map[string]consent)
		}
		p.consents[string(purpose)] = consent{granted: granted == 1, at: at}
	case fieldConsentChange:
		c, err := decodeConsentChange(raw)
		p.consentLog = append(p.consentLog, c)
		return err
	case fieldOffer:
		id, h, err := decodeOffer(raw)
		if err != nil {
			return err
		}
		if p.offers == nil {
			p.offers = make(map[string]*offerHistory)
		}
		p.offers[id] = h
	}
	return nil
}

// decodeConsentChange decodes a fieldConsentChange message.
func decodeConsentChange(raw []byte) (consentChange, error) {
	var c consentChange
	err := eachField(raw, func(num protowire.Number, typ protowire.Type, v uint64, raw []byte) error {
		switch {
		case num == 1 && typ == protowire.BytesType:
			c.purpose = string(raw)
		case num == 2 && typ == protowire.VarintType:
			c.granted = v == 1
		case num == 3 && typ == protowire.VarintType:
			c.at = int64(v)
		case num == 4 && typ == protowire.BytesType:
			c.source = string(raw)
		}
		return nil
	})
	return c, err
}

// decodeInterest decodes a fieldInterest message into the profile.
func (p *Profile) decodeInterest(raw []byte) error {
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
	return nil
}

// aggregates decodes the aggregate states: packed, with exact or (before
// decision 0016) float sums, or as the messages written before they were
// packed.
func (d *profileDecoder) aggregates(num protowire.Number, typ protowire.Type, raw []byte) error {
	if typ != protowire.BytesType {
		return nil
	}
	p := d.p
	if num == fieldAggregate {
		return p.decodeAggregate(raw, d.aggs)
	}
	if err := checkPacked(raw); err != nil {
		return err
	}
	from := len(p.aggs.data)
	p.aggs.data = append(p.aggs.data, raw...)
	if num == fieldAggregates {
		exactSums(p.aggs.data[from:])
	}
	return nil
}

// finish puts together what is decoded from several fields: the dedup
// log, the amounts, the order log, the RFM point of a profile written
// before it was kept, and the index of the aggregate states.
func (d *profileDecoder) finish() (*Profile, error) {
	p := d.p
	if len(d.hashes) > 0 {
		recent := make([]seenMessage, len(d.hashes)/8)
		at := int64(0)
		var err error
		for i := range recent {
			recent[i].hash, _ = protowire.ConsumeFixed64(d.hashes[8*i:])
			if at, err = nextTime(&d.times, at); err != nil {
				return nil, fmt.Errorf("%w: message times: %v", errCorrupt, err)
			}
			recent[i].receivedAt = at
		}
		p.recent = newMessageLog(recent)
	}
	p.Revenue, p.RefundedAmount = d.revenue.amount, d.refunded.amount
	if err := p.decodeOrderLog(d.orderTimes, d.orderAmounts, d.orderExact); err != nil {
		return nil, err
	}
	if !p.rfmRecorded {
		p.rfm = p.rfmPointAt(0, 0) // what a version before the order log counted
	}
	p.aggs.index(d.aggs)
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

// nextTime reads the next time written by appendTimeDeltas, after prev.
func nextTime(deltas *[]byte, prev int64) (int64, error) {
	d, n := protowire.ConsumeVarint(*deltas)
	if n < 0 {
		return 0, protowire.ParseError(n)
	}
	*deltas = (*deltas)[n:]
	return prev + protowire.DecodeZigZag(d), nil
}
