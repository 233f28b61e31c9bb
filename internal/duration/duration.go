package duration

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Max is the longest duration Parse accepts.
const Max = time.Duration(math.MaxInt64)

// Syntax says in a few words what Parse accepts, for error messages.
const Syntax = "a number and a unit (ns, us, ms, s, m, h, d, w), or several added up, like 90s, 1.5h, 7d, 2w or 1d12h"

// unit is a unit name and its length.
type unit struct {
	name string
	d    time.Duration
}

var units = []unit{
	{"ns", time.Nanosecond}, {"us", time.Microsecond}, {"µs", time.Microsecond}, {"ms", time.Millisecond},
	{"s", time.Second}, {"m", time.Minute}, {"h", time.Hour},
	{"d", 24 * time.Hour}, {"w", 7 * 24 * time.Hour},
}

// errRange is wrapped by the error for a duration past Max.
var errRange = errors.New("longer than 292 years")

// Parse reads a duration as the package comment describes.
func Parse(s string) (time.Duration, error) {
	d, err := parse(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: %w; want %s", s, err, Syntax)
	}
	return d, nil
}

func parse(s string) (time.Duration, error) {
	switch s {
	case "":
		return 0, errors.New("empty")
	case "0":
		return 0, nil
	}
	var total uint64
	for rest := s; rest != ""; {
		whole, frac, scale, n := number(rest)
		if n == 0 {
			return 0, fmt.Errorf("%q does not start with a number", rest)
		}
		rest = rest[n:]
		u, ok := unitOf(rest)
		if !ok {
			if rest == "" {
				return 0, errors.New("a number without a unit")
			}
			return 0, fmt.Errorf("unknown unit in %q", rest)
		}
		rest = rest[len(u.name):]
		term, ok := termOf(whole, frac, scale, uint64(u.d))
		if !ok || total+term > uint64(Max) {
			return 0, errRange
		}
		total += term
	}
	return time.Duration(total), nil
}

// number reads the decimal number s starts with: its whole part, its
// fraction as frac/scale (digits past 18 dropped), and how many bytes it
// takes (0: none). A whole part past uint64 reads as math.MaxUint64.
func number(s string) (whole, frac, scale uint64, n int) {
	scale = 1
	digits := 0
	for ; n < len(s) && s[n] >= '0' && s[n] <= '9'; n++ {
		d := uint64(s[n] - '0')
		if whole > (math.MaxUint64-d)/10 {
			whole = math.MaxUint64
		} else {
			whole = whole*10 + d
		}
		digits++
	}
	if n < len(s) && s[n] == '.' {
		n++
		for ; n < len(s) && s[n] >= '0' && s[n] <= '9'; n++ {
			if scale < 1e18 {
				frac, scale = frac*10+uint64(s[n]-'0'), scale*10
			}
			digits++
		}
	}
	if digits == 0 {
		return 0, 0, 1, 0
	}
	return whole, frac, scale, n
}

// unitOf returns the unit s starts with: all of s up to the next number.
func unitOf(s string) (unit, bool) {
	n := strings.IndexFunc(s, func(r rune) bool { return r >= '0' && r <= '9' || r == '.' })
	if n < 0 {
		n = len(s)
	}
	for _, u := range units {
		if s[:n] == u.name {
			return u, true
		}
	}
	return unit{}, false
}

// termOf returns whole.frac/scale units of unit nanoseconds, false past
// Max.
func termOf(whole, frac, scale, unit uint64) (uint64, bool) {
	if whole > uint64(Max)/unit {
		return 0, false
	}
	v := whole * unit
	if frac > 0 {
		// frac/scale < 1, so frac*unit/scale < unit; computed in float
		// only when the product would overflow (a fraction of 18 digits
		// of a week), where the last nanosecond does not matter.
		var f uint64
		if frac <= math.MaxUint64/unit {
			f = frac * unit / scale
		} else {
			f = uint64(float64(frac) / float64(scale) * float64(unit))
		}
		v += f
		if v > uint64(Max) {
			return 0, false
		}
	}
	return v, true
}

// Format writes d in the syntax Parse reads: in whole days when it is a
// whole number of them ("14d"), else as time.Duration.String writes it
// ("1h30m0s").
func Format(d time.Duration) string {
	const day = 24 * time.Hour
	if d > 0 && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	return d.String()
}
