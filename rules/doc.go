// Package rules owns tailor's expression language, the one language of
// aggregate filters, segment rules and offer eligibility: lexing, parsing,
// type checking, and compiling to closures that evaluate a rule against a
// profile without reflection.
//
// A rule is parsed and checked when the configuration loads; a bad rule is
// an *Error naming the rule, the line and column, and the problem. Each
// compiled Rule records what it reads (Deps), so the engine re-evaluates
// only the rules an event can change.
//
// The language:
//
//	literals     42  3.5  "text"  'text'  true  false  7d  1h  30m  15s  [1, 2, 3]
//	operators    ||  &&  !  ==  !=  <  <=  >  >=  in  +  -  *  /  %  ( )
//	profile      traits.age  traits["first name"]  properties.category  context.page.url
//	             an aggregate by its name (cart_adds_1h)  rfm.r rfm.f rfm.m
//	             rfm.recency rfm.frequency rfm.monetary
//	functions    now()  since("Order Completed")  duration("1h")  interest("shoes")
//	             segment("champions")  consent("marketing")  has(traits.email)
//	             contains(s, sub)  startsWith(s, prefix)  lower(s)
//
// Durations are written as in the configuration (package duration): a
// number and a unit (ns, us, ms, s, m, h, d, w), or several added up
// ("1d12h"), as a literal or in duration("..."). They compare with
// durations and add to times; since(...) is the time
// since the profile's last event of that name, longer than any duration
// when there was none. A trait or property that is
// missing, or of another type than the comparison needs, makes the
// comparison false, never an error at run time.
//
// The files: lex.go and parse.go turn source into a syntax tree;
// compile.go holds the types, the schema, Deps and the compiler's
// dispatch over names and fields; functions.go the built-in functions;
// operators.go the operators; time.go how a compiled rule moves with the
// clock alone (NextChange); value.go the run-time Value.
package rules
