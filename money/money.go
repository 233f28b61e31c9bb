package money

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
)

// Scale is how many Amount units make one currency unit: a millionth.
const Scale = 1_000_000

// decimals is the number of decimal places of an Amount.
const decimals = 6

// Amount is an exact decimal amount. The zero value is 0; Amounts compare
// with ==.
type Amount struct{ m int64 } // millionths

// The ends of the range.
var (
	Max = Amount{math.MaxInt64}
	Min = Amount{-math.MaxInt64} // symmetric, so that Neg never overflows
)

// Millionths returns the amount of n millionths.
func Millionths(n int64) Amount { return Amount{max(n, Min.m)} }

// Units returns the amount of n whole units, saturated.
func Units(n int64) Amount {
	if n > Max.m/Scale {
		return Max
	}
	if n < Min.m/Scale {
		return Min
	}
	return Amount{n * Scale}
}

// FromFloat returns the amount nearest to f, saturated (NaN is 0). Only
// for values already held as float64 (stored before amounts were exact):
// a float's noise within half a millionth is rounded away.
func FromFloat(f float64) Amount {
	switch v := math.RoundToEven(f * Scale); {
	case math.IsNaN(v):
		return Amount{}
	case v >= math.MaxInt64:
		return Max
	case v <= -math.MaxInt64:
		return Min
	default:
		return Amount{int64(v)}
	}
}

// Millionths returns the amount in millionths.
func (a Amount) Millionths() int64 { return a.m }

// Float64 returns the float64 nearest to the amount, for arithmetic that
// needs no exactness (comparisons in rules, histogram bins).
func (a Amount) Float64() float64 { return float64(a.m) / Scale }

// IsZero reports whether the amount is 0.
func (a Amount) IsZero() bool { return a.m == 0 }

// Sign returns -1, 0 or 1.
func (a Amount) Sign() int {
	switch {
	case a.m < 0:
		return -1
	case a.m > 0:
		return 1
	}
	return 0
}

// Add returns a + b, saturated.
func (a Amount) Add(b Amount) Amount {
	s, overflow := addInt64(a.m, b.m)
	if overflow {
		if b.m > 0 {
			return Max
		}
		return Min
	}
	return Millionths(s)
}

// Sub returns a - b, saturated.
func (a Amount) Sub(b Amount) Amount { return a.Add(b.Neg()) }

// Neg returns -a.
func (a Amount) Neg() Amount { return Amount{-a.m} }

// Abs returns |a|.
func (a Amount) Abs() Amount {
	if a.m < 0 {
		return a.Neg()
	}
	return a
}

// Mul returns a × b (a price times a quantity) rounded to the nearest
// millionth, half to even, saturated.
func (a Amount) Mul(b Amount) Amount {
	neg := (a.m < 0) != (b.m < 0)
	hi, lo := bits.Mul64(abs64(a.m), abs64(b.m))
	if hi >= Scale { // the quotient would not fit 64 bits
		return saturated(neg)
	}
	q, r := bits.Div64(hi, lo, Scale)
	if r > Scale/2 || r == Scale/2 && q&1 == 1 {
		q++
	}
	if q > math.MaxInt64 {
		return saturated(neg)
	}
	if neg {
		return Amount{-int64(q)}
	}
	return Amount{int64(q)}
}

func saturated(neg bool) Amount {
	if neg {
		return Min
	}
	return Max
}

func abs64(n int64) uint64 {
	if n < 0 {
		return uint64(-n)
	}
	return uint64(n)
}

func addInt64(a, b int64) (int64, bool) {
	s := a + b
	return s, (a > 0 && b > 0 && s < 0) || (a < 0 && b < 0 && s >= 0)
}

// ErrSyntax is wrapped by the errors of Parse.
var ErrSyntax = errors.New("not a decimal number")

// Parse reads a decimal number as JSON writes it: an optional minus, digits,
// an optional fraction and an optional exponent ("19.99", "-5", "1e3",
// "2.5E-1"); also a leading plus. More than six decimals are rounded half
// to even; a value past the range saturates.
func Parse(s string) (Amount, error) {
	a, ok := parse(s)
	if !ok {
		return Amount{}, fmt.Errorf("amount %q: %w", s, ErrSyntax)
	}
	return a, nil
}

// ParseBytes is Parse for a number's text in a byte slice (a JSON number as
// it came), without copying it.
func ParseBytes(b []byte) (Amount, error) {
	a, ok := parse(b)
	if !ok {
		return Amount{}, fmt.Errorf("amount %q: %w", b, ErrSyntax)
	}
	return a, nil
}

// MustParse is Parse for constants; it panics on a syntax error.
func MustParse(s string) Amount {
	a, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return a
}

// parse reads the number as its significant digits, of which the first 19
// are kept and the others only count for rounding, and the power of ten
// of the last one kept.
func parse[T string | []byte](s T) (Amount, bool) {
	i, neg := 0, false
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		neg = s[i] == '-'
		i++
	}
	var (
		mant      uint64 // the first significant digits
		kept      int    // how many
		exp       int    // the power of ten of mant's last digit
		digits    int    // all digits read
		firstDrop = -1   // the first digit not kept, -1 for none
		restDrop  bool   // a digit after it is not 0
	)
	digit := func(d byte, afterPoint bool) {
		digits++
		switch {
		case mant == 0 && d == '0':
			if afterPoint {
				exp--
			}
		case kept < 19:
			mant, kept = mant*10+uint64(d-'0'), kept+1
			if afterPoint {
				exp--
			}
		default:
			if !afterPoint {
				exp++ // mant's last digit stands for a higher power
			}
			if firstDrop < 0 {
				firstDrop = int(d - '0')
			} else if d != '0' {
				restDrop = true
			}
		}
	}
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		digit(s[i], false)
	}
	if i < len(s) && s[i] == '.' {
		i++
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			digit(s[i], true)
		}
	}
	if digits == 0 {
		return Amount{}, false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		eneg := false
		if i < len(s) && (s[i] == '-' || s[i] == '+') {
			eneg = s[i] == '-'
			i++
		}
		start := i
		e := 0
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			if e < 1_000_000 {
				e = e*10 + int(s[i]-'0')
			}
		}
		if i == start {
			return Amount{}, false
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	if i != len(s) {
		return Amount{}, false
	}
	a := millionths(mant, exp+decimals, firstDrop, restDrop)
	if neg {
		a = a.Neg()
	}
	return a, true
}

// millionths returns mant × 10^k millionths, rounded half to even, where
// firstDrop (-1: none) and restDrop say what digits followed mant.
func millionths(mant uint64, k, firstDrop int, restDrop bool) Amount {
	switch {
	case mant == 0 && firstDrop <= 0 && !restDrop:
		return Amount{}
	case k > 0 && firstDrop >= 0:
		return Max // 20 digits or more at or above a millionth
	case k >= 0:
		for ; k > 0; k-- {
			if mant > math.MaxInt64/10 {
				return Max
			}
			mant *= 10
		}
		if firstDrop > 5 || firstDrop == 5 && (restDrop || mant&1 == 1) {
			mant++
		}
		if mant > math.MaxInt64 {
			return Max
		}
		return Amount{int64(mant)}
	case k < -19:
		return Amount{} // below a tenth of a millionth
	}
	div := uint64(1)
	for ; k < 0; k++ {
		div *= 10
	}
	q, r := mant/div, mant%div
	sticky := firstDrop > 0 || restDrop
	if r > div/2 || r == div/2 && (sticky || q&1 == 1) {
		q++
	}
	if q > math.MaxInt64 {
		return Max
	}
	return Amount{int64(q)}
}

// String writes the amount as a decimal with no more decimals than it
// needs: "5391.21", "-0.5", "12".
func (a Amount) String() string { return string(a.AppendText(nil)) }

// AppendText appends the amount as String writes it.
func (a Amount) AppendText(b []byte) []byte {
	u := abs64(a.m)
	if a.m < 0 {
		b = append(b, '-')
	}
	b = strconv.AppendUint(b, u/Scale, 10)
	frac := u % Scale
	if frac == 0 {
		return b
	}
	var buf [decimals]byte
	for i := decimals - 1; i >= 0; i-- {
		buf[i] = byte('0' + frac%10)
		frac /= 10
	}
	n := decimals
	for buf[n-1] == '0' {
		n--
	}
	b = append(b, '.')
	return append(b, buf[:n]...)
}

// MarshalJSON writes the amount as a JSON number in decimal.
func (a Amount) MarshalJSON() ([]byte, error) { return a.AppendText(nil), nil }

// UnmarshalJSON reads a JSON number.
func (a *Amount) UnmarshalJSON(b []byte) error {
	v, err := ParseBytes(b)
	if err != nil {
		return err
	}
	*a = v
	return nil
}
