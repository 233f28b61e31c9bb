package event

import (
	"fmt"
	"strconv"
	"time"

	"github.com/tailorcdp/tailor/internal/jsonenc"
)

// Batch is a validated /v1/batch body: every event of it gets a verdict
// of its own, so that one bad event does not cost a client the others.
type Batch struct {
	// Events are the valid events, in the batch's order; Index[i] is the
	// position of Events[i] in the batch.
	Events []Event
	Index  []int
	// Refused are the invalid events, in the batch's order.
	Refused []Refusal
	// WriteKey is the body's top-level writeKey member (analytics.js
	// sends its write key there), "" without one.
	WriteKey string
}

// Refusal says why the event at Index of a batch was refused.
type Refusal struct {
	Index int
	Err   *Error
}

// ParseBatch validates a /v1/batch body ({"batch": [events...]}). An error
// is about the body as a whole (not JSON, not an object with a non-empty
// "batch" array, over MaxBatchBytes); otherwise each event is accepted or
// refused on its own, with field paths like "batch[3].userId".
func (p *Parser) ParseBatch(data []byte, receivedAt time.Time) (Batch, error) {
	if p.Limits.MaxBatchBytes > 0 && len(data) > p.Limits.MaxBatchBytes {
		return Batch{}, &Error{Problem: fmt.Sprintf("batch is %d bytes, the limit is %d", len(data), p.Limits.MaxBatchBytes), Err: ErrTooLarge}
	}
	root, err := p.parseJSON(data)
	if err != nil {
		return Batch{}, err
	}
	batch := root.Get("batch")
	if batch == nil {
		return Batch{}, &Error{Field: "batch", Problem: "is required"}
	}
	items, err := batch.Array()
	if err != nil {
		return Batch{}, &Error{Field: "batch", Problem: "must be an array"}
	}
	if len(items) == 0 {
		return Batch{}, &Error{Field: "batch", Problem: "must not be empty"}
	}
	b := Batch{Events: make([]Event, 0, len(items)), Index: make([]int, 0, len(items)), WriteKey: string(root.GetStringBytes("writeKey"))}
	for i, item := range items {
		ev, err := p.validate(item, 0, receivedAt, "batch["+strconv.Itoa(i)+"]")
		if err != nil {
			b.Refused = append(b.Refused, Refusal{Index: i, Err: asError(err)})
			continue
		}
		b.Events = append(b.Events, ev)
		b.Index = append(b.Index, i)
	}
	return b, nil
}

// asError returns err as an *Error (validate's errors all are).
func asError(err error) *Error {
	if fe, ok := err.(*Error); ok {
		return fe
	}
	return &Error{Problem: err.Error()}
}

// AppendJSON appends the event as JSON: the text the consumer reads back
// as the same event (RFC 8259 escapes, numbers as they were written or
// converted from numeric strings, members in their order).
func (e *Event) AppendJSON(dst []byte) []byte { return jsonenc.AppendValue(dst, e.Root) }

// AppendRecord appends the event as the record value the consumer
// receives, which is what MaxEventBytes bounds: an event that grew over
// the limit once stamped (receivedAt, messageId, type) is refused with an
// error wrapping ErrTooLarge, as the consumer would refuse it. field names
// the event in the error ("batch[3]", or "" for a single event).
func (p *Parser) AppendRecord(dst []byte, e *Event, field string) ([]byte, error) {
	start := len(dst)
	dst = e.AppendJSON(dst)
	if l := p.Limits.MaxEventBytes; l > 0 && len(dst)-start > l {
		return dst[:start], &Error{Field: field, Problem: fmt.Sprintf("event is %d bytes once stamped with receivedAt and messageId, the limit is %d", len(dst)-start, l), Err: ErrTooLarge}
	}
	return dst, nil
}
