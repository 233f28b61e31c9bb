package rules

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/internal/duration"
)

var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// fakeEnv is a profile for tests.
type fakeEnv struct {
	traits     map[string]Value
	props      map[string]Value
	context    map[string]Value
	aggregates []Value
	events     map[string]time.Time
	rfm        [6]Value
	interests  map[string]float64
	segments   []bool
	consents   map[string]bool
	at         time.Time // Now, when set
	aggNext    []float64 // AggregateNext, Unix seconds
	rfmNext    float64   // RFMNext of rfm.recency
}

func (e *fakeEnv) Now() time.Time {
	if !e.at.IsZero() {
		return e.at
	}
	return now
}
func (e *fakeEnv) AggregateNext(i int) float64 { return e.aggNext[i] }
func (e *fakeEnv) RFMNext(f int) float64 {
	if f != RFMRecency {
		return math.Inf(1)
	}
	return e.rfmNext
}
func (e *fakeEnv) Trait(name string) Value      { return e.traits[name] }
func (e *fakeEnv) Property(path []string) Value { return e.props[strings.Join(path, ".")] }
func (e *fakeEnv) Context(path []string) Value  { return e.context[strings.Join(path, ".")] }
func (e *fakeEnv) Aggregate(i int) (float64, bool) {
	v := e.aggregates[i]
	return v.Num, v.Kind != KindNull
}
func (e *fakeEnv) LastEvent(name string) (time.Time, bool) {
	t, ok := e.events[name]
	return t, ok
}
func (e *fakeEnv) RFM(f int) (float64, bool)        { return e.rfm[f].Num, e.rfm[f].Kind != KindNull }
func (e *fakeEnv) Interest(category string) float64 { return e.interests[category] }
func (e *fakeEnv) Segment(i int) bool               { return e.segments[i] }
func (e *fakeEnv) Consent(purpose string) bool      { return e.consents[purpose] }

var schema = &Schema{
	Aggregates: []Field{
		{Name: "cart_adds_1h", Type: TypeNumber, Expires: true},
		{Name: "shoe_views_7d", Type: TypeNumber, Expires: true},
		{Name: "first_order", Type: TypeTime},
		{Name: "empty_sum", Type: TypeNumber},
	},
	Segments: []string{"champions", "vip"},
}

func env() *fakeEnv {
	return &fakeEnv{
		traits: map[string]Value{
			"country": String("FR"), "age": Number(34), "email": String("Ada@Example.com"),
			"vip": Bool(true), "tags": {Kind: KindList, List: []Value{String("a"), String("b")}},
		},
		props:      map[string]Value{"category": String("shoes"), "price": Number(80), "item.size": Number(42)},
		context:    map[string]Value{"page.url": String("https://shop.example/c/shoes")},
		aggregates: []Value{Number(2), Number(5), Time(now.Add(-48 * time.Hour)), {}},
		events:     map[string]time.Time{"Order Completed": now.Add(-3 * time.Hour), "Product Added": now.Add(-20 * time.Minute)},
		rfm:        [6]Value{Number(5), Number(4), Number(3), Number(12), Number(9), Number(640.5)},
		interests:  map[string]float64{"shoes": 0.62},
		segments:   []bool{true, false},
		consents:   map[string]bool{"personalisation": true},
		aggNext:    []float64{unixSeconds(now.Add(5 * time.Minute)), unixSeconds(now.Add(6 * time.Hour)), math.Inf(1), math.Inf(1)},
		rfmNext:    unixSeconds(now.Add(7 * time.Hour)),
	}
}

func TestEval(t *testing.T) {
	tests := []struct {
		src  string
		want string // Value.String() of the result
	}{
		{`1 + 2 * 3`, "7"},
		{`(1 + 2) * 3`, "9"},
		{`10 % 4 - -1`, "3"},
		{`7 / 2`, "3.5"},
		{`1 / 0`, "null"},
		{`"a" + "b"`, `"ab"`},
		{`true && !false`, "true"},
		{`traits.country == "FR" && traits.age >= 18`, "true"},
		{`traits.country == "DE" || traits.age < 18`, "false"},
		{`traits["country"] in ["FR", "BE"]`, "true"},
		{`traits.missing == "x"`, "false"},
		{`traits.missing != "x"`, "false"},
		{`traits.country != "DE"`, "true"},
		{`traits.age > "30"`, "false"},
		{`has(traits.email) && !has(traits.phone)`, "true"},
		{`lower(traits.email)`, `"ada@example.com"`},
		{`contains(lower(traits.email), "@example.")`, "true"},
		{`startsWith(context.page.url, "https://shop.example/")`, "true"},
		{`"b" in traits.tags`, "true"},
		{`properties.category == "shoes" && properties.price * 2 > 150`, "true"},
		{`properties.item.size`, "42"},
		{`cart_adds_1h > 0 && since("Order Completed") > duration("1h")`, "true"},
		{`since("Product Added") < 30m`, "true"},
		{`since("Never Happened") > 365d`, "true"},
		{`since("Never Happened") < 1h`, "false"},
		{`since("Order Completed")`, "3h0m0s"},
		{`now() - first_order > 1d`, "true"},
		{`first_order + 2d == now()`, "true"},
		{`2 * 1h + 30m`, "2h30m0s"},
		{`1w / 1d`, "7"},
		{`2w == 14d && 1d12h == 36h && 1.5h == 90m && 1h30m == 90m`, "true"},
		{`duration("2w") == 2w && duration("1d12h") == 1d12h && duration("250ms") * 4 == 1s`, "true"},
		{`empty_sum > 0`, "false"},
		{`empty_sum + 1`, "null"},
		{`rfm.r >= 4 && rfm.f >= 4 && rfm.m >= 3`, "true"},
		{`rfm.recency <= 30 && rfm.monetary > 500`, "true"},
		{`interest("shoes") > 0.3 && interest("bags") == 0`, "true"},
		{`segment("champions") && !segment("vip")`, "true"},
		{`consent("personalisation") && !consent("marketing")`, "true"},
		{`traits.vip`, "true"},
		{`-shoe_views_7d`, "-5"},
		{`'single' == "single"`, "true"},
		{`"a\"b"`, `"a\"b"`},
		{"traits.age >= 18 &&\n  traits.country == 'FR'", "true"},
	}
	e := env()
	for _, tc := range tests {
		r, err := Compile("t", tc.src, schema, TypeDynamic)
		if err != nil {
			t.Errorf("%s: %v", tc.src, err)
			continue
		}
		if got := r.Eval(e).String(); got != tc.want {
			t.Errorf("%s = %s, want %s", tc.src, got, tc.want)
		}
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		src  string
		want string
	}{
		{``, `rule "r" at 1:1: empty rule`},
		{`traits.age >`, `rule "r" at 1:13: unexpected end of rule`},
		{`(1 + 2`, `rule "r" at 1:7: expected ")", found end of rule`},
		{`1 2`, `rule "r" at 1:3: unexpected "2" after a complete expression`},
		{`traits.age >= 18 &&` + "\n" + `  sinse("x") > 1h`, `rule "r" at 2:3: unknown function sinse()`},
		{`cart_adds > 0`, `rule "r" at 1:1: unknown name "cart_adds": not an aggregate, and not traits, properties, context or rfm`},
		{`traits > 1`, `rule "r" at 1:1: traits needs a field name: traits.name`},
		{`rfm.x > 1`, `rule "r" at 1:5: unknown field rfm.x: want r, f, m, recency, frequency or monetary`},
		{`rfm > 1`, `rule "r" at 1:1: rfm needs a field: rfm.r, rfm.f, rfm.m, rfm.recency, rfm.frequency or rfm.monetary`},
		{`cart_adds_1h > "2"`, `rule "r" at 1:14: cannot compare a number with a string`},
		{`cart_adds_1h > 1h`, `rule "r" at 1:14: cannot compare a number with a duration`},
		{`cart_adds_1h && true`, `rule "r" at 1:14: && needs true/false on both sides, not a number`},
		{`!cart_adds_1h`, `rule "r" at 1:1: ! needs true/false, not a number`},
		{`"a" - "b"`, `rule "r" at 1:5: cannot apply - to a string and a string`},
		{`now() + 1`, `rule "r" at 1:7: cannot apply + to a time and a number`},
		{`since(traits.x) > 1h`, `rule "r" at 1:14: since() takes a quoted name`},
		{`since("a", "b")`, `rule "r" at 1:1: since() takes 1 argument(s), got 2`},
		{`segment("nope")`, `rule "r" at 1:9: unknown segment "nope"`},
		{`duration("soon") > 1h`, `rule "r" at 1:10: invalid duration "soon": "soon" does not start with a number; want ` + duration.Syntax},
		{`5y > 1h`, `rule "r" at 1:1: invalid duration "5y": unknown unit in "y"; want ` + duration.Syntax},
		{`duration("-1h") > 1h`, `rule "r" at 1:10: invalid duration "-1h": "-1h" does not start with a number; want ` + duration.Syntax},
		{`15251w > 1h`, `rule "r" at 1:1: invalid duration "15251w": longer than 292 years; want ` + duration.Syntax},
		{`"open`, `rule "r" at 1:1: unterminated string`},
		{`"\q"`, `rule "r" at 1:1: unknown escape \q in string`},
		{`traits.a # 1`, `rule "r" at 1:10: unexpected character '#'`},
		{`1 in 2`, `rule "r" at 1:3: in needs a list on its right, not a number`},
		{`1 in ["a"]`, `rule "r" at 1:3: cannot look for a number in a list of strings`},
		{`[1, "a"]`, `rule "r" at 1:5: list items must all be of one type: a string after a number`},
		{`traits.a.b == 1`, `rule "r" at 1:10: traits.a.b: nested trait fields are not supported; traits are read whole`},
		{`lower(1)`, `rule "r" at 1:7: lower() takes strings, not a number`},
		{`has(1)`, `rule "r" at 1:5: has() takes a field such as traits.email`},
		{`(1).x`, `rule "r" at 1:5: fields can be read from traits, properties, context and rfm only`},
		{`traits[1]`, `rule "r" at 1:8: expected a quoted field name in [], found "1"`},
		{strings.Repeat("(", 200) + "1" + strings.Repeat(")", 200), `rule "r" at 1:101: rule nested more than 100 deep`},
	}
	for _, tc := range tests {
		_, err := Compile("r", tc.src, schema, TypeDynamic)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q:\n got %v\nwant %s", tc.src, err, tc.want)
		}
	}
	if _, err := Compile("seg", `cart_adds_1h + 1`, schema, TypeBool); err == nil || err.Error() != `rule "seg" at 1:14: the rule must give true/false, but gives a number` {
		t.Errorf("want-bool check: %v", err)
	}
}

func TestDeps(t *testing.T) {
	r, err := Compile("d", `traits.country == "FR" && properties.price > 10 && context.page.url != "" && cart_adds_1h > 0 &&
		since("Order Completed") > 1h && segment("vip") && interest("shoes") > 0.1 && consent("ads") && rfm.r > 3 && traits.age > 1 && first_order < now()`, schema, TypeBool)
	if err != nil {
		t.Fatal(err)
	}
	want := Deps{
		Traits: []string{"age", "country"}, Properties: []string{"price"}, Context: []string{"page"},
		Events: []string{"Order Completed"}, Aggregates: []int{0, 2}, Segments: []int{1},
		Interests: []string{"shoes"}, Consents: []string{"ads"}, RFM: true, RFMScores: true, Clock: true, Now: true,
	}
	if !reflect.DeepEqual(r.Deps, want) {
		t.Errorf("deps\n got %+v\nwant %+v", r.Deps, want)
	}
	r, _ = Compile("d", `since("Order Completed") > 1h`, schema, TypeBool)
	if !r.Deps.Clock || r.Deps.Now {
		t.Errorf("since() alone: %+v, want Clock and not Now", r.Deps)
	}
	r, _ = Compile("d", `traits.age > 18`, schema, TypeBool)
	if r.Deps.Clock || len(r.Deps.Aggregates) > 0 {
		t.Errorf("a trait rule depends on the clock or aggregates: %+v", r.Deps)
	}
}

// TestNextChange checks when rules say time alone may change them, and
// that the result really flips there and not before.
func TestNextChange(t *testing.T) {
	tests := []struct {
		src   string
		after time.Duration // from now; 0: time alone changes nothing
		flips bool          // the result differs at the instant
	}{
		// Product Added was 20 minutes ago.
		{`since("Product Added") < 1h`, 40 * time.Minute, true},
		{`since("Product Added") >= 30m`, 10 * time.Minute, true},
		{`!(since("Product Added") < 1h)`, 40 * time.Minute, true},
		{`since("Product Added") / 2 > 15m`, 10 * time.Minute, true},
		{`-since("Product Added") < -30m`, 10 * time.Minute, true},
		{`since("Product Added") + 1h > since("Order Completed")`, 0, false}, // parallel lines
		{`now() - first_order > 72h`, 24 * time.Hour, true},
		{`now() > first_order + 3d`, 24 * time.Hour, true},
		// A crossing in the past, and a bound never reached.
		{`since("Order Completed") > 2h`, 0, false},
		{`since("Never") < 1h`, 0, false},
		// Jumps: an event leaving a window, another day of recency.
		{`cart_adds_1h > 0`, 5 * time.Minute, false},
		{`shoe_views_7d > 0 && since("Product Added") < 1h`, 40 * time.Minute, true},
		{`cart_adds_1h > 0 || since("Product Added") < 1h`, 5 * time.Minute, false},
		{`rfm.recency > 30`, 7 * time.Hour, false},
		{`cart_adds_1h in [1, 2]`, 5 * time.Minute, false},
		// Nothing that moves with time.
		{`traits.age > 18`, 0, false},
		{`empty_sum > 3 && first_order < now() - 1d`, 0, false}, // crossed a day ago
		{`rfm.r >= 4 && interest("shoes") > 0.3`, 0, false},
	}
	for _, tt := range tests {
		r, err := Compile("t", tt.src, schema, TypeBool)
		if err != nil {
			t.Fatalf("%s: %v", tt.src, err)
		}
		e := env()
		at, ok := r.NextChange(e)
		if tt.after == 0 {
			if ok {
				t.Errorf("%s: next change at now+%v, want none", tt.src, at.Sub(now))
			}
			continue
		}
		want := now.Add(tt.after)
		if !ok || at.Before(want) || at.Sub(want) > 2*time.Millisecond {
			t.Errorf("%s: next change at %v (ok %v), want now+%v", tt.src, at.Sub(now), ok, tt.after)
			continue
		}
		if !tt.flips {
			continue
		}
		before := r.Match(e)
		e.at = at.Add(-2 * time.Millisecond)
		if r.Match(e) != before {
			t.Errorf("%s: flipped before %v", tt.src, tt.after)
		}
		e.at = at
		if r.Match(e) == before {
			t.Errorf("%s: still %v at now+%v", tt.src, before, at.Sub(now))
		}
	}
}

// FuzzCompile feeds arbitrary rules to the compiler and evaluates what
// compiles: no panic, no hang, errors are *Error with a position.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		`traits.country == "FR" && traits.age >= 18`,
		`cart_adds_1h > 0 && since("Order Completed") > duration("1h")`,
		`rfm.r >= 4 || segment("vip") || "x" in traits.tags`,
		`now() - first_order > 2d * 3`, `since("x") < 1w2d12h + duration("1.5h")`, `-(-(1))`, `[1,2,3]`, `lower(traits.a) + "b"`,
	} {
		f.Add(s)
	}
	e := env()
	f.Fuzz(func(t *testing.T, src string) {
		r, err := Compile("f", src, schema, TypeDynamic)
		if err != nil {
			if ce, ok := err.(*Error); !ok || ce.Pos.Line < 1 || ce.Pos.Col < 1 {
				t.Fatalf("error %T %v", err, err)
			}
			return
		}
		r.Eval(e)
		if at, ok := r.NextChange(e); ok && at.Before(now) {
			t.Fatalf("next change %v is before now", at)
		}
	})
}

// BenchmarkTypicalRule is the reference rule: every clause true.
func BenchmarkTypicalRule(b *testing.B) {
	r, err := Compile("b", `rfm.recency <= 30 && rfm.frequency >= 5 && rfm.monetary >= 500`, schema, TypeBool)
	if err != nil {
		b.Fatal(err)
	}
	e := env()
	e.rfm[RFMFrequency] = Number(9)
	b.ReportAllocs()
	for b.Loop() {
		if !r.Match(e) {
			b.Fatal("no match")
		}
	}
}

// BenchmarkCompile is the cost of lexing, parsing, checking and compiling
// a rule that uses most of the language, as a config load or reload pays it
// per rule.
func BenchmarkCompile(b *testing.B) {
	const src = `(since("Order Completed") > 1d12h || lower(traits.plan) == 'gold') && segment("vip") &&
		interest("shoes") > 0.1 && consent("ads") && rfm.r >= 3 && traits.age in [18, 21, 30] &&
		contains(context.page.url, "/sale") && cart_adds_1h * 2 + 1 > 3 && first_order < now() - 7d`
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile("b", src, schema, TypeBool); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDurationsAsConfig checks that the rule language reads durations as
// the configuration does (package duration): duration("...") accepts and
// refuses the same strings, and a literal of the same text is the same.
func TestDurationsAsConfig(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"90s", true}, {"15m", true}, {"24h", true}, {"7d", true}, {"2w", true},
		{"1d12h", true}, {"1w2d3h4m5s", true}, {"1.5h", true}, {"250ms", true}, {"0s", true},
		{"1y", false}, {"1", false}, {"-1h", false}, {"1h30", false}, {"15251w", false}, {"1 h", false},
	} {
		want, werr := duration.Parse(tc.in)
		if (werr == nil) != tc.ok {
			t.Fatalf("duration.Parse(%q): %v", tc.in, werr)
		}
		srcs := []string{`duration("` + tc.in + `")`}
		if !strings.HasPrefix(tc.in, "-") { // -1h is a negated literal
			srcs = append(srcs, tc.in)
		}
		for _, src := range srcs {
			r, err := Compile("r", src, schema, TypeDuration)
			if !tc.ok {
				if err == nil {
					t.Errorf("%s compiles; want an error as duration.Parse gives", src)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s: %v", src, err)
				continue
			}
			if got := r.Eval(env()).String(); got != want.String() {
				t.Errorf("%s = %s, want %s", src, got, want)
			}
		}
	}
}
