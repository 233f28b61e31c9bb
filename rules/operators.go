package rules

import (
	"math"
	"strings"
)

// unary compiles ! and the negation of a number or duration.
func (c *compiler) unary(n *unaryNode) (expr, error) {
	x, err := c.compile(n.x)
	if err != nil {
		return expr{}, err
	}
	if n.op == "!" {
		if x.typ != TypeBool && x.typ != TypeDynamic {
			return expr{}, c.errorf(n, "! needs true/false, not %s", x.typ)
		}
		f := x.boolean()
		e := boolExpr(func(env Env) bool { return !f(env) })
		e.next = x.next
		return e, nil
	}
	if x.typ != TypeNumber && x.typ != TypeDuration && x.typ != TypeDynamic {
		return expr{}, c.errorf(n, "- needs a number or a duration, not %s", x.typ)
	}
	typ := x.typ
	if typ == TypeDynamic {
		typ = TypeNumber
	}
	f := x.number(typ.kind())
	e := numExpr(typ, func(env Env) (float64, bool) { v, ok := f(env); return -v, ok })
	e.next = x.next
	if lin := x.lin; lin != nil {
		e.lin = func(env TimeEnv) (float64, float64, bool) { v, s, ok := lin(env); return -v, -s, ok }
	}
	return e, nil
}

// binary compiles the binary operators, checking their operands' types.
func (c *compiler) binary(n *binaryNode) (expr, error) {
	x, err := c.compile(n.x)
	if err != nil {
		return expr{}, err
	}
	y, err := c.compile(n.y)
	if err != nil {
		return expr{}, err
	}
	switch n.op {
	case "&&", "||":
		for _, e := range []expr{x, y} {
			if e.typ != TypeBool && e.typ != TypeDynamic {
				return expr{}, c.errorf(n, "%s needs true/false on both sides, not %s", n.op, e.typ)
			}
		}
		a, b := x.boolean(), y.boolean()
		e := boolExpr(func(env Env) bool { return a(env) || b(env) })
		if n.op == "&&" {
			e = boolExpr(func(env Env) bool { return a(env) && b(env) })
		}
		e.next = earliest(x.next, y.next)
		return e, nil
	case "==", "!=", "<", "<=", ">", ">=":
		return c.comparison(n, x, y)
	case "in":
		return c.in(n, x, y)
	}
	return c.arithmetic(n, x, y)
}

// comparison compiles == != < <= > >=. A missing or mistyped value makes
// any comparison false, != included.
func (c *compiler) comparison(n *binaryNode, x, y expr) (expr, error) {
	dyn := x.typ == TypeDynamic || y.typ == TypeDynamic
	if !dyn && x.typ != y.typ {
		return expr{}, c.errorf(n, "cannot compare %s with %s", x.typ, y.typ)
	}
	ordered := n.op != "==" && n.op != "!="
	if ordered {
		for _, e := range []expr{x, y} {
			if e.typ == TypeBool || e.typ == TypeList {
				return expr{}, c.errorf(n, "%s orders numbers, strings, durations and times, not %s", n.op, e.typ)
			}
		}
	}
	test := cmpTest(n.op)
	typ := x.typ
	if typ == TypeDynamic {
		typ = y.typ
	}
	switch typ {
	case TypeNumber, TypeDuration, TypeTime:
		a, b := x.number(typ.kind()), y.number(typ.kind())
		e := boolExpr(func(env Env) bool {
			u, ok1 := a(env)
			v, ok2 := b(env)
			if !ok1 || !ok2 || u != u || v != v { // missing or NaN
				return false
			}
			switch {
			case u < v:
				return test(-1)
			case u > v:
				return test(1)
			}
			return test(0)
		})
		e.next = crossing(x, y, typ.kind())
		return e, nil
	case TypeString:
		if !ordered && (x.lit != nil || y.lit != nil) {
			// properties.category == "shoes": the common case, without
			// the generic comparison's calls.
			if x.lit != nil {
				x, y = y, x
			}
			a, want, eq := x.str(), y.lit.Str, n.op == "=="
			return boolExpr(func(env Env) bool {
				u, ok := a(env)
				return ok && (u == want) == eq
			}), nil
		}
		a, b := x.str(), y.str()
		return boolExpr(func(env Env) bool {
			u, ok1 := a(env)
			v, ok2 := b(env)
			return ok1 && ok2 && test(strings.Compare(u, v))
		}), nil
	}
	// Booleans, lists and two dynamic values: compare boxed values.
	a, b := x.value(), y.value()
	e := boolExpr(func(env Env) bool {
		u, v := a(env), b(env)
		if u.Kind == KindNull || v.Kind == KindNull {
			return false
		}
		if !ordered {
			if equal(u, v) {
				return test(0)
			}
			return test(1)
		}
		c, ok := compare(u, v)
		return ok && test(c)
	})
	e.next = earliest(x.next, y.next)
	return e, nil
}

// cmpTest turns a comparison operator into a test of compare's result.
func cmpTest(op string) func(int) bool {
	switch op {
	case "==":
		return func(c int) bool { return c == 0 }
	case "!=":
		return func(c int) bool { return c != 0 }
	case "<":
		return func(c int) bool { return c < 0 }
	case "<=":
		return func(c int) bool { return c <= 0 }
	case ">":
		return func(c int) bool { return c > 0 }
	}
	return func(c int) bool { return c >= 0 }
}

// in compiles x in list.
func (c *compiler) in(n *binaryNode, x, y expr) (expr, error) {
	if y.typ != TypeList && y.typ != TypeDynamic {
		return expr{}, c.errorf(n, "in needs a list on its right, not %s", y.typ)
	}
	if l, ok := n.y.(*listNode); ok && len(l.items) > 0 && x.typ != TypeDynamic {
		if it, _ := c.compile(l.items[0]); it.typ != TypeDynamic && it.typ != x.typ {
			return expr{}, c.errorf(n, "cannot look for %s in a list of %s", x.typ, pluralOf(it.typ))
		}
	}
	a, b := x.value(), y.value()
	e := boolExpr(func(env Env) bool {
		v, list := a(env), b(env)
		if list.Kind != KindList || v.Kind == KindNull {
			return false
		}
		for _, item := range list.List {
			if equal(v, item) {
				return true
			}
		}
		return false
	})
	e.next = earliest(x.next, y.next)
	return e, nil
}

func pluralOf(t Type) string {
	return strings.TrimPrefix(t.String(), "a ") + "s"
}

// arithmetic compiles + - * / %. Dynamic operands are numbers at run time
// (strings for + with a string), or the result has no value.
func (c *compiler) arithmetic(n *binaryNode, x, y expr) (expr, error) {
	xt, yt := arithmeticOperands(n.op, x.typ, y.typ)
	if n.op == "+" && xt == TypeString && yt == TypeString {
		a, b := x.str(), y.str()
		return expr{typ: TypeString, s: func(env Env) (string, bool) {
			u, ok1 := a(env)
			v, ok2 := b(env)
			return u + v, ok1 && ok2
		}}, nil
	}
	result, ok := arithmeticResult(n.op, xt, yt)
	if !ok {
		return expr{}, c.errorf(n, "cannot apply %s to %s and %s", n.op, x.typ, y.typ)
	}
	a, b := x.number(xt.kind()), y.number(yt.kind())
	lin := arithmeticLin(n.op, x, y, xt.kind(), yt.kind())
	next := earliest(x.next, y.next)
	if n.op == "%" && lin != nil {
		next = earliest(next, remainderNext(lin, b))
	}
	op := arithmeticOp(n.op)
	e := numExpr(result, func(env Env) (float64, bool) {
		u, ok1 := a(env)
		v, ok2 := b(env)
		if !ok1 || !ok2 {
			return 0, false
		}
		r := op(u, v)
		// Division by zero and the like give no value, so that no
		// comparison with them holds.
		return r, !math.IsNaN(r) && !math.IsInf(r, 0)
	})
	e.lin, e.next = lin, next
	return e, nil
}

// arithmeticOperands gives dynamic operands their run-time type: a number,
// or a string when added to a string.
func arithmeticOperands(op string, xt, yt Type) (Type, Type) {
	if xt == TypeDynamic {
		xt = TypeNumber
		if yt == TypeString && op == "+" {
			xt = TypeString
		}
	}
	if yt == TypeDynamic {
		yt = TypeNumber
		if xt == TypeString && op == "+" {
			yt = TypeString
		}
	}
	return xt, yt
}

// arithmeticResult is the type of x op y for numeric operands, false when
// the operator does not apply to them.
func arithmeticResult(op string, xt, yt Type) (Type, bool) {
	switch {
	case xt == TypeNumber && yt == TypeNumber:
		return TypeNumber, true
	case (op == "+" || op == "-") && xt == TypeDuration && yt == TypeDuration:
		return TypeDuration, true
	case (op == "+" || op == "-") && xt == TypeTime && yt == TypeDuration:
		return TypeTime, true
	case op == "+" && xt == TypeDuration && yt == TypeTime:
		return TypeTime, true
	case op == "-" && xt == TypeTime && yt == TypeTime:
		return TypeDuration, true
	case (op == "*" || op == "/") && xt == TypeDuration && yt == TypeNumber:
		return TypeDuration, true
	case op == "*" && xt == TypeNumber && yt == TypeDuration:
		return TypeDuration, true
	case op == "/" && xt == TypeDuration && yt == TypeDuration:
		return TypeNumber, true
	}
	return 0, false
}

// remainderNext is when a remainder whose dividend moves with time jumps
// back: when the dividend reaches a multiple of the divisor.
func remainderNext(lin linFunc, divisor func(Env) (float64, bool)) nextFunc {
	return func(env TimeEnv) float64 {
		r, s, ok := lin(env)
		v, _ := divisor(env)
		if !ok || s == 0 {
			return math.Inf(1)
		}
		gap := math.Abs(v) - math.Abs(r)
		if s < 0 {
			gap = math.Abs(r)
		}
		return unixSeconds(env.Now()) + gap/math.Abs(s)
	}
}

// arithmeticOp is the function of an arithmetic operator.
func arithmeticOp(op string) func(u, v float64) float64 {
	switch op {
	case "+":
		return func(u, v float64) float64 { return u + v }
	case "-":
		return func(u, v float64) float64 { return u - v }
	case "*":
		return func(u, v float64) float64 { return u * v }
	case "/":
		return func(u, v float64) float64 { return u / v }
	}
	return math.Mod
}
