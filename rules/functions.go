package rules

import (
	"math"
	"slices"
	"strings"
	"time"

	"github.com/tailorcdp/tailor/internal/duration"
)

// stringLiteral returns the string of a literal argument.
func (c *compiler) stringLiteral(call *callNode, i int) (string, error) {
	if lit, ok := call.args[i].(*litNode); ok && lit.val.Kind == KindString {
		return lit.val.Str, nil
	}
	return "", c.errorf(call.args[i], "%s() takes a quoted name", call.fn)
}

func arity(fn string) (int, bool) {
	switch fn {
	case "now":
		return 0, true
	case "since", "duration", "interest", "segment", "consent", "has", "lower":
		return 1, true
	case "contains", "startsWith":
		return 2, true
	}
	return 0, false
}

// call compiles a call of one of the language's functions.
func (c *compiler) call(n *callNode) (expr, error) {
	want, known := arity(n.fn)
	if !known {
		return expr{}, c.errorf(n, "unknown function %s()", n.fn)
	}
	if len(n.args) != want {
		return expr{}, c.errorf(n, "%s() takes %d argument(s), got %d", n.fn, want, len(n.args))
	}
	switch n.fn {
	case "now":
		return c.now(), nil
	case "since":
		return c.since(n)
	case "duration":
		return c.duration(n)
	case "interest":
		return c.interest(n)
	case "segment":
		return c.segment(n)
	case "consent":
		return c.consent(n)
	case "has":
		return c.has(n)
	}
	return c.stringFunction(n)
}

// now is the evaluation's time, which moves with the clock.
func (c *compiler) now() expr {
	c.deps.Clock, c.deps.Now = true, true
	e := numExpr(TypeTime, func(env Env) (float64, bool) { return unixSeconds(env.Now()), true })
	e.lin = func(env TimeEnv) (float64, float64, bool) { return unixSeconds(env.Now()), 1, true }
	return e
}

// since is the time since the profile's last event of a name.
func (c *compiler) since(n *callNode) (expr, error) {
	name, err := c.stringLiteral(n, 0)
	if err != nil {
		return expr{}, err
	}
	c.deps.Events = addName(c.deps.Events, name)
	c.deps.Clock = true
	since := func(env Env) (float64, bool) {
		t, ok := env.LastEvent(name)
		if !ok {
			// Never is longer ago than any window: "no order in the
			// last hour" holds for someone who never ordered.
			return math.Inf(1), true
		}
		return env.Now().Sub(t).Seconds(), true
	}
	e := numExpr(TypeDuration, since)
	e.lin = func(env TimeEnv) (float64, float64, bool) {
		v, ok := since(env)
		if math.IsInf(v, 1) {
			return v, 0, ok // stays never until an event
		}
		return v, 1, ok
	}
	return e, nil
}

// duration is a constant duration written as in the configuration.
func (c *compiler) duration(n *callNode) (expr, error) {
	s, err := c.stringLiteral(n, 0)
	if err != nil {
		return expr{}, err
	}
	d, err := duration.Parse(s)
	if err != nil {
		return expr{}, c.errorf(n.args[0], "%v", err)
	}
	return constant(Duration(d)), nil
}

// interest is the profile's interest score in a category.
func (c *compiler) interest(n *callNode) (expr, error) {
	cat, err := c.stringLiteral(n, 0)
	if err != nil {
		return expr{}, err
	}
	c.deps.Interests = addName(c.deps.Interests, cat)
	return numExpr(TypeNumber, func(env Env) (float64, bool) { return env.Interest(cat), true }), nil
}

// segment is whether the profile is in a segment the schema declares.
func (c *compiler) segment(n *callNode) (expr, error) {
	name, err := c.stringLiteral(n, 0)
	if err != nil {
		return expr{}, err
	}
	i := slices.Index(c.schema.Segments, name)
	if i < 0 {
		return expr{}, c.errorf(n.args[0], "unknown segment %q", name)
	}
	c.deps.Segments = addIndex(c.deps.Segments, i)
	return boolExpr(func(env Env) bool { return env.Segment(i) }), nil
}

// consent is whether the profile consents to a purpose.
func (c *compiler) consent(n *callNode) (expr, error) {
	purpose, err := c.stringLiteral(n, 0)
	if err != nil {
		return expr{}, err
	}
	c.deps.Consents = addName(c.deps.Consents, purpose)
	return boolExpr(func(env Env) bool { return env.Consent(purpose) }), nil
}

// has is whether a field has a value.
func (c *compiler) has(n *callNode) (expr, error) {
	m, ok := n.args[0].(*memberNode)
	if !ok {
		return expr{}, c.errorf(n.args[0], "has() takes a field such as traits.email")
	}
	e, err := c.member(m)
	if err != nil {
		return expr{}, err
	}
	if e.n != nil {
		f := e.n
		return boolExpr(func(env Env) bool { _, ok := f(env); return ok }), nil
	}
	v := e.v
	return boolExpr(func(env Env) bool { return v(env).Kind != KindNull }), nil
}

// stringFunction compiles the string functions: lower, contains and
// startsWith.
func (c *compiler) stringFunction(n *callNode) (expr, error) {
	args := make([]func(Env) (string, bool), len(n.args))
	for i, a := range n.args {
		e, err := c.compile(a)
		if err != nil {
			return expr{}, err
		}
		if e.typ != TypeString && e.typ != TypeDynamic {
			return expr{}, c.errorf(a, "%s() takes strings, not %s", n.fn, e.typ)
		}
		args[i] = e.str()
	}
	if n.fn == "lower" {
		return expr{typ: TypeString, s: func(env Env) (string, bool) {
			s, ok := args[0](env)
			return strings.ToLower(s), ok
		}}, nil
	}
	test := strings.Contains
	if n.fn == "startsWith" {
		test = strings.HasPrefix
	}
	return boolExpr(func(env Env) bool {
		s, ok1 := args[0](env)
		sub, ok2 := args[1](env)
		return ok1 && ok2 && test(s, sub)
	}), nil
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
