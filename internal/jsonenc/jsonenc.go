package jsonenc

import (
	"math/bits"
	"unicode/utf8"
	"unsafe"

	"github.com/valyala/fastjson"
)

// AppendString appends s as a JSON string. Quotes, backslashes and
// control characters are escaped; invalid UTF-8 becomes U+FFFD, as
// encoding/json does.
func AppendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		// Copy the run of bytes that need no escape in one append,
		// looking at eight bytes at a time while there are eight.
		start := i
		for i+8 <= len(s) {
			if m := Specials(load64(s, i)); m != 0 {
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		for i < len(s) && Plain(s[i]) {
			i++
		}
		dst = append(dst, s[start:i]...)
		if i >= len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			default: // another control character
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// AppendBytes is AppendString for the text in b, which it only reads.
func AppendBytes(dst, b []byte) []byte {
	return AppendString(dst, unsafe.String(unsafe.SliceData(b), len(b)))
}

// load64 reads the eight bytes of s at i, the first in the low byte.
func load64(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// Specials marks, with the high bit of each byte, the bytes of x that a
// JSON string cannot hold as they are: a quote, a backslash, below 0x20
// or above 0x7f (the start of an escape, a control character, a byte of a
// multi-byte character). The lowest mark is exact: (x - c·0x0101…) &^ x &
// 0x8080… marks the bytes below c (c <= 0x80), and a wrong mark can only
// follow a right one. Writers (AppendString) and readers (event's JSON
// checker) skip eight plain bytes at a time with it.
func Specials(x uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	quote, backslash := x^('"'*ones), x^('\\'*ones)
	return ((x-0x20*ones)&^x | (quote-ones)&^quote | (backslash-ones)&^backslash | x) & highs
}

// Plain reports whether a JSON string holds c as it is: printable ASCII
// but the quote and the backslash (the bytes Specials does not mark).
func Plain(c byte) bool { return plain[c] }

var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// AppendValue appends v as JSON: objects keep their members' order
// (repeated keys included), numbers their text, and strings are written
// by AppendString. A nil v is written as null.
func AppendValue(dst []byte, v *fastjson.Value) []byte {
	if v == nil {
		return append(dst, "null"...)
	}
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		dst = append(dst, '{')
		first := true
		o.Visit(func(key []byte, mv *fastjson.Value) {
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = AppendBytes(dst, key)
			dst = append(dst, ':')
			dst = AppendValue(dst, mv)
		})
		return append(dst, '}')
	case fastjson.TypeArray:
		items, _ := v.Array()
		dst = append(dst, '[')
		for i, item := range items {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendValue(dst, item)
		}
		return append(dst, ']')
	case fastjson.TypeString:
		s, _ := v.StringBytes()
		return AppendBytes(dst, s)
	default: // numbers (their text as parsed), true, false, null
		return v.MarshalTo(dst)
	}
}
