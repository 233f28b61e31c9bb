package event

import (
	"encoding/binary"
	"math/bits"
	"strconv"
	"unicode/utf8"

	"github.com/tailorcdp/tailor/internal/jsonenc"
)

// checkJSON reports whether data is one JSON value as RFC 8259 defines it,
// in valid UTF-8, with nothing but whitespace around it: what
// encoding/json.Valid and utf8.Valid accept together, in one pass. It
// replaces fastjson's validator (the parser itself is lenient), which
// took more time than the parse. overflow says that a number in data is
// beyond float64's range (valid JSON, but not a value the engine can hold).
func checkJSON(data []byte) (overflow bool, err error) {
	var stackBuf [64]byte
	stack := stackBuf[:0] // '{' or '[' for each open container
	i, n := 0, len(data)
	for {
		// A value starts at i.
		i = skipSpace(data, i)
		if i >= n {
			return overflow, syntaxError(i, "unexpected end, want a value")
		}
		switch c := data[i]; {
		case c == '{':
			i = skipSpace(data, i+1)
			if i < n && data[i] == '}' {
				i++
				break
			}
			stack = append(stack, '{')
			if i, err = checkKey(data, i); err != nil {
				return overflow, err
			}
			continue
		case c == '[':
			i = skipSpace(data, i+1)
			if i < n && data[i] == ']' {
				i++
				break
			}
			stack = append(stack, '[')
			continue
		case c == '"':
			if i, err = checkString(data, i); err != nil {
				return overflow, err
			}
		case c == '-' || c >= '0' && c <= '9':
			var big bool
			if i, big, err = checkNumber(data, i); err != nil {
				return overflow, err
			}
			overflow = overflow || big
		case c == 't':
			i, err = checkLiteral(data, i, "true")
		case c == 'f':
			i, err = checkLiteral(data, i, "false")
		case c == 'n':
			i, err = checkLiteral(data, i, "null")
		default:
			return overflow, syntaxError(i, "unexpected "+quoteByte(c)+", want a value")
		}
		if err != nil {
			return overflow, err
		}
		// After a value: a comma, the end of its container, or the end.
		for {
			i = skipSpace(data, i)
			if len(stack) == 0 {
				if i != n {
					return overflow, syntaxError(i, "unexpected "+quoteByte(data[i])+" after the value")
				}
				return overflow, nil
			}
			if i >= n {
				return overflow, syntaxError(i, "unexpected end, want , or the end of the "+container(stack[len(stack)-1]))
			}
			top, c := stack[len(stack)-1], data[i]
			if top == '{' && c == '}' || top == '[' && c == ']' {
				stack = stack[:len(stack)-1]
				i++
				continue
			}
			if c != ',' {
				return overflow, syntaxError(i, "unexpected "+quoteByte(c)+", want , or the end of the "+container(top))
			}
			i++
			if top == '{' {
				if i, err = checkKey(data, skipSpace(data, i)); err != nil {
					return overflow, err
				}
			}
			break
		}
	}
}

// checkKey checks an object's key and its colon at i, returning where the
// value starts.
func checkKey(data []byte, i int) (int, error) {
	if i >= len(data) || data[i] != '"' {
		if i >= len(data) {
			return i, syntaxError(i, "unexpected end, want a key")
		}
		return i, syntaxError(i, "unexpected "+quoteByte(data[i])+", want a key")
	}
	i, err := checkString(data, i)
	if err != nil {
		return i, err
	}
	i = skipSpace(data, i)
	if i >= len(data) || data[i] != ':' {
		return i, syntaxError(i, "want : after a key")
	}
	return i + 1, nil
}

// checkString checks the string starting with the quote at i and returns
// the index after its closing quote.
func checkString(data []byte, i int) (int, error) {
	n := len(data)
	for i++; i < n; {
		// Eight bytes at a time to the first that needs a look; byte by
		// byte near the end of the text.
		for i+8 <= n {
			if m := jsonenc.Specials(binary.LittleEndian.Uint64(data[i:])); m != 0 {
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		for i < n && jsonenc.Plain(data[i]) {
			i++
		}
		if i >= n {
			break
		}
		switch c := data[i]; {
		case c == '"':
			return i + 1, nil
		case c == '\\':
			if i+1 >= n {
				return i, syntaxError(i, "unexpected end in an escape")
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > n {
					return i, syntaxError(i, "unexpected end in an escape")
				}
				for _, h := range data[i+2 : i+6] {
					if !isHex(h) {
						return i, syntaxError(i, "invalid \\u escape")
					}
				}
				i += 6
			default:
				return i, syntaxError(i, "invalid escape \\"+string(rune(data[i+1])))
			}
		case c < 0x20:
			return i, syntaxError(i, "control character "+quoteByte(c)+" in a string")
		default:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size <= 1 {
				return i, syntaxError(i, "invalid UTF-8 in a string")
			}
			i += size
		}
	}
	return i, syntaxError(i, "unexpected end in a string")
}

// checkNumber checks the number starting at i: an optional minus, an
// integer part without leading zeros, an optional fraction and exponent.
// big says that it is beyond float64's range; only numbers with an
// exponent or over 300 digits before the point are read to find out.
func checkNumber(data []byte, i int) (end int, big bool, err error) {
	start, n := i, len(data)
	if data[i] == '-' {
		i++
	}
	switch {
	case i < n && data[i] == '0':
		i++
	case i < n && data[i] >= '1' && data[i] <= '9':
		i = skipDigits(data, i)
	default:
		return i, false, syntaxError(start, "invalid number")
	}
	if i < n && data[i] == '.' {
		if i++; i >= n || !isDigit(data[i]) {
			return i, false, syntaxError(start, "invalid number: want digits after the point")
		}
		i = skipDigits(data, i)
	}
	exp := i < n && (data[i] == 'e' || data[i] == 'E')
	if exp {
		i++
		if i < n && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= n || !isDigit(data[i]) {
			return i, false, syntaxError(start, "invalid number: want digits in the exponent")
		}
		i = skipDigits(data, i)
	}
	if exp || i-start > 300 {
		_, big = parseNumber(data[start:i])
	}
	return i, big, nil
}

func checkLiteral(data []byte, i int, lit string) (int, error) {
	if len(data)-i < len(lit) || string(data[i:i+len(lit)]) != lit {
		return i, syntaxError(i, "invalid literal, want "+lit)
	}
	return i + len(lit), nil
}

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

func skipDigits(data []byte, i int) int {
	for i < len(data) && isDigit(data[i]) {
		i++
	}
	return i
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHex(c byte) bool { return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func container(c byte) string {
	if c == '{' {
		return "object"
	}
	return "array"
}

func quoteByte(c byte) string {
	if c < 0x80 {
		return strconv.QuoteRune(rune(c))
	}
	return "byte 0x" + strconv.FormatUint(uint64(c), 16)
}

// jsonSyntaxError is what is wrong with a JSON text, and where.
type jsonSyntaxError struct {
	offset  int
	problem string
}

func (e *jsonSyntaxError) Error() string {
	return e.problem + " at byte " + strconv.Itoa(e.offset)
}

func syntaxError(offset int, problem string) error {
	return &jsonSyntaxError{offset: offset, problem: problem}
}
