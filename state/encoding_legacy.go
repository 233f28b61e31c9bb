package state

import (
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tailorcdp/tailor/money"
)

// Forms of stored profiles that this version reads but no longer writes
// (decision 0003): aggregate states as messages (fieldAggregate) and
// amounts as float64 (decision 0016).

// decodeAggregate decodes an aggregate state as written before states
// were packed (fieldAggregate) and packs it after p's states. Its function
// is that of the declared aggregate of aggs with its id, else the one its
// buckets' fields show; a state of an aggregate declared no more that
// kept every field in its buckets (as written on the first day of
// aggregates) shows none and is dropped.
func (p *Profile) decodeAggregate(msg []byte, aggs *Aggregates) error {
	var (
		id          uint64
		name        []byte // written before ids
		fingerprint uint64
		fields      uint16 // bit n: a bucket has field n
	)
	buckets := 0
	err := eachField(msg, func(num protowire.Number, _ protowire.Type, v uint64, raw []byte) error {
		switch num {
		case 1:
			name = raw
		case 2:
			fingerprint = v
		case 3:
			buckets++
			return eachField(raw, func(num protowire.Number, _ protowire.Type, _ uint64, _ []byte) error {
				if num < 16 {
					fields |= 1 << num
				}
				return nil
			})
		case 4:
			id = v
		}
		return nil
	})
	if err != nil {
		return err
	}
	if id == 0 && len(name) > 0 {
		id = aggregateID(string(name), fingerprint)
	}
	if id == 0 {
		return nil // nothing to match it with
	}
	var fn AggregateFunc
	if agg := aggs.byID(id); agg != nil {
		fn = agg.Spec.Func
	} else if fn = funcOfFields(fields); fn == 0 {
		return nil
	}
	w, err := decodeBuckets(msg, fn, buckets)
	if err != nil {
		return err
	}
	from := len(p.aggs.data)
	p.aggs.data = appendPacked(p.aggs.data, id, fn, &w)
	return checkPacked(p.aggs.data[from:]) // buckets out of order
}

// funcOfFields returns the aggregate function whose buckets have the
// fields in the set (bit n for field n), or 0 when they fit several.
func funcOfFields(fields uint16) AggregateFunc {
	byField := []struct {
		field uint16
		fn    AggregateFunc
	}{{bucketSum, Sum}, {bucketMin, Min}, {bucketMax, Max}, {bucketFirst, FirstSeen}, {bucketLast, LastSeen}, {bucketHashes, Distinct}}
	fn := Count
	for _, f := range byField {
		if fields&(1<<f.field) == 0 {
			continue
		}
		if fn != Count {
			return 0
		}
		fn = f.fn
	}
	return fn
}

// decodeBuckets decodes the buckets of a stored aggregate message for
// function fn, taking what fn keeps (a state written before buckets kept
// only that has every field). With fn 0 it checks them only.
func decodeBuckets(msg []byte, fn AggregateFunc, buckets int) (Windowed, error) {
	var w Windowed
	if fn != 0 && buckets > 0 {
		w.buckets = make([]bucket, 0, buckets)
		if fn == Distinct {
			w.hashes = make([][]uint64, 0, buckets)
		}
	}
	err := eachField(msg, func(num protowire.Number, _ protowire.Type, _ uint64, raw []byte) error {
		if num != 3 {
			return nil
		}
		bk := emptyBucket(0, fn)
		var hashes []uint64
		err := eachField(raw, func(num protowire.Number, _ protowire.Type, v uint64, raw []byte) error {
			switch {
			case num == bucketStart:
				bk.start = protowire.DecodeZigZag(v)
			case num == bucketCount:
				bk.n = v
			case num == bucketSum && fn == Sum:
				bk.sum = money.FromFloat(math.Float64frombits(v))
			case num == bucketMin && fn == Min, num == bucketMax && fn == Max:
				bk.v = math.Float64frombits(v)
			case num == bucketFirst && fn == FirstSeen, num == bucketLast && fn == LastSeen:
				bk.v = float64(protowire.DecodeZigZag(v))
			case num == bucketHashes:
				if len(raw)%8 != 0 || len(raw)/8 > DistinctExact {
					return fmt.Errorf("%w: bucket hashes are %d bytes", errCorrupt, len(raw))
				}
				if fn == Distinct {
					hashes = make([]uint64, len(raw)/8)
					for i := range hashes {
						hashes[i], _ = protowire.ConsumeFixed64(raw[8*i:])
					}
				}
			}
			return nil
		})
		if err != nil || fn == 0 {
			return err
		}
		w.buckets = append(w.buckets, bk)
		if fn == Distinct {
			w.hashes = append(w.hashes, hashes)
		}
		return nil
	})
	return w, err
}

// legacyAmount is an amount stored exactly, or as a float64 before
// amounts were exact; the exact one wins whatever the order of fields.
type legacyAmount struct {
	amount  money.Amount
	isExact bool
}

func (a *legacyAmount) float(bits uint64) {
	if !a.isExact {
		a.amount = money.FromFloat(math.Float64frombits(bits))
	}
}

func (a *legacyAmount) exact(zigzag uint64) {
	a.amount, a.isExact = money.Millionths(protowire.DecodeZigZag(zigzag)), true
}
