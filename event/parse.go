package event

import (
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// Error says which field of an event is wrong and how. Field is a path such
// as "userId", "properties.revenue" or "batch[3].timestamp".
type Error struct {
	Field   string
	Problem string
	// Err is a sentinel the problem is an instance of (ErrTooLarge), or nil.
	Err error
}

// Unwrap returns the sentinel, for errors.Is.
func (e *Error) Unwrap() error { return e.Err }

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Problem
	}
	return e.Field + ": " + e.Problem
}

// Limits bound what an event may carry. The zero value means no limit for
// each field; DefaultLimits gives the engine's defaults.
type Limits struct {
	// MaxEventBytes is the largest serialised event (Segment: 32 KB).
	MaxEventBytes int
	// MaxBatchBytes is the largest batch request body (Segment: 500 KB).
	MaxBatchBytes int
	// MaxIDLength bounds userId, anonymousId, messageId and event names.
	MaxIDLength int
	// MaxFuture rejects event times further than this past the receive time
	// (clock skew or a unit bug in the sender).
	MaxFuture time.Duration
	// Oldest rejects event times before it (seconds sent as milliseconds and
	// the like); historical replays after it are fine.
	Oldest time.Time
}

// DefaultLimits returns Segment's size limits and tailor's time bounds.
func DefaultLimits() Limits {
	return Limits{
		MaxEventBytes: 32 << 10,
		MaxBatchBytes: 500 << 10,
		MaxIDLength:   256,
		MaxFuture:     24 * time.Hour,
		Oldest:        time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

// ErrTooLarge is wrapped by errors about events or batches over the limits.
var ErrTooLarge = errors.New("too large")

// Parser validates raw Segment events. It reuses its memory between calls,
// so the values of a returned Event are valid until the next call. A Parser
// is not safe for concurrent use; give each goroutine its own.
type Parser struct {
	Limits Limits
	// Stamp makes the receive time passed to Parse override the event's own
	// receivedAt, as the collect API does; the consumer trusts the event's.
	Stamp bool
	json  fastjson.Parser
	// arena holds the numbers that numeric strings are replaced with;
	// reset by each Parse and ParseBatch, like json.
	arena fastjson.Arena
	// overflow says the text last parsed has a number beyond float64's
	// range somewhere: validate then looks for it, to name its field.
	overflow bool
}

// NewParser returns a Parser with the given limits.
func NewParser(l Limits) *Parser { return &Parser{Limits: l} }

// Parse validates data as one event. want is the call type implied by the
// endpoint (0 when the event's own "type" field decides); receivedAt is used
// when the event carries no receivedAt of its own.
func (p *Parser) Parse(data []byte, want Type, receivedAt time.Time) (Event, error) {
	if p.Limits.MaxEventBytes > 0 && len(data) > p.Limits.MaxEventBytes {
		return Event{}, &Error{Problem: fmt.Sprintf("event is %d bytes, the limit is %d", len(data), p.Limits.MaxEventBytes), Err: ErrTooLarge}
	}
	root, err := p.parseJSON(data)
	if err != nil {
		return Event{}, err
	}
	return p.validate(root, want, receivedAt, "")
}

// parseJSON checks that data is strict, valid UTF-8 JSON with an object at
// the top and returns it parsed.
func (p *Parser) parseJSON(data []byte) (*fastjson.Value, error) {
	p.arena.Reset()
	// fastjson's parser is lenient (numbers like "1.2.3" or "nan", raw
	// control characters and bad escapes in strings): the text is checked
	// first, strictly and in one pass with its UTF-8.
	var err error
	if p.overflow, err = checkJSON(data); err != nil {
		if !utf8.Valid(data) {
			return nil, &Error{Problem: "body is not valid UTF-8"}
		}
		return nil, &Error{Problem: "malformed JSON: " + err.Error()}
	}
	root, err := p.json.ParseBytes(data)
	if err != nil { // too deep
		return nil, &Error{Problem: "malformed JSON: " + err.Error()}
	}
	if root.Type() != fastjson.TypeObject {
		return nil, &Error{Problem: "body must be a JSON object, not " + root.Type().String()}
	}
	return root, nil
}

// members are the top-level members of an event that Validate reads.
type members struct {
	typ, messageID, userID, anonymousID, event, name, groupID, previousID *fastjson.Value
	properties, context, traits                                           *fastjson.Value
	stamps                                                                [3]*fastjson.Value // timestamp, sentAt, receivedAt
	// originalTimestamp is the client's clock at the call, which
	// RudderStack's JavaScript SDK sends instead of timestamp.
	originalTimestamp *fastjson.Value
}

// membersOf finds the members of event object o in one pass: looking each
// up by name would scan the object a dozen times, and twice for each
// absent member. A repeated key gives its first value, as Get does.
func membersOf(o *fastjson.Object) members {
	var m members
	o.Visit(func(key []byte, v *fastjson.Value) {
		var dst **fastjson.Value
		switch string(key) {
		case "type":
			dst = &m.typ
		case "messageId":
			dst = &m.messageID
		case "userId":
			dst = &m.userID
		case "anonymousId":
			dst = &m.anonymousID
		case "event":
			dst = &m.event
		case "name":
			dst = &m.name
		case "groupId":
			dst = &m.groupID
		case "previousId":
			dst = &m.previousID
		case "properties":
			dst = &m.properties
		case "context":
			dst = &m.context
		case "traits":
			dst = &m.traits
		case "timestamp":
			dst = &m.stamps[0]
		case "sentAt":
			dst = &m.stamps[1]
		case "receivedAt":
			dst = &m.stamps[2]
		case "originalTimestamp":
			dst = &m.originalTimestamp
		default:
			return
		}
		if *dst == nil {
			*dst = v
		}
	})
	return m
}

// validate checks one event object of the text parseJSON parsed last.
// field prefixes the field paths in errors ("batch[2]" gives
// "batch[2].userId").
func (p *Parser) validate(v *fastjson.Value, want Type, receivedAt time.Time, field string) (Event, error) {
	path := fieldPath(field)
	obj, err := v.Object()
	if err != nil {
		return Event{}, &Error{Field: field, Problem: "event must be a JSON object, not " + v.Type().String()}
	}
	if p.overflow {
		if err := overflowIn(v, field); err != nil {
			return Event{}, err
		}
	}
	m := membersOf(obj)
	ev := Event{Root: v, Type: want}
	if ev.Type, err = eventType(m.typ, want, path); err != nil {
		return Event{}, err
	}
	if err := p.identifiers(&ev, &m, path); err != nil {
		return Event{}, err
	}
	if err := objects(&ev, &m, path); err != nil {
		return Event{}, err
	}
	if ev.Type == Track && (ev.Name == OrderCompleted || ev.Name == OrderRefunded) {
		if err := p.validateOrder(ev.Properties, path.at("properties")); err != nil {
			return Event{}, err
		}
	}
	if err := validateDecision(&ev, path.at("properties")); err != nil {
		return Event{}, err
	}
	if err := p.resolveTimes(&ev, &m.stamps, receivedAt, path); err != nil {
		return Event{}, err
	}
	p.originalTime(&ev, m.originalTimestamp, m.stamps[0] != nil && m.stamps[0].Type() != fastjson.TypeNull)
	return ev, nil
}

// fieldPath is where an event is in the text ("batch[2]"; empty for a
// single event), prefixing the fields named in errors.
type fieldPath string

// at is the path of the event's field name.
func (f fieldPath) at(name string) string {
	if f == "" {
		return name
	}
	return string(f) + "." + name
}

// eventType is the event's type: its type member, which must agree with
// the endpoint's type when there is one (want), else want.
func eventType(tv *fastjson.Value, want Type, path fieldPath) (Type, error) {
	t := want
	if tv != nil {
		s, err := tv.StringBytes()
		if err != nil {
			return 0, &Error{Field: path.at("type"), Problem: "must be a string"}
		}
		parsed, known := ParseType(string(s)) // inlined: no copy of s
		switch {
		case !known:
			return 0, &Error{Field: path.at("type"), Problem: fmt.Sprintf("unknown event type %q: want identify, track, page, screen, group or alias", s)}
		case want != 0 && parsed != want:
			return 0, &Error{Field: path.at("type"), Problem: fmt.Sprintf("is %q but this endpoint takes %q", s, want)}
		}
		t = parsed
	}
	if t == 0 {
		return 0, &Error{Field: path.at("type"), Problem: "is required"}
	}
	return t, nil
}

// identifiers reads the event's ids and name, those its type requires
// included, and checks that it names a profile.
func (p *Parser) identifiers(ev *Event, m *members, path fieldPath) error {
	var err error
	str := func(sv *fastjson.Value, name string, dst *string) {
		if err != nil {
			return
		}
		*dst, err = p.optionalString(sv, path.at(name))
	}
	str(m.messageID, "messageId", &ev.MessageID)
	str(m.userID, "userId", &ev.UserID)
	str(m.anonymousID, "anonymousId", &ev.AnonymousID)
	if err != nil {
		return err
	}
	switch ev.Type {
	case Track:
		str(m.event, "event", &ev.Name)
		if err == nil && ev.Name == "" {
			err = &Error{Field: path.at("event"), Problem: "is required for a track call"}
		}
	case Page, Screen:
		str(m.name, "name", &ev.Name)
	case Group:
		str(m.groupID, "groupId", &ev.GroupID)
		if err == nil && ev.GroupID == "" {
			err = &Error{Field: path.at("groupId"), Problem: "is required for a group call"}
		}
	case Alias:
		str(m.previousID, "previousId", &ev.PreviousID)
		if err == nil && ev.PreviousID == "" {
			err = &Error{Field: path.at("previousId"), Problem: "is required for an alias call"}
		}
		if err == nil && ev.UserID == "" {
			err = &Error{Field: path.at("userId"), Problem: "is required for an alias call"}
		}
	}
	if err != nil {
		return err
	}
	if ev.UserID == "" && ev.AnonymousID == "" {
		return &Error{Field: path.at("userId"), Problem: "userId or anonymousId is required"}
	}
	return nil
}

// objects reads the event's properties, context and traits, each an
// object when present; an identify call without traits takes them from
// context.traits.
func objects(ev *Event, m *members, path fieldPath) error {
	var err error
	if ev.Properties, err = optionalObject(m.properties, path.at("properties")); err != nil {
		return err
	}
	if ev.Context, err = optionalObject(m.context, path.at("context")); err != nil {
		return err
	}
	if ev.Type == Identify || ev.Type == Group {
		if ev.Traits, err = optionalObject(m.traits, path.at("traits")); err != nil {
			return err
		}
	}
	if ev.Type == Identify && ev.Traits == nil {
		ev.Traits = contextTraits(ev.Context)
	}
	return nil
}

// contextTraits returns an identify call's context.traits when it is an
// object, where RudderStack's SDKs put the traits of an identify call
// (they send no top-level traits). Anything else there is ignored, not
// refused: events accepted before context.traits was read stay valid.
func contextTraits(ctx *fastjson.Value) *fastjson.Value {
	if ctx == nil {
		return nil
	}
	if t := ctx.Get("traits"); t != nil && t.Type() == fastjson.TypeObject {
		return t
	}
	return nil
}

// originalTime makes an event without a timestamp take its
// originalTimestamp (the client's clock when the call was made, which
// RudderStack's JavaScript SDK sends with sentAt instead of timestamp) as
// its time, when that is an ISO-8601 time within the time bounds. One that
// is not is ignored, never refused, so that no event accepted before
// originalTimestamp was read is refused now: the time stays sentAt's.
func (p *Parser) originalTime(ev *Event, v *fastjson.Value, hasTimestamp bool) {
	if hasTimestamp || v == nil {
		return
	}
	s, ok := stringValue(v)
	if !ok {
		return
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return
	}
	if l := p.Limits.MaxFuture; l > 0 && !ev.ReceivedAt.IsZero() && t.After(ev.ReceivedAt.Add(l)) {
		return
	}
	if oldest := p.Limits.Oldest; t.Before(oldest) || !t.After(time.Time{}) {
		return
	}
	ev.Time = t.UTC()
}

// resolveTimes sets ev.ReceivedAt and ev.Time from the event's timestamp,
// sentAt and receivedAt members and checks the time bounds. A member that
// is present is used even when it is the zero time (0001-01-01T00:00:00Z),
// which is then refused as too old, never taken for an absent time.
func (p *Parser) resolveTimes(ev *Event, members *[3]*fastjson.Value, receivedAt time.Time, path fieldPath) error {
	var (
		stamps [3]time.Time
		given  [3]bool
	)
	for i, name := range [...]string{"timestamp", "sentAt", "receivedAt"} {
		tv := members[i]
		if tv == nil || tv.Type() == fastjson.TypeNull {
			continue
		}
		s, ok := stringValue(tv)
		if !ok {
			return &Error{Field: path.at(name), Problem: "must be an ISO-8601 string"}
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return &Error{Field: path.at(name), Problem: fmt.Sprintf("%q is not an ISO-8601 time with a zone (like 2024-05-01T12:00:00Z)", s)}
		}
		stamps[i], given[i] = t, true
	}
	ev.ReceivedAt = receivedAt
	if given[2] && !p.Stamp {
		ev.ReceivedAt = stamps[2]
	}
	chosen, known := "receivedAt", given[2] && !p.Stamp || !receivedAt.IsZero()
	ev.Time = ev.ReceivedAt
	switch {
	case given[0]:
		ev.Time, chosen, known = stamps[0], "timestamp", true
	case given[1]:
		ev.Time, chosen, known = stamps[1], "sentAt", true
	}
	if !known {
		return &Error{Field: path.at("timestamp"), Problem: "is required when the event has no receive time"}
	}
	if l := p.Limits.MaxFuture; l > 0 && !ev.ReceivedAt.IsZero() && ev.Time.After(ev.ReceivedAt.Add(l)) {
		return &Error{Field: path.at(chosen), Problem: fmt.Sprintf("%s is more than %s after the receive time %s", ev.Time.Format(time.RFC3339), l, ev.ReceivedAt.Format(time.RFC3339))}
	}
	oldest := p.Limits.Oldest
	if oldest.IsZero() {
		// No bound configured: the zero time still means "no time" to
		// everything downstream, so it is refused.
		oldest = time.Time{}.Add(time.Nanosecond)
	}
	if ev.Time.Before(oldest) {
		return &Error{Field: path.at(chosen), Problem: fmt.Sprintf("%s is before %s, the oldest event time accepted", ev.Time.Format(time.RFC3339), oldest.Format(time.RFC3339))}
	}
	ev.Time = ev.Time.UTC()
	ev.ReceivedAt = ev.ReceivedAt.UTC()
	return nil
}

func (p *Parser) optionalString(sv *fastjson.Value, field string) (string, error) {
	if sv == nil || sv.Type() == fastjson.TypeNull {
		return "", nil
	}
	s, ok := stringValue(sv)
	if !ok {
		return "", &Error{Field: field, Problem: "must be a string, not " + sv.Type().String()}
	}
	if l := p.Limits.MaxIDLength; l > 0 && len(s) > l {
		return "", &Error{Field: field, Problem: fmt.Sprintf("is %d bytes long, the limit is %d", len(s), l)}
	}
	return s, nil
}

func optionalObject(ov *fastjson.Value, field string) (*fastjson.Value, error) {
	if ov == nil || ov.Type() == fastjson.TypeNull {
		return nil, nil
	}
	if ov.Type() != fastjson.TypeObject {
		return nil, &Error{Field: field, Problem: "must be an object, not " + ov.Type().String()}
	}
	return ov, nil
}

// validateOrder checks the fields of Segment's order events whose types the
// e-commerce spec fixes, so that a wrong type is an error at the door and
// not a silently missing amount in the profile. A string that spells a
// JSON number in one of the numeric fields ("revenue": "19.99", common in
// shops' exports) is replaced by that number, text unchanged.
func (p *Parser) validateOrder(props *fastjson.Value, field string) error {
	if props == nil {
		return nil
	}
	for _, name := range [...]string{"revenue", "total"} {
		if err := p.number(props, name, field); err != nil {
			return err
		}
	}
	if id := props.Get("order_id"); id != nil {
		switch id.Type() {
		case fastjson.TypeString, fastjson.TypeNumber, fastjson.TypeNull:
		default:
			return &Error{Field: field + ".order_id", Problem: "must be a string or a number, not " + id.Type().String()}
		}
	}
	products := props.Get("products")
	if products == nil || products.Type() == fastjson.TypeNull {
		return nil
	}
	items, err := products.Array()
	if err != nil {
		return &Error{Field: field + ".products", Problem: "must be an array, not " + products.Type().String()}
	}
	for i, item := range items {
		itemField := field + ".products[" + strconv.Itoa(i) + "]"
		if item.Type() != fastjson.TypeObject {
			return &Error{Field: itemField, Problem: "must be an object, not " + item.Type().String()}
		}
		for _, name := range [...]string{"price", "quantity"} {
			if err := p.number(item, name, itemField); err != nil {
				return err
			}
		}
	}
	// Each number is in range; price × quantity summed is exact money,
	// which stops at its bound rather than overflowing (decision 0016).
	return nil
}

func stringValue(v *fastjson.Value) (string, bool) {
	b, err := v.StringBytes()
	if err != nil {
		return "", false
	}
	return string(b), true
}
