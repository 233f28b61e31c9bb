// Package duration owns the one duration syntax tailor reads: in its
// configuration (windows, horizons, timeouts, caps) and in the rule
// language (duration("2w") and literals such as 90d), so that a duration
// that one accepts the other accepts too.
//
// A duration is one or more terms with nothing between them, each a
// decimal number (digits, optionally a fraction: "1.5") followed by a unit:
//
//	ns, us (or µs), ms   nano-, micro-, milliseconds
//	s, m, h              seconds, minutes, hours
//	d                    days of 24 hours
//	w                    weeks of 7 days
//
// The terms add up, in any order: "2w", "1d12h", "1h30m", "1.5h", "90s".
// "0" alone is zero. There is no sign (a duration is a length; rules negate
// with -) and no space. The total must stay within Max (about 292 years,
// what an int64 of nanoseconds holds); fractions of a nanosecond are
// dropped.
package duration
