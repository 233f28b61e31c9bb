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

// lexer is lex's position in a rule's source and the tokens so far.
type lexer struct {
	rule, src string
	i         int // byte offset of the next character
	line, col int
	toks      []token
}

// lex splits src into tokens.
func lex(rule, src string) ([]token, error) {
	l := &lexer{rule: rule, src: src, line: 1, col: 1}
	for l.i < len(src) {
		r, size := utf8.DecodeRuneInString(src[l.i:])
		pos := Pos{l.line, l.col}
		var err error
		switch {
		case r == utf8.RuneError && size == 1:
			err = l.errAt(pos, "invalid UTF-8")
		case unicode.IsSpace(r):
			l.advance(size)
		case r >= '0' && r <= '9' || r == '.' && l.i+1 < len(src) && isDigit(src[l.i+1]):
			err = l.number(pos)
		case r == '"' || r == '\'':
			err = l.quoted(pos, byte(r))
		case r == '_' || unicode.IsLetter(r):
			l.ident(pos)
		default:
			err = l.operator(pos, r)
		}
		if err != nil {
			return nil, err
		}
	}
	return append(l.toks, token{kind: tokEOF, pos: Pos{l.line, l.col}}), nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func (l *lexer) errAt(p Pos, format string, a ...any) error {
	return &Error{Rule: l.rule, Pos: p, Msg: fmt.Sprintf(format, a...)}
}

// advance moves past the next n bytes, counting lines and columns.
func (l *lexer) advance(n int) {
	for _, r := range l.src[l.i : l.i+n] {
		if r == '\n' {
			l.line, l.col = l.line+1, 1
		} else {
			l.col++
		}
	}
	l.i += n
}

// emit appends a token for the next n bytes and moves past them.
func (l *lexer) emit(t token, n int) {
	l.toks = append(l.toks, t)
	l.advance(n)
}

// number lexes a number, or a duration when a unit follows it.
func (l *lexer) number(pos Pos) error {
	src, i := l.src, l.i
	j := i
	for j < len(src) && (isDigit(src[j]) || src[j] == '.') {
		j++
	}
	n, err := strconv.ParseFloat(src[i:j], 64)
	if err != nil {
		return l.errAt(pos, "invalid number %q", src[i:j])
	}
	// A unit right after the number makes it a duration, which may add up
	// several terms ("1d12h") as duration("...") does.
	if k := durationEnd(src, j); k > j {
		d, err := duration.Parse(src[i:k])
		if err != nil {
			return l.errAt(pos, "%v", err)
		}
		l.emit(token{kind: tokDuration, num: d.Seconds(), text: src[i:k], pos: pos}, k-i)
		return nil
	}
	l.emit(token{kind: tokNumber, num: n, text: src[i:j], pos: pos}, j-i)
	return nil
}

// quoted lexes a string between quote characters, with its escapes.
func (l *lexer) quoted(pos Pos, quote byte) error {
	src := l.src
	j := l.i + 1
	var b strings.Builder
	for {
		if j >= len(src) || src[j] == '\n' {
			return l.errAt(pos, "unterminated string")
		}
		c := src[j]
		if c == quote {
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
				return l.errAt(pos, "unknown escape \\%c in string", src[j+1])
			}
			j += 2
			continue
		}
		b.WriteByte(c)
		j++
	}
	l.emit(token{kind: tokString, text: b.String(), pos: pos}, j+1-l.i)
	return nil
}

// ident lexes a name: letters, digits and underscores.
func (l *lexer) ident(pos Pos) {
	j := l.i
	for j < len(l.src) {
		c, n := utf8.DecodeRuneInString(l.src[j:])
		if c != '_' && !unicode.IsLetter(c) && !unicode.IsDigit(c) {
			break
		}
		j += n
	}
	l.emit(token{kind: tokIdent, text: l.src[l.i:j], pos: pos}, j-l.i)
}

// operator lexes an operator or punctuation, the longest that matches.
func (l *lexer) operator(pos Pos, r rune) error {
	for _, o := range [...]string{"&&", "||", "==", "!=", "<=", ">=", "<", ">", "!", "+", "-", "*", "/", "%", "(", ")", "[", "]", ",", "."} {
		if strings.HasPrefix(l.src[l.i:], o) {
			l.emit(token{kind: tokOp, text: o, pos: pos}, len(o))
			return nil
		}
	}
	return l.errAt(pos, "unexpected character %q", r)
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
