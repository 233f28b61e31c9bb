package rules

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Type is the static type of an expression. TypeDynamic is a trait,
// property or context field, whose kind is known only at run time.
type Type uint8

// Static types.
const (
	TypeDynamic Type = iota
	TypeBool
	TypeNumber
	TypeString
	TypeDuration
	TypeTime
	TypeList
)

func (t Type) String() string {
	switch t {
	case TypeBool:
		return "true/false"
	case TypeNumber:
		return "a number"
	case TypeString:
		return "a string"
	case TypeDuration:
		return "a duration"
	case TypeTime:
		return "a time"
	case TypeList:
		return "a list"
	}
	return "a profile field"
}

func (t Type) kind() Kind {
	switch t {
	case TypeBool:
		return KindBool
	case TypeNumber:
		return KindNumber
	case TypeString:
		return KindString
	case TypeDuration:
		return KindDuration
	case TypeTime:
		return KindTime
	case TypeList:
		return KindList
	}
	return KindNull
}

// RFM fields, the indexes Env.RFM is asked for.
const (
	RFMRecencyScore   = iota // rfm.r: 1-5
	RFMFrequencyScore        // rfm.f: 1-5
	RFMMonetaryScore         // rfm.m: 1-5
	RFMRecency               // rfm.recency: days since the last order
	RFMFrequency             // rfm.frequency: orders in the horizon
	RFMMonetary              // rfm.monetary: revenue in the horizon
)

func rfmField(name string) (int, bool) {
	switch name {
	case "r":
		return RFMRecencyScore, true
	case "f":
		return RFMFrequencyScore, true
	case "m":
		return RFMMonetaryScore, true
	case "recency":
		return RFMRecency, true
	case "frequency":
		return RFMFrequency, true
	case "monetary":
		return RFMMonetary, true
	}
	return 0, false
}

// Env is what a rule reads when it is evaluated: one profile (and, for
// eligibility, the request's context) at one instant. Names the schema
// knows are passed as indexes, so evaluation needs no lookup by name.
// Numbers, durations (seconds) and times (Unix seconds) travel as float64
// with ok false for "no value".
type Env interface {
	Now() time.Time
	Trait(name string) Value
	Property(path []string) Value
	Context(path []string) Value
	Aggregate(index int) (float64, bool)
	// LastEvent returns the time of the profile's last event of that name.
	LastEvent(name string) (time.Time, bool)
	RFM(field int) (float64, bool)
	Interest(category string) float64
	Segment(index int) bool
	Consent(purpose string) bool
}

// Field is a name the schema declares, with its type.
type Field struct {
	Name string
	Type Type
	// Expires says the value changes with time alone, as events leave a
	// sliding window.
	Expires bool
}

// Schema is what rules may refer to by name.
type Schema struct {
	// Aggregates are the declared aggregates; a rule names them bare.
	Aggregates []Field
	// Segments are the segment names segment("...") accepts.
	Segments []string
	// RFMExpires says RFM values count the orders of a horizon only, so
	// that rfm.* change with time alone as orders leave it.
	RFMExpires bool
}

// Deps records what a rule reads, so that an event re-evaluates only the
// rules whose inputs it changed, and a rule reading the clock is woken up
// by time alone.
type Deps struct {
	Traits     []string // trait names
	Properties []string // top-level property names
	Context    []string // top-level context names
	Events     []string // since() event names
	Aggregates []int    // schema indexes
	Segments   []int    // schema indexes
	Interests  []string // categories
	Consents   []string // purposes
	RFM        bool
	// RFMScores: the rule reads rfm.r, rfm.f or rfm.m, which follow the
	// population's quintiles.
	RFMScores bool
	// Clock: the result can change with time alone, no event arriving:
	// the rule reads now(), since(), a windowed aggregate or rfm.recency.
	Clock bool
	// Now: the rule calls now() itself, so its result may change with
	// time even over a profile that has seen nothing (since() of an
	// event never seen, an empty window and rfm.* without orders do not).
	Now bool
}

func addName(list []string, name string) []string {
	if slices.Contains(list, name) {
		return list
	}
	return append(list, name)
}

func addIndex(list []int, i int) []int {
	if slices.Contains(list, i) {
		return list
	}
	return append(list, i)
}

// Rule is a compiled rule.
type Rule struct {
	Name   string
	Source string
	Type   Type
	Deps   Deps
	e      expr
}

// Eval evaluates the rule.
func (r *Rule) Eval(env Env) Value { return r.e.value()(env) }

// Match evaluates a true/false rule; anything but true is false.
func (r *Rule) Match(env Env) bool { return r.e.boolean()(env) }

// Compile parses and type-checks src as rule name against schema, and
// compiles it. want is the type the rule must have (TypeDynamic accepts
// any): segment and eligibility rules want TypeBool.
func Compile(name, src string, schema *Schema, want Type) (*Rule, error) {
	tree, err := parse(name, src)
	if err != nil {
		return nil, err
	}
	c := &compiler{rule: name, schema: schema}
	e, err := c.compile(tree)
	if err != nil {
		return nil, err
	}
	if want != TypeDynamic && e.typ != want && !(want == TypeBool && e.typ == TypeDynamic) {
		return nil, &Error{Rule: name, Pos: tree.position(), Msg: fmt.Sprintf("the rule must give %s, but gives %s", want, e.typ)}
	}
	for _, d := range []*[]string{&c.deps.Traits, &c.deps.Properties, &c.deps.Context, &c.deps.Events, &c.deps.Interests, &c.deps.Consents} {
		sort.Strings(*d)
	}
	sort.Ints(c.deps.Aggregates)
	sort.Ints(c.deps.Segments)
	return &Rule{Name: name, Source: src, Type: e.typ, Deps: c.deps, e: e}, nil
}

type compiler struct {
	rule   string
	schema *Schema
	deps   Deps
}

// expr is a compiled expression: one evaluator, by its static type. Typed
// evaluators keep the common rules (numbers compared with numbers, joined
// by && and ||) free of boxing.
type expr struct {
	typ Type
	b   func(Env) bool            // TypeBool
	n   func(Env) (float64, bool) // TypeNumber, TypeDuration, TypeTime
	s   func(Env) (string, bool)  // TypeString
	v   func(Env) Value           // TypeDynamic, TypeList
	lit *Value                    // a constant's value
	// How time alone moves the value (see time.go); nil when it does not.
	lin  linFunc  // numbers moving with the clock
	next nextFunc // the next jump or crossing
}

func boolExpr(f func(Env) bool) expr { return expr{typ: TypeBool, b: f} }

func numExpr(t Type, f func(Env) (float64, bool)) expr { return expr{typ: t, n: f} }

// value returns the expression as a Value evaluator.
func (e expr) value() func(Env) Value {
	switch {
	case e.b != nil:
		f := e.b
		return func(env Env) Value { return Bool(f(env)) }
	case e.n != nil:
		f, k := e.n, e.typ.kind()
		return func(env Env) Value {
			x, ok := f(env)
			if !ok {
				return Value{}
			}
			return Value{Kind: k, Num: x}
		}
	case e.s != nil:
		f := e.s
		return func(env Env) Value {
			x, ok := f(env)
			if !ok {
				return Value{}
			}
			return String(x)
		}
	}
	return e.v
}

// boolean returns the expression as a bool evaluator (dynamic values are
// true only when they are the boolean true).
func (e expr) boolean() func(Env) bool {
	if e.b != nil {
		return e.b
	}
	v := e.value()
	return func(env Env) bool { return v(env).True() }
}

// number returns a number-like evaluator; a dynamic value counts only when
// it has kind k.
func (e expr) number(k Kind) func(Env) (float64, bool) {
	if e.n != nil {
		return e.n
	}
	v := e.value()
	return func(env Env) (float64, bool) {
		x := v(env)
		return x.Num, x.Kind == k
	}
}

// str returns a string evaluator; a dynamic value counts only when it is a
// string.
func (e expr) str() func(Env) (string, bool) {
	if e.s != nil {
		return e.s
	}
	v := e.value()
	return func(env Env) (string, bool) {
		x := v(env)
		return x.Str, x.Kind == KindString
	}
}

func (c *compiler) errorf(n node, format string, a ...any) error {
	return &Error{Rule: c.rule, Pos: n.position(), Msg: fmt.Sprintf(format, a...)}
}

func (c *compiler) compile(n node) (expr, error) {
	switch n := n.(type) {
	case *litNode:
		return constant(n.val), nil
	case *listNode:
		return c.list(n)
	case *identNode:
		return c.ident(n)
	case *memberNode:
		return c.member(n)
	case *callNode:
		return c.call(n)
	case *unaryNode:
		return c.unary(n)
	case *binaryNode:
		return c.binary(n)
	}
	return expr{}, c.errorf(n, "unsupported expression")
}

func constant(v Value) expr {
	switch v.Kind {
	case KindBool:
		b := v.True()
		return boolExpr(func(Env) bool { return b })
	case KindNumber, KindDuration, KindTime:
		x := v.Num
		return numExpr(typeOf(v.Kind), func(Env) (float64, bool) { return x, true })
	case KindString:
		s := v.Str
		return expr{typ: TypeString, s: func(Env) (string, bool) { return s, true }, lit: &v}
	}
	return expr{typ: typeOf(v.Kind), v: func(Env) Value { return v }}
}

func typeOf(k Kind) Type {
	switch k {
	case KindBool:
		return TypeBool
	case KindNumber:
		return TypeNumber
	case KindString:
		return TypeString
	case KindDuration:
		return TypeDuration
	case KindTime:
		return TypeTime
	case KindList:
		return TypeList
	}
	return TypeDynamic
}

func (c *compiler) list(n *listNode) (expr, error) {
	items := make([]func(Env) Value, len(n.items))
	var itemType Type
	for i, item := range n.items {
		e, err := c.compile(item)
		if err != nil {
			return expr{}, err
		}
		if i > 0 && e.typ != itemType {
			return expr{}, c.errorf(item, "list items must all be of one type: %s after %s", e.typ, itemType)
		}
		itemType = e.typ
		items[i] = e.value()
	}
	return expr{typ: TypeList, v: func(env Env) Value {
		v := Value{Kind: KindList, List: make([]Value, len(items))}
		for i, item := range items {
			v.List[i] = item(env)
		}
		return v
	}}, nil
}

func (c *compiler) ident(n *identNode) (expr, error) {
	switch n.name {
	case "traits", "properties", "context":
		return expr{}, c.errorf(n, "%s needs a field name: %s.name", n.name, n.name)
	case "rfm":
		return expr{}, c.errorf(n, "rfm needs a field: rfm.r, rfm.f, rfm.m, rfm.recency, rfm.frequency or rfm.monetary")
	}
	for i, a := range c.schema.Aggregates {
		if a.Name == n.name {
			c.deps.Aggregates = addIndex(c.deps.Aggregates, i)
			e := numExpr(a.Type, func(env Env) (float64, bool) { return env.Aggregate(i) })
			if a.Expires {
				c.deps.Clock = true
				e.next = func(env TimeEnv) float64 { return env.AggregateNext(i) }
			}
			return e, nil
		}
	}
	return expr{}, c.errorf(n, "unknown name %q: not an aggregate, and not traits, properties, context or rfm", n.name)
}

// member compiles traits.x, properties.a.b, context.page.url and rfm.x.
func (c *compiler) member(n *memberNode) (expr, error) {
	path := []string{n.name}
	x := n.x
	for {
		m, ok := x.(*memberNode)
		if !ok {
			break
		}
		path = append([]string{m.name}, path...)
		x = m.x
	}
	root, ok := x.(*identNode)
	if !ok {
		return expr{}, c.errorf(n, "fields can be read from traits, properties, context and rfm only")
	}
	switch root.name {
	case "traits":
		if len(path) > 1 {
			return expr{}, c.errorf(n, "traits.%s: nested trait fields are not supported; traits are read whole", strings.Join(path, "."))
		}
		name := path[0]
		c.deps.Traits = addName(c.deps.Traits, name)
		return expr{typ: TypeDynamic, v: func(env Env) Value { return env.Trait(name) }}, nil
	case "properties":
		c.deps.Properties = addName(c.deps.Properties, path[0])
		return expr{typ: TypeDynamic, v: func(env Env) Value { return env.Property(path) }}, nil
	case "context":
		c.deps.Context = addName(c.deps.Context, path[0])
		return expr{typ: TypeDynamic, v: func(env Env) Value { return env.Context(path) }}, nil
	case "rfm":
		f, ok := rfmField(path[0])
		if !ok || len(path) > 1 {
			return expr{}, c.errorf(n, "unknown field rfm.%s: want r, f, m, recency, frequency or monetary", strings.Join(path, "."))
		}
		c.deps.RFM = true
		c.deps.RFMScores = c.deps.RFMScores || f <= RFMMonetaryScore
		e := numExpr(TypeNumber, func(env Env) (float64, bool) { return env.RFM(f) })
		if f == RFMRecency || c.schema.RFMExpires {
			c.deps.Clock = true
			e.next = func(env TimeEnv) float64 { return env.RFMNext(f) }
		}
		return e, nil
	}
	return expr{}, c.errorf(root, "unknown name %q: fields can be read from traits, properties, context and rfm", root.name)
}
