package money

import (
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64 // millionths
	}{
		{"0", 0},
		{"-0", 0},
		{"19.99", 19_990_000},
		{"-5", -5_000_000},
		{"+5", 5_000_000},
		{"5391.21", 5_391_210_000},
		{"0.1", 100_000},
		{"1e3", 1_000_000_000},
		{"2.5E-1", 250_000},
		{"1E+2", 100_000_000},
		{"0.000001", 1},
		{"0.0000005", 0},  // half: to even
		{"0.0000015", 2},  // half: to even
		{"0.00000051", 1}, // above half
		{"0.0000004999", 0},
		{"0.00000050000000000000000001", 1}, // above half, past 19 digits
		{"123456789.1234565", 123_456_789_123_456},
		{"123456789.1234575", 123_456_789_123_458},
		{"9223372036854.775807", math.MaxInt64},
		{"9223372036854.775808", math.MaxInt64}, // saturates
		{"-9223372036854.775808", -math.MaxInt64},
		{"1e400", math.MaxInt64},
		{"-1e400", -math.MaxInt64},
		{"1e-400", 0},
		{"00012.50", 12_500_000},
		{"12345678901234567890123e-10", 1_234_567_890_123_456_789}, // 23 digits
	} {
		got, err := Parse(tc.in)
		if err != nil || got.Millionths() != tc.want {
			t.Errorf("Parse(%q) = %d, %v; want %d", tc.in, got.Millionths(), err, tc.want)
		}
	}
	for _, in := range []string{"", "-", ".", "e3", "1e", "1e+", "1.2.3", "0x10", "1,5", " 1", "1 ", "NaN", "Inf", "--1", "1f"} {
		if _, err := Parse(in); !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q): error %v, want ErrSyntax", in, err)
		}
	}
}

func TestString(t *testing.T) {
	for _, tc := range []struct {
		m    int64
		want string
	}{
		{0, "0"}, {1, "0.000001"}, {-500_000, "-0.5"}, {12_000_000, "12"}, {5_391_210_000, "5391.21"},
		{math.MaxInt64, "9223372036854.775807"}, {-math.MaxInt64, "-9223372036854.775807"},
	} {
		if got := Millionths(tc.m).String(); got != tc.want {
			t.Errorf("Millionths(%d) = %q, want %q", tc.m, got, tc.want)
		}
	}
}

// TestSumExact is the float noise users saw: a tenth and two tenths added
// three hundred times, and a real order history.
func TestSumExact(t *testing.T) {
	var sum Amount
	var f float64
	for range 300 {
		sum = sum.Add(MustParse("0.1")).Add(MustParse("0.2"))
		f += 0.1 + 0.2
	}
	if sum.String() != "90" {
		t.Errorf("300 × (0.1 + 0.2) = %s, want 90", sum)
	}
	if f == 90 {
		t.Log("float64 happens to be exact here")
	}
	b, _ := json.Marshal(map[string]any{"revenue": sum.Add(MustParse("0.21"))})
	if string(b) != `{"revenue":90.21}` {
		t.Errorf("JSON %s", b)
	}
	var back struct{ Revenue Amount }
	if err := json.Unmarshal(b, &back); err != nil || back.Revenue != MustParse("90.21") {
		t.Errorf("read back %v, %v", back.Revenue, err)
	}
}

func TestArithmetic(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want Amount
	}{
		{"mul", MustParse("2.55").Mul(Units(12)), MustParse("30.6")},
		{"mul fraction", MustParse("0.333333").Mul(MustParse("0.5")), MustParse("0.166666")}, // 0.1666665: to even
		{"mul negative", MustParse("-1.5").Mul(MustParse("3")), MustParse("-4.5")},
		{"mul saturates", Max.Mul(Units(2)), Max},
		{"mul saturates negative", Max.Mul(Units(-2)), Min},
		{"add saturates", Max.Add(Millionths(1)), Max},
		{"sub saturates", Min.Sub(Millionths(1)), Min},
		{"neg", Min.Neg(), Max},
		{"abs", MustParse("-3.25").Abs(), MustParse("3.25")},
		{"units", Units(1 << 62), Max},
		{"float", FromFloat(5391.209999999999), MustParse("5391.21")},
		{"float nan", FromFloat(math.NaN()), Amount{}},
		{"float inf", FromFloat(math.Inf(-1)), Min},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, tc.got, tc.want)
		}
	}
}

// reference computes Parse's answer with exact rationals.
func reference(s string) (int64, bool) {
	if strings.ContainsAny(s, "/ _xXpPiInN") || strings.HasPrefix(strings.TrimLeft(s, "+-"), ".") && len(strings.TrimLeft(s, "+-")) == 1 {
		return 0, false
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return 0, false
	}
	r.Mul(r, big.NewRat(Scale, 1))
	// Round half to even.
	q, m := new(big.Int).QuoRem(r.Num(), r.Denom(), new(big.Int))
	twice := new(big.Int).Mul(new(big.Int).Abs(m), big.NewInt(2))
	switch c := twice.Cmp(r.Denom()); {
	case c > 0, c == 0 && q.Bit(0) == 1:
		if r.Sign() < 0 {
			q.Sub(q, big.NewInt(1))
		} else {
			q.Add(q, big.NewInt(1))
		}
	}
	switch {
	case q.Cmp(big.NewInt(math.MaxInt64)) > 0:
		return math.MaxInt64, true
	case q.Cmp(big.NewInt(-math.MaxInt64)) < 0:
		return -math.MaxInt64, true
	}
	return q.Int64(), true
}

// FuzzParse checks Parse against exact rational arithmetic, and that what
// it reads prints and reads back the same.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"19.99", "-0.0000005", "1e3", "2.5E-1", "9223372036854.775808", "0.00000050000000000000000001", "12345678901234567890123e-10", "1e-400"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := Parse(s)
		if err != nil {
			return
		}
		if len(s) < 200 && smallExponent(s) {
			if want, ok := reference(s); ok && a.Millionths() != want {
				t.Fatalf("Parse(%q) = %d, want %d", s, a.Millionths(), want)
			}
		}
		back, err := Parse(a.String())
		if err != nil || back != a {
			t.Fatalf("Parse(%q) = %s, read back as %s, %v", s, a, back, err)
		}
	})
}

// smallExponent reports whether s has no exponent or one of at most two
// digits, which exact rationals check quickly.
func smallExponent(s string) bool {
	i := strings.IndexAny(s, "eE")
	if i < 0 {
		return true
	}
	digits := strings.TrimLeft(s[i+1:], "+-")
	return len(digits) <= 2
}
