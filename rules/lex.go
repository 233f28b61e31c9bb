// Package rules owns tailor's expression language, the one language of
// aggregate filters, segment rules and offer eligibility: lexing, parsing,
// type checking, and compiling to closures that evaluate a rule against a
// profile without reflection.
//
// A rule is parsed and checked when the configuration loads; a bad rule is
// an *Error naming the rule, the line and column, and the problem. Each
// compiled Rule records what it reads (Deps), so the engine re-evaluates
// only the rules an event can change.
//
// The language:
//
//	literals     42  3.5  "text"  'text'  true  false  7d  1h  30m  15s  [1, 2, 3]
//	operators    ||  &&  !  ==  !=  <  <=  >  >=  in  +  -  *  /  %  ( )
//	profile      traits.age  traits["first name"]  properties.category  context.page.url
//	             an aggregate by its name (cart_adds_1h)  rfm.r rfm.f rfm.m
//	             rfm.recency rfm.frequency rfm.monetary
//	functions    now()  since("Order Completed")  duration("1h")  interest("shoes")
//	             segment("champions")  consent("marketing")  has(traits.email)
//	             contains(s, sub)  startsWith(s, prefix)  lower(s)
//
// Durations are written as in the configuration (package duration): a
// number and a unit (ns, us, ms, s, m, h, d, w), or several added up
// ("1d12h"), as a literal or in duration("..."). They compare with
// durations and add to times; since(...) is the time
// since the profile's last event of that name, longer than any duration
// when there was none. A trait or property that is
// missing, or of another type than the comparison needs, makes the
// comparison false, never an error at run time.
package rules

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tailorcdp/tailor/internal/duration"
)

// Pos is a position in a rule's source: line and column, from 1, columns
// in characters.
type Pos struct{ Line, Col int }

func (p Pos) String() string { return strconv.Itoa(p.Line) + ":" + strconv.Itoa(p.Col) }

// Error is a rule that does not parse or type-check.
type Error struct {
	Rule string // the rule's name
	Pos  Pos
	Msg  string
}

func (e *Error) Error() string {
	return fmt.Sprintf("rule %q at %s: %s", e.Rule, e.Pos, e.Msg)
}

type tokKind uint8

const (
	tokEOF tokKind = iota
	tokNumber
	tokDuration
	tokString
	tokIdent
	tokOp // operators and punctuation
)

type token struct {
	kind tokKind
	text string  // operator, identifier or string value
	num  float64 // number value; duration in seconds
	pos  Pos
}

func (t token) String() string {
	switch t.kind {
	case tokEOF:
		return "end of rule"
	case tokString:
		return strconv.Quote(t.text)
	}
	return "\"" + t.text + "\""
}

// lex splits src into tokens.
func lex(rule, src string) ([]token, error) {
	var toks []token
	line, col := 1, 1
	i := 0
	errAt := func(p Pos, format string, a ...any) error {
		return &Error{Rule: rule, Pos: p, Msg: fmt.Sprintf(format, a...)}
	}
	advance := func(n int) {
		for _, r := range src[i : i+n] {
			if r == '\n' {
				line, col = line+1, 1
			} else {
				col++
			}
		}
		i += n
	}
	for i < len(src) {
		r, size := utf8.DecodeRuneInString(src[i:])
		pos := Pos{line, col}
		switch {
		case r == utf8.RuneError && size == 1:
			return nil, errAt(pos, "invalid UTF-8")
		case unicode.IsSpace(r):
			advance(size)
		case r >= '0' && r <= '9' || r == '.' && i+1 < len(src) && src[i+1] >= '0' && src[i+1] <= '9':
			j := i
			for j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '.') {
				j++
			}
			n, err := strconv.ParseFloat(src[i:j], 64)
			if err != nil {
				return nil, errAt(pos, "invalid number %q", src[i:j])
			}
			// A unit right after the number makes it a duration, which
			// may add up several terms ("1d12h") as duration("...") does.
			if k := durationEnd(src, j); k > j {
				d, err := duration.Parse(src[i:k])
				if err != nil {
					return nil, errAt(pos, "%v", err)
				}
				toks = append(toks, token{kind: tokDuration, num: d.Seconds(), text: src[i:k], pos: pos})
				advance(k - i)
				continue
			}
			toks = append(toks, token{kind: tokNumber, num: n, text: src[i:j], pos: pos})
			advance(j - i)
		case r == '"' || r == '\'':
			j := i + 1
			var b strings.Builder
			for {
				if j >= len(src) || src[j] == '\n' {
					return nil, errAt(pos, "unterminated string")
				}
				c := src[j]
				if c == byte(r) {
					break
				}
				if c == '\\' && j+1 < len(src) {
					switch src[j+1] {
					case '\\', '"', '\'':
						b.WriteByte(src[j+1])
					case 'n':
						b.WriteByte('\n')
					case 't':
						b.WriteByte('\t')
					default:
						return nil, errAt(pos, "unknown escape \\%c in string", src[j+1])
					}
					j += 2
					continue
				}
				b.WriteByte(c)
				j++
			}
			toks = append(toks, token{kind: tokString, text: b.String(), pos: pos})
			advance(j + 1 - i)
		case r == '_' || unicode.IsLetter(r):
			j := i
			for j < len(src) {
				c, n := utf8.DecodeRuneInString(src[j:])
				if c != '_' && !unicode.IsLetter(c) && !unicode.IsDigit(c) {
					break
				}
				j += n
			}
			toks = append(toks, token{kind: tokIdent, text: src[i:j], pos: pos})
			advance(j - i)
		default:
			op := ""
			for _, o := range [...]string{"&&", "||", "==", "!=", "<=", ">=", "<", ">", "!", "+", "-", "*", "/", "%", "(", ")", "[", "]", ",", "."} {
				if strings.HasPrefix(src[i:], o) {
					op = o
					break
				}
			}
			if op == "" {
				return nil, errAt(pos, "unexpected character %q", r)
			}
			toks = append(toks, token{kind: tokOp, text: op, pos: pos})
			advance(len(op))
		}
	}
	return append(toks, token{kind: tokEOF, pos: Pos{line, col}}), nil
}

// durationEnd returns where a duration literal whose first number ends at
// j ends: after the unit letters, and any further numbers with theirs; j
// when no letter follows the number.
func durationEnd(src string, j int) int {
	k := j
	for k < len(src) {
		letters := k
		for letters < len(src) && src[letters] >= 'a' && src[letters] <= 'z' {
			letters++
		}
		if letters == k {
			return k
		}
		k = letters
		digits := k
		for digits < len(src) && (src[digits] >= '0' && src[digits] <= '9' || src[digits] == '.') {
			digits++
		}
		if digits == k || digits == len(src) || src[digits] < 'a' || src[digits] > 'z' {
			return k // no further term: "1h" then something else
		}
		k = digits
	}
	return k
}
