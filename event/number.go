package event

import (
	"math"
	"strconv"

	"github.com/valyala/fastjson"
)

// Numbers. JSON puts no bound on a number's size, but the engine reads
// numbers as float64: a number beyond its range (1e400) would become ±Inf,
// which no JSON encoder writes back, so a profile holding one could not
// be read. Such a number anywhere in an event refuses the event, naming
// the field; NaN cannot be written in JSON at all. Numbers too small for
// float64 (1e-400) read as zero and are kept.

// number checks obj's member name, a numeric field of the e-commerce
// spec: absent, null or a number, or a string that spells a JSON number,
// which is replaced by that number.
func (p *Parser) number(obj *fastjson.Value, name, parent string) error {
	v := obj.Get(name)
	if v == nil {
		return nil
	}
	switch v.Type() {
	case fastjson.TypeNull, fastjson.TypeNumber:
		return nil
	case fastjson.TypeString:
		s, _ := v.StringBytes()
		if !isNumber(s) {
			return &Error{Field: parent + "." + name, Problem: "must be a number, not string " + strconv.Quote(string(s))}
		}
		if _, inf := parseNumber(s); inf {
			return &Error{Field: parent + "." + name, Problem: "number " + string(s) + " is out of range (beyond ±1.8e308)"}
		}
		obj.Set(name, p.arena.NewNumberString(string(s)))
		return nil
	}
	return &Error{Field: parent + "." + name, Problem: "must be a number, not " + v.Type().String()}
}

// isNumber reports whether s is exactly one JSON number.
func isNumber(s []byte) bool {
	if len(s) == 0 || s[0] != '-' && !isDigit(s[0]) {
		return false
	}
	end, _, err := checkNumber(s, 0)
	return err == nil && end == len(s)
}

// parseNumber reads the JSON number text s; inf is true when it is beyond
// float64's range.
func parseNumber(s []byte) (f float64, inf bool) {
	f, _ = strconv.ParseFloat(string(s), 64)
	return f, math.IsInf(f, 0)
}

// overflowIn returns an error naming the first number in v beyond
// float64's range, or nil; path is v's field path.
func overflowIn(v *fastjson.Value, path string) error {
	switch v.Type() {
	case fastjson.TypeNumber:
		text := v.MarshalTo(nil)
		if _, inf := parseNumber(text); inf {
			if path == "" {
				path = "(event)"
			}
			return &Error{Field: path, Problem: "number " + string(text) + " is out of range (beyond ±1.8e308)"}
		}
	case fastjson.TypeArray:
		items, _ := v.Array()
		for i, item := range items {
			if err := overflowIn(item, path+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
	case fastjson.TypeObject:
		o, _ := v.Object()
		var err error
		o.Visit(func(key []byte, mv *fastjson.Value) {
			if err == nil {
				err = overflowIn(mv, join(path, string(key)))
			}
		})
		return err
	}
	return nil
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
