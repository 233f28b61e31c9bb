package config

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tailorcdp/tailor/internal/duration"
)

type stringValue string

func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }
func (v *stringValue) String() string     { return string(*v) }

type intValue int

func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("not an integer")
	}
	*v = intValue(n)
	return nil
}
func (v *intValue) String() string { return strconv.Itoa(int(*v)) }

type boolValue bool

func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("not a boolean (true or false)")
	}
	*v = boolValue(b)
	return nil
}
func (v *boolValue) String() string   { return strconv.FormatBool(bool(*v)) }
func (v *boolValue) IsBoolFlag() bool { return true }

type listValue []string

func (v *listValue) Set(s string) error {
	*v = nil
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*v = append(*v, part)
		}
	}
	return nil
}
func (v *listValue) String() string { return strings.Join(*v, ",") }

// Duration is a time.Duration written as the duration package reads it:
// "90s", "1.5h", "7d", "2w", "1d12h".
type Duration time.Duration

// ParseDuration parses a duration in the syntax of the rule language's
// duration("...") (package duration).
func ParseDuration(s string) (time.Duration, error) { return duration.Parse(s) }

func (d *Duration) Set(s string) error {
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

func (d *Duration) String() string { return duration.Format(time.Duration(*d)) }

// UnmarshalYAML reads a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if err := d.Set(n.Value); err != nil {
		return fmt.Errorf("line %d, column %d: %w", n.Line, n.Column, err)
	}
	return nil
}

// ByteSize is a size in bytes that reads "16MB", "512KB", "1GB" or a number.
type ByteSize int64

func (b *ByteSize) Set(s string) error {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("invalid size %q: want e.g. 512KB, 16MB or 1GB", s)
	}
	*b = ByteSize(n * mult)
	return nil
}

func (b *ByteSize) String() string {
	v := int64(*b)
	switch {
	case v >= 1<<30 && v%(1<<30) == 0:
		return strconv.FormatInt(v>>30, 10) + "GB"
	case v >= 1<<20 && v%(1<<20) == 0:
		return strconv.FormatInt(v>>20, 10) + "MB"
	case v >= 1<<10 && v%(1<<10) == 0:
		return strconv.FormatInt(v>>10, 10) + "KB"
	}
	return strconv.FormatInt(v, 10)
}

// UnmarshalYAML reads a size string or number.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error { return b.Set(n.Value) }

// Date is a calendar day (UTC), written YYYY-MM-DD.
type Date time.Time

func (d *Date) Set(s string) error {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return fmt.Errorf("invalid date %q: want YYYY-MM-DD", s)
	}
	*d = Date(t)
	return nil
}

func (d *Date) String() string { return time.Time(*d).Format("2006-01-02") }

// UnmarshalYAML reads a YYYY-MM-DD date.
func (d *Date) UnmarshalYAML(n *yaml.Node) error { return d.Set(n.Value) }

// JSONContent is free-form YAML (an offer's content) kept as JSON.
type JSONContent []byte

// UnmarshalYAML converts the node to JSON.
func (c *JSONContent) UnmarshalYAML(n *yaml.Node) error {
	var v any
	if err := n.Decode(&v); err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("line %d: content cannot be JSON: %w", n.Line, err)
	}
	*c = b
	return nil
}

// Rate is a rate limit, a token bucket: "100/s burst 500" lets a client
// send 500 requests at once and then 100 a second; the unit is s, m or h
// ("6000/m" is 100/s); the burst defaults to one second's worth (at least
// 1). "off" (or "0") is no limit.
type Rate struct {
	PerSecond float64
	Burst     int
}

// maxRate bounds a rate and a burst, so that every value is written back
// as it was read.
const maxRate = 1e9

func (r *Rate) Set(s string) error {
	bad := func() error {
		return fmt.Errorf("invalid rate %q: want e.g. 100/s, 6000/m burst 500, or off", s)
	}
	f := strings.Fields(strings.ToLower(s))
	if len(f) == 1 && (f[0] == "off" || f[0] == "0") {
		*r = Rate{}
		return nil
	}
	if len(f) != 1 && (len(f) != 3 || f[1] != "burst") {
		return bad()
	}
	num, unit, ok := strings.Cut(f[0], "/")
	n, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || !(n > 0 && n <= maxRate) {
		return bad()
	}
	switch unit {
	case "s":
	case "m":
		n /= 60
	case "h":
		n /= 3600
	default:
		return bad()
	}
	burst := max(1, int(math.Ceil(n)))
	if len(f) == 3 {
		if burst, err = strconv.Atoi(f[2]); err != nil || burst < 1 || burst > maxRate {
			return bad()
		}
	}
	*r = Rate{PerSecond: n, Burst: burst}
	return nil
}

func (r *Rate) String() string {
	if r.PerSecond <= 0 {
		return "off"
	}
	return strconv.FormatFloat(r.PerSecond, 'g', -1, 64) + "/s burst " + strconv.Itoa(r.Burst)
}

// UnmarshalYAML reads a rate string.
func (r *Rate) UnmarshalYAML(n *yaml.Node) error {
	if err := r.Set(n.Value); err != nil {
		return fmt.Errorf("line %d, column %d: %w", n.Line, n.Column, err)
	}
	return nil
}
