package state

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/valyala/fastjson"

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/money"
	"github.com/tailorcdp/tailor/rules"
)

// AggregateConfig declares one aggregate, as the configuration gives it.
type AggregateConfig struct {
	Name string
	// Event is the track event name counted; "*" counts every track call.
	Event string
	// Where, when set, is a rule the event must match (properties.*,
	// context.*, traits.*).
	Where string
	// Func is count, sum, min, max, distinct, first_seen or last_seen.
	Func string
	// Property is the property summed, compared or counted distinct, as a
	// dotted path ("total", "product.category"), or several separated by
	// commas ("revenue,total"): the first one the event has (a number,
	// for sum, min and max; not null, for distinct) is read.
	Property string
	// Window is the sliding window of event time; 0 means all time.
	Window time.Duration
}

// Aggregate is a compiled aggregate.
type Aggregate struct {
	Name  string
	Event string
	Where *rules.Rule // nil: every event of the name
	Spec  WindowSpec
	// Property holds the dotted paths of the property read, split at the
	// dots: the first one an event has is read (nil: none read).
	Property [][]string
	// id identifies the aggregate's state in a profile: the name and what
	// the state means (aggregateID), so that a change of function or
	// window starts the aggregate afresh.
	id uint64
	// definition identifies the whole declaration, for the fingerprints
	// of the segments reading it.
	definition uint64
	index      int         // in List
	model      *Aggregates // the aggregates it was compiled with
}

// Aggregates are the compiled aggregates of a configuration.
type Aggregates struct {
	list     []*Aggregate
	byEvent  map[string][]*Aggregate // "*" excluded
	anyEvent []*Aggregate            // "*": every track call
	ids      map[uint64]*Aggregate
	names    map[uint64]*Aggregate // by nameHash
}

// CompileAggregates checks and compiles aggregate declarations. Every
// problem is reported, each naming its aggregate.
func CompileAggregates(decls []AggregateConfig) (*Aggregates, error) {
	a := &Aggregates{byEvent: make(map[string][]*Aggregate), ids: make(map[uint64]*Aggregate), names: make(map[uint64]*Aggregate)}
	var errs []error
	sorted := slices.Clone(decls)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	seen := make(map[string]bool)
	for _, d := range sorted {
		agg, err := compileAggregate(d)
		if err == nil && seen[d.Name] {
			err = fmt.Errorf("aggregate %q is declared twice", d.Name)
		}
		if err == nil {
			if other, ok := a.names[agg.nameHash()]; ok { // one pair of names in about 500 billion
				err = fmt.Errorf("aggregate %q: its name hashes like %q's in stored profiles; rename one", d.Name, other.Name)
			}
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		seen[d.Name] = true
		a.names[agg.nameHash()] = agg
		a.ids[agg.id] = agg
		agg.index, agg.model = len(a.list), a
		a.list = append(a.list, agg)
		if agg.Event == "*" {
			a.anyEvent = append(a.anyEvent, agg)
		} else {
			a.byEvent[agg.Event] = append(a.byEvent[agg.Event], agg)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return a, nil
}

func compileAggregate(d AggregateConfig) (*Aggregate, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("aggregate %q: %s", d.Name, fmt.Sprintf(format, args...))
	}
	if d.Name == "" || strings.ContainsAny(d.Name, " .\"'()") {
		return nil, fail("a name must be a single word (letters, digits, _)")
	}
	if d.Event == "" {
		return nil, fail(`event is required (a track event name, or "*" for every track call)`)
	}
	fn, ok := ParseAggregateFunc(d.Func)
	if !ok {
		return nil, fail("fn %q: want count, sum, min, max, distinct, first_seen or last_seen", d.Func)
	}
	needsProperty := fn == Sum || fn == Min || fn == Max || fn == Distinct
	switch {
	case needsProperty && d.Property == "":
		return nil, fail("fn %s needs a property", d.Func)
	case !needsProperty && d.Property != "":
		return nil, fail("fn %s takes no property", d.Func)
	}
	if d.Window < 0 {
		return nil, fail("window %s is negative", d.Window)
	}
	agg := &Aggregate{Name: d.Name, Event: d.Event, Spec: WindowSpec{Func: fn, Window: d.Window}}
	if d.Property != "" {
		for path := range strings.SplitSeq(d.Property, ",") {
			path = strings.TrimSpace(path)
			if path == "" || strings.HasPrefix(path, ".") || strings.HasSuffix(path, ".") || strings.Contains(path, "..") {
				return nil, fail("property %q: want a dotted path (total, product.category), or several separated by commas (revenue, total)", d.Property)
			}
			agg.Property = append(agg.Property, strings.Split(path, "."))
		}
	}
	if d.Where != "" {
		r, err := rules.Compile("aggregates."+d.Name+".where", d.Where, &rules.Schema{}, rules.TypeBool)
		if err != nil {
			return nil, err
		}
		if dp := r.Deps; len(dp.Events) > 0 || len(dp.Interests) > 0 || len(dp.Consents) > 0 || dp.RFM || dp.Clock {
			return nil, fail("where reads the event (properties, context) and the profile's traits only")
		}
		agg.Where = r
	}
	agg.id = aggregateID(d.Name, xxhash.Sum64String(fmt.Sprintf("%d/%d", fn, d.Window.Milliseconds())))
	agg.definition = xxhash.Sum64String(fmt.Sprintf("%d/%d\x00%s\x00%s\x00%s", fn, d.Window.Milliseconds(), d.Event, d.Where, d.Property))
	return agg, nil
}

// idFingerprintBits is how many low bits of an aggregate state's id hash
// its function and window; the bits above hash its name.
const idFingerprintBits = 24

// aggregateID returns the id of the state of aggregate name under the
// function and window that fingerprint hashes: 8 bytes in each stored
// profile instead of the name and the fingerprint. The top bit is set, so
// no id is 0.
func aggregateID(name string, fingerprint uint64) uint64 {
	const low = 1<<idFingerprintBits - 1
	return 1<<63 | xxhash.Sum64String(name)&^low | fingerprint&low
}

// nameHash returns the part of agg's id that hashes its name.
func (agg *Aggregate) nameHash() uint64 { return agg.id >> idFingerprintBits }

// byID returns the aggregate whose states have id, or nil.
func (a *Aggregates) byID(id uint64) *Aggregate {
	if a == nil {
		return nil
	}
	return a.ids[id]
}

// List returns the aggregates in name order.
func (a *Aggregates) List() []*Aggregate {
	if a == nil {
		return nil
	}
	return a.list
}

// apply counts ev in every aggregate it belongs to, marking them in
// touched (indexed like List) when it is not nil. env is scratch space for
// the where rules.
func (a *Aggregates) apply(p *Profile, ev *event.Event, now time.Time, touched []bool, env *RuleEnv) {
	if a == nil || ev.Type != event.Track {
		return
	}
	// Where rules read the event and traits only (checked at compile),
	// which RuleEnv gives without segments.
	env.p, env.props, env.ctx, env.now = p, ev.Properties, ev.Context, now
	for _, list := range [2][]*Aggregate{a.byEvent[ev.Name], a.anyEvent} {
		for _, agg := range list {
			if agg.Where != nil && !agg.Where.Match(env) {
				continue
			}
			var x sample
			if agg.Property != nil {
				prop := firstProperty(ev.Properties, agg.Property, agg.Spec.Func != Distinct)
				if prop == nil {
					continue // nothing to sum, compare or count
				}
				switch agg.Spec.Func {
				case Distinct:
					env.scratch = prop.MarshalTo(env.scratch[:0])
					x.h = xxhash.Sum64(env.scratch)
				case Sum:
					// Exactly, from the number's decimal text.
					env.scratch = prop.MarshalTo(env.scratch[:0])
					a, err := money.ParseBytes(env.scratch)
					if err != nil {
						continue // not a number: the event does not count
					}
					x.amount = a
				default:
					f, err := prop.Float64()
					if err != nil {
						continue // not a number: the event does not count
					}
					x.v = f
				}
			}
			if p.aggs.add(agg, ev.Time.UnixMilli(), x, now.UnixMilli(), &env.aggScratch) && touched != nil {
				touched[agg.index] = true
			}
		}
	}
}

// firstProperty returns the first of the paths that props has, not null,
// and a number when number is set (as event.OrderAmount reads revenue,
// else total); nil when it has none.
func firstProperty(props *fastjson.Value, paths [][]string, number bool) *fastjson.Value {
	if props == nil {
		return nil
	}
	for _, path := range paths {
		v := props.Get(path...)
		if v != nil && v.Type() != fastjson.TypeNull && (!number || v.Type() == fastjson.TypeNumber) {
			return v
		}
	}
	return nil
}

// AggregateValue returns the value of agg at now; ok is false when no
// event counts (count and distinct are then 0 with ok true).
func (p *Profile) AggregateValue(agg *Aggregate, now time.Time) (float64, bool) {
	return p.aggs.state(agg).value(agg.Spec, now.UnixMilli())
}
