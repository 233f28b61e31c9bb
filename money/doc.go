// Package money owns exact amounts: what tailor adds up from the decimal
// numbers of events (orders' revenue, sum aggregates) and prints back as
// decimals, without the float noise of binary fractions (0.1 + 0.2 is 0.3,
// not 0.30000000000000004).
//
// An Amount is a whole number of millionths in an int64: six decimal
// places, to ±9 223 372 036 854.775807. A value with more decimals is
// rounded to the nearest millionth (half to even); a value or a sum past
// the range stops at its end (saturates) rather than wrap. See
// docs/decisions/0016-money.md.
package money
