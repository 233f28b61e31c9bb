package duration

import (
	"strings"
	"testing"
	"time"
)

const (
	day  = 24 * time.Hour
	week = 7 * day
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"0", 0},
		{"0s", 0},
		{"90s", 90 * time.Second},
		{"15m", 15 * time.Minute},
		{"24h", 24 * time.Hour},
		{"7d", 7 * day},
		{"2w", 2 * week},
		{"1w2d", 9 * day},
		{"1d12h", 36 * time.Hour},
		{"2d3h", 51 * time.Hour},
		{"1h30m", 90 * time.Minute},
		{"30m1h", 90 * time.Minute}, // terms add in any order
		{"1.5h", 90 * time.Minute},
		{".5h", 30 * time.Minute},
		{"1.h", time.Hour},
		{"0.5w", 84 * time.Hour},
		{"250ms", 250 * time.Millisecond},
		{"10us", 10 * time.Microsecond},
		{"10µs", 10 * time.Microsecond},
		{"7ns", 7},
		{"1.0000000001s", time.Second}, // below a nanosecond: dropped
		{"365d", 365 * day},
		{"15250w", 15250 * week},
		{"9223372036854775807ns", Max},
		{"2562047h47m16.854775807s", Max},
	} {
		got, err := Parse(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct{ in, why string }{
		{"", "empty"},
		{"1", "without a unit"},
		{"10", "without a unit"},
		{"h", "does not start with a number"},
		{"-1h", "does not start with a number"},
		{"+1h", "does not start with a number"},
		{"1 h", "unknown unit"},
		{" 1h", "does not start with a number"},
		{"1h ", "unknown unit"},
		{"1y", "unknown unit"},
		{"1W", "unknown unit"},
		{"1H", "unknown unit"},
		{"1hour", "unknown unit"},
		{"1h30", "without a unit"},
		{".h", "does not start with a number"},
		{"1..5h", "unknown unit"},
		{"15251w", "292 years"},
		{"9223372036854775808ns", "292 years"},
		{"99999999999999999999999w", "292 years"},
		{"15250w15250w", "292 years"},
	} {
		_, err := Parse(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("Parse(%q): error %v, want one saying %q", tc.in, err, tc.why)
		}
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{2 * week, "14d"},
		{3 * day, "3d"},
		{36 * time.Hour, "36h0m0s"},
		{90 * time.Second, "1m30s"},
		{1500 * time.Microsecond, "1.5ms"},
	} {
		got := Format(tc.d)
		if got != tc.want {
			t.Errorf("Format(%v) = %q, want %q", tc.d, got, tc.want)
		}
		if back, err := Parse(got); err != nil || back != tc.d {
			t.Errorf("Parse(Format(%v)) = %v, %v", tc.d, back, err)
		}
	}
}

// FuzzParse checks that Parse never panics, never returns a negative
// duration, and that what it accepts reads back the same from Format.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"0", "90s", "2w", "1d12h", "1.5h", "250ms", "10µs", "15250w", "9223372036854775807ns", "1..5h", "-1h", "1e3s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := Parse(s)
		if err != nil {
			return
		}
		if d < 0 {
			t.Fatalf("Parse(%q) = %v, negative", s, d)
		}
		back, err := Parse(Format(d))
		if err != nil || back != d {
			t.Fatalf("Parse(Format(Parse(%q) = %v)) = %v, %v", s, d, back, err)
		}
	})
}
