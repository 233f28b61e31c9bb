package event

import (
	"fmt"
	"strconv"
	"time"

	"github.com/valyala/fastjson"

	"github.com/tailorcdp/tailor/internal/jsonenc"
)

// Type is the kind of a Segment call.
type Type uint8

// The Segment call types.
const (
	Identify Type = iota + 1
	Track
	Page
	Screen
	Group
	Alias
)

// Types lists every call type in a fixed order, for tables and metrics.
var Types = [...]Type{Identify, Track, Page, Screen, Group, Alias}

// String returns the type's name as it appears in the "type" field.
func (t Type) String() string {
	switch t {
	case Identify:
		return "identify"
	case Track:
		return "track"
	case Page:
		return "page"
	case Screen:
		return "screen"
	case Group:
		return "group"
	case Alias:
		return "alias"
	}
	return "unknown(" + strconv.Itoa(int(t)) + ")"
}

// ParseType maps a "type" field value to its Type; ok is false for anything
// that is not one of the six Segment calls.
func ParseType(s string) (t Type, ok bool) {
	switch s {
	case "identify":
		return Identify, true
	case "track":
		return Track, true
	case "page":
		return Page, true
	case "screen":
		return Screen, true
	case "group":
		return Group, true
	case "alias":
		return Alias, true
	}
	return 0, false
}

// The Segment e-commerce event names the engine derives order facts from.
const (
	OrderCompleted = "Order Completed"
	OrderRefunded  = "Order Refunded"
)

// Event is one validated Segment call. The fastjson values point into the
// Parser that produced the event and are valid until its next Parse.
type Event struct {
	Type        Type
	MessageID   string
	UserID      string
	AnonymousID string
	PreviousID  string // alias only
	GroupID     string // group only
	Name        string // track: the event name; page and screen: the page name

	// Time is the event time: timestamp, else originalTimestamp (when a
	// valid time within the bounds), else sentAt, else receivedAt.
	// Windows and "latest wins" decisions use it, never the arrival time.
	Time       time.Time
	ReceivedAt time.Time
	// KeyLabel is the label of the write key the collect API took the
	// event with: not in its JSON, but in its record's HeaderKeyLabel,
	// which the consumer copies here. Empty for events produced to Kafka
	// by others.
	KeyLabel string

	Properties *fastjson.Value // object or nil
	// Traits are the call's traits (identify and group; object or nil).
	// An identify call without traits takes its context.traits, where
	// RudderStack's SDKs send them; other calls' context.traits (a
	// client's cached copy of the user's traits) are not read.
	Traits  *fastjson.Value
	Context *fastjson.Value // object or nil

	// Root is the whole event object, for re-serialising it.
	Root *fastjson.Value
}

// Key returns the profile key: the userId when present, else the anonymousId.
func (e *Event) Key() string {
	if e.UserID != "" {
		return e.UserID
	}
	return e.AnonymousID
}

// Prop returns the named property, or nil when the event has no such property.
func (e *Event) Prop(name string) *fastjson.Value {
	if e.Properties == nil {
		return nil
	}
	return e.Properties.Get(name)
}

// OrderID returns properties.order_id as a string (numbers are accepted and
// written in their shortest form), or "" when absent.
func (e *Event) OrderID() string {
	v := e.Prop("order_id")
	if v == nil {
		return ""
	}
	switch v.Type() {
	case fastjson.TypeString:
		return string(v.GetStringBytes())
	case fastjson.TypeNumber:
		f, _ := v.Float64()
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return ""
}

// SetString sets the event object's member name to the string str. The
// value is parsed from JSON that jsonenc writes, not made by a
// fastjson.Arena: an arena quotes control characters the Go way (\x07),
// which no JSON reader, fastjson included, reads back as str.
func (e *Event) SetString(name, str string) {
	v, err := fastjson.ParseBytes(jsonenc.AppendString(nil, str))
	if err != nil {
		panic(fmt.Sprintf("jsonenc wrote %q as invalid JSON: %v", str, err)) // a bug of jsonenc's
	}
	e.Root.Set(name, v)
}

// HeaderKeyLabel is the header of an events topic record that names the
// label of the write key collect took it with (never the key).
const HeaderKeyLabel = "tailor.key-label"

// Stamp sets what the receiving side knows on the event object: its receive
// time (overwriting a client's, as Segment does), the messageId when the
// event has none, and the type when it was implied by the endpoint. It
// removes writeKey, a credential that analytics.js puts in every event
// and that has no place in the events topic. The new values come from
// arena (messageID must give plain ASCII: an arena quotes control
// characters the Go way); the result is written with AppendJSON (or
// Parser.AppendRecord, which also bounds its size).
func (e *Event) Stamp(a *fastjson.Arena, receivedAt *fastjson.Value, messageID func() string) {
	e.Root.Del("writeKey")
	e.Root.Set("receivedAt", receivedAt)
	if e.MessageID == "" {
		e.MessageID = messageID()
		e.Root.Set("messageId", a.NewString(e.MessageID))
	}
	if e.Root.Get("type") == nil {
		e.Root.Set("type", a.NewString(e.Type.String()))
	}
}
