package rules

import (
	"math"
	"time"
)

// TimeEnv is an Env that also says how its inputs move with time alone,
// for NextChange.
type TimeEnv interface {
	Env
	// AggregateNext returns the next instant (Unix seconds) after Now at
	// which aggregate index's value changes with no new event (an event
	// leaving its sliding window), or +Inf.
	AggregateNext(index int) float64
	// RFMNext returns the next instant (Unix seconds) after Now at which
	// RFM field changes with no new event (rfm.recency counts whole days),
	// or +Inf.
	RFMNext(field int) float64
}

// NextChange returns the earliest instant after env.Now() at which the
// rule's result may have changed with time alone, no event arriving: a
// since() or now() comparison crossing its bound, an event leaving a
// windowed aggregate, rfm.recency counting another day. The instant is
// rounded up to the next millisecond, so that a rule evaluated then sees
// the change. It may come early (the result is then the same, and asking
// again gives a later instant) but not late. ok is false when time alone
// cannot change the result, or only some 292 million years from now.
func (r *Rule) NextChange(env TimeEnv) (at time.Time, ok bool) {
	if r.e.next == nil {
		return time.Time{}, false
	}
	t := r.e.next(env)
	// Round up to the millisecond: at the crossing itself a strict
	// comparison has not flipped yet. An instant past what milliseconds
	// in an int64 reach (durations of 10^20 days in a rule) never comes.
	ms := math.Floor(t * 1000)
	if math.IsNaN(ms) || ms >= math.MaxInt64 || ms < math.MinInt64 {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(ms) + 1), true
}

// The compiled form of time movement, kept beside each expression's
// evaluator (see expr): lin gives a number's value and its rate of change
// per second of clock (now() and since() move at 1, arithmetic combines
// them); next gives the next instant at which a value jumps or a
// comparison crosses. Expressions that time does not move have neither,
// so rules without clock inputs pay nothing.
type (
	linFunc  func(TimeEnv) (v, slope float64, ok bool)
	nextFunc func(TimeEnv) float64
)

// linOf returns e's value with its slope, 0 for a value time does not move.
func linOf(e expr, k Kind) linFunc {
	if e.lin != nil {
		return e.lin
	}
	f := e.number(k)
	return func(env TimeEnv) (float64, float64, bool) {
		v, ok := f(env)
		return v, 0, ok
	}
}

// earliest combines the next functions of sub-expressions: nil when none
// moves.
func earliest(fs ...nextFunc) nextFunc {
	var set []nextFunc
	for _, f := range fs {
		if f != nil {
			set = append(set, f)
		}
	}
	switch len(set) {
	case 0:
		return nil
	case 1:
		return set[0]
	case 2:
		a, b := set[0], set[1]
		return func(env TimeEnv) float64 { return math.Min(a(env), b(env)) }
	}
	return func(env TimeEnv) float64 {
		t := math.Inf(1)
		for _, f := range set {
			t = math.Min(t, f(env))
		}
		return t
	}
}

// crossing returns when a comparison of x and y may flip with time: the
// instant their lines cross, or either side jumps, whichever is first.
func crossing(x, y expr, k Kind) nextFunc {
	steps := earliest(x.next, y.next)
	if x.lin == nil && y.lin == nil {
		return steps
	}
	a, b := linOf(x, k), linOf(y, k)
	return func(env TimeEnv) float64 {
		t := math.Inf(1)
		if steps != nil {
			t = steps(env)
		}
		u, su, ok1 := a(env)
		v, sv, ok2 := b(env)
		if !ok1 || !ok2 || su == sv || math.IsInf(u, 0) || math.IsInf(v, 0) {
			return t
		}
		if dt := (v - u) / (su - sv); dt >= 0 {
			t = math.Min(t, unixSeconds(env.Now())+dt)
		}
		return t
	}
}

// arithmeticLin combines the slopes of x op y.
func arithmeticLin(op string, x, y expr, xk, yk Kind) linFunc {
	if x.lin == nil && y.lin == nil {
		return nil
	}
	a, b := linOf(x, xk), linOf(y, yk)
	return func(env TimeEnv) (float64, float64, bool) {
		u, su, ok1 := a(env)
		v, sv, ok2 := b(env)
		if !ok1 || !ok2 {
			return 0, 0, false
		}
		var r, s float64
		switch op {
		case "+":
			r, s = u+v, su+sv
		case "-":
			r, s = u-v, su-sv
		case "*":
			r, s = u*v, su*v+u*sv
		case "/":
			r, s = u/v, (su*v-u*sv)/(v*v)
		default: // %: moves like u between the jumps of the remainder
			r, s = math.Mod(u, v), su
		}
		if math.IsNaN(r) || math.IsInf(r, 0) || math.IsNaN(s) || math.IsInf(s, 0) {
			return 0, 0, false
		}
		return r, s, true
	}
}
