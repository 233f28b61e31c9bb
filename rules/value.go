package rules

import (
	"math"
	"strconv"
	"time"
	"unsafe"

	"github.com/valyala/fastjson"
)

// Kind is the kind of a runtime Value.
type Kind uint8

// Value kinds. Durations hold seconds in Num; times hold Unix seconds.
const (
	KindNull Kind = iota
	KindBool
	KindNumber
	KindString
	KindDuration
	KindTime
	KindList
)

func (k Kind) String() string {
	switch k {
	case KindNull:
		return "null"
	case KindBool:
		return "bool"
	case KindNumber:
		return "number"
	case KindString:
		return "string"
	case KindDuration:
		return "duration"
	case KindTime:
		return "time"
	case KindList:
		return "list"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Value is a runtime value. The zero Value is null: a missing trait, an
// aggregate with no data, since() of an event never seen.
type Value struct {
	Kind Kind
	Num  float64 // bool (0 or 1), number, duration (seconds), time (Unix seconds)
	Str  string
	List []Value
}

// Number returns a number value.
func Number(f float64) Value { return Value{Kind: KindNumber, Num: f} }

// String returns a string value.
func String(s string) Value { return Value{Kind: KindString, Str: s} }

// Bool returns a boolean value.
func Bool(b bool) Value {
	if b {
		return Value{Kind: KindBool, Num: 1}
	}
	return Value{Kind: KindBool}
}

// Duration returns a duration value.
func Duration(d time.Duration) Value { return Value{Kind: KindDuration, Num: d.Seconds()} }

// Time returns a time value.
func Time(t time.Time) Value {
	return Value{Kind: KindTime, Num: float64(t.UnixNano()) / 1e9}
}

// True reports whether v is the boolean true; anything else, null
// included, counts as false.
func (v Value) True() bool { return v.Kind == KindBool && v.Num != 0 }

// String formats the value for messages and tests.
func (v Value) String() string {
	switch v.Kind {
	case KindBool:
		return strconv.FormatBool(v.Num != 0)
	case KindNumber:
		return strconv.FormatFloat(v.Num, 'g', -1, 64)
	case KindString:
		return strconv.Quote(v.Str)
	case KindDuration:
		if math.IsInf(v.Num, 1) {
			return "never"
		}
		return time.Duration(v.Num * 1e9).String()
	case KindTime:
		sec, frac := math.Modf(v.Num)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC().Format(time.RFC3339Nano)
	case KindList:
		s := "["
		for i, item := range v.List {
			if i > 0 {
				s += ", "
			}
			s += item.String()
		}
		return s + "]"
	}
	return "null"
}

// FromJSON converts a JSON value (a trait or a property) to a Value:
// numbers, strings, booleans and arrays of them; null and objects give
// null. Strings in RFC 3339 form stay strings.
func FromJSON(v *fastjson.Value) Value { return fromJSON(v, false) }

// FromJSONShared is FromJSON with strings that share v's memory instead
// of copying it, for a Value used only while v is unchanged: an Env's
// Property and Context, read during one evaluation.
func FromJSONShared(v *fastjson.Value) Value { return fromJSON(v, true) }

func fromJSON(v *fastjson.Value, shared bool) Value {
	if v == nil {
		return Value{}
	}
	switch v.Type() {
	case fastjson.TypeNumber:
		f, err := v.Float64()
		if err != nil {
			return Value{}
		}
		return Number(f)
	case fastjson.TypeString:
		b := v.GetStringBytes()
		if shared {
			return String(unsafe.String(unsafe.SliceData(b), len(b)))
		}
		return String(string(b))
	case fastjson.TypeTrue:
		return Bool(true)
	case fastjson.TypeFalse:
		return Bool(false)
	case fastjson.TypeArray:
		items, _ := v.Array()
		list := make([]Value, 0, len(items))
		for _, item := range items {
			list = append(list, fromJSON(item, shared))
		}
		return Value{Kind: KindList, List: list}
	}
	return Value{}
}

// equal compares two values of any kinds: values of different kinds are
// not equal.
func equal(a, b Value) bool {
	if a.Kind != b.Kind {
		return false
	}
	switch a.Kind {
	case KindNull:
		return true
	case KindString:
		return a.Str == b.Str
	case KindList:
		if len(a.List) != len(b.List) {
			return false
		}
		for i := range a.List {
			if !equal(a.List[i], b.List[i]) {
				return false
			}
		}
		return true
	}
	return a.Num == b.Num
}

// compare orders two values of the same orderable kind; ok is false for
// anything else.
func compare(a, b Value) (c int, ok bool) {
	if a.Kind != b.Kind {
		return 0, false
	}
	switch a.Kind {
	case KindNumber, KindDuration, KindTime:
		switch {
		case a.Num < b.Num:
			return -1, true
		case a.Num > b.Num:
			return 1, true
		case a.Num == b.Num:
			return 0, true
		}
		return 0, false // NaN
	case KindString:
		switch {
		case a.Str < b.Str:
			return -1, true
		case a.Str > b.Str:
			return 1, true
		}
		return 0, true
	}
	return 0, false
}
