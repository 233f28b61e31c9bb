package state

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/valyala/fastjson"

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/rules"
)

// SegmentConfig declares a segment: a named true/false rule over a profile.
type SegmentConfig struct {
	Name string
	Rule string
}

// Segment is a compiled segment.
type Segment struct {
	Name  string
	Rule  *rules.Rule
	index int // in the schema's segment names
	// always: the rule reads the event itself (properties, context) or
	// something that changes with time alone (now(), since(), a windowed
	// aggregate), so every event re-evaluates it.
	always bool
}

// Inputs says what applying an event changed in a profile, so that only
// the segments reading those inputs are re-evaluated.
type Inputs struct {
	All       bool   // a new profile, or no event: evaluate everything
	Traits    bool   // an identify call
	Event     string // a track call's name, for since()
	Aggs      []bool // aggregates updated, indexed like Aggregates.List
	Orders    bool   // orders or refunds: RFM values
	Interests bool   // a weighted event
	Consent   bool   // consent choices
}

// needs reports whether seg must be re-evaluated for in, given which
// segments changed earlier in this pass.
func (seg *Segment) needs(in *Inputs, changed []bool) bool {
	d := &seg.Rule.Deps
	switch {
	case in.All, seg.always,
		in.Traits && len(d.Traits) > 0,
		in.Orders && d.RFM,
		in.Interests && len(d.Interests) > 0,
		in.Consent && len(d.Consents) > 0:
		return true
	}
	if in.Event != "" && slices.Contains(d.Events, in.Event) {
		return true
	}
	for _, i := range d.Aggregates {
		if i < len(in.Aggs) && in.Aggs[i] {
			return true
		}
	}
	for _, i := range d.Segments {
		if changed[i] {
			return true
		}
	}
	return false
}

// Segments are the compiled segments of a configuration, in an order in
// which every segment comes after the segments its rule reads.
type Segments struct {
	order []*Segment
	names []string // the schema's: sorted
	rfm   bool     // a segment reads rfm.*: evaluations need the quintiles
	aggs  []*Aggregate
}

// Change is a segment membership that an event (or time) changed.
type Change struct {
	Segment string
	Entered bool // false: exited
	At      time.Time
}

// CompileSegments checks and compiles segment declarations against the
// aggregates they may read. Every problem is reported, each naming its
// segment, and so is a cycle of segments reading each other.
func CompileSegments(decls []SegmentConfig, aggs *Aggregates) (*Segments, error) {
	s := &Segments{aggs: aggs.List()}
	schema := &rules.Schema{}
	for _, a := range s.aggs {
		t := rules.TypeNumber
		if a.Spec.Func == FirstSeen || a.Spec.Func == LastSeen {
			t = rules.TypeTime
		}
		schema.Aggregates = append(schema.Aggregates, rules.Field{Name: a.Name, Type: t})
	}
	for _, d := range decls {
		s.names = append(s.names, d.Name)
	}
	sort.Strings(s.names)
	schema.Segments = s.names
	var errs []error
	byIndex := make([]*Segment, len(s.names))
	for _, d := range decls {
		i := slices.Index(s.names, d.Name)
		if byIndex[i] != nil {
			errs = append(errs, fmt.Errorf("segment %q is declared twice", d.Name))
			continue
		}
		r, err := rules.Compile("segments."+d.Name, d.Rule, schema, rules.TypeBool)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		seg := &Segment{Name: d.Name, Rule: r, index: i}
		dp := r.Deps
		seg.always = dp.Clock || len(dp.Properties) > 0 || len(dp.Context) > 0
		for _, a := range dp.Aggregates {
			if s.aggs[a].Spec.Window > 0 {
				seg.always = true // its value moves with time
			}
		}
		byIndex[i] = seg
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// Order by dependencies, finding cycles.
	const (
		unvisited = iota
		visiting
		done
	)
	state := make([]int, len(byIndex))
	var visit func(i int, path []string) error
	visit = func(i int, path []string) error {
		switch state[i] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("segments read each other in a cycle: %s", strings.Join(append(path, s.names[i]), " → "))
		}
		state[i] = visiting
		for _, dep := range byIndex[i].Rule.Deps.Segments {
			if err := visit(dep, append(path, s.names[i])); err != nil {
				return err
			}
		}
		state[i] = done
		s.order = append(s.order, byIndex[i])
		s.rfm = s.rfm || byIndex[i].Rule.Deps.RFM
		return nil
	}
	for i := range byIndex {
		if err := visit(i, nil); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// readRFM reports whether any segment reads rfm.*.
func (s *Segments) readRFM() bool { return s != nil && s.rfm }

// List returns the segments in evaluation order.
func (s *Segments) List() []*Segment {
	if s == nil {
		return nil
	}
	return s.order
}

// evaluate re-evaluates every segment of the profile at now (with ev, the
// event being applied, or nil when time alone moved), records the new
// memberships in the profile and returns the changes.
func (s *Segments) evaluate(env *profileEnv, p *Profile, ev *event.Event, now time.Time, inputs *Inputs) []Change {
	if s == nil || len(s.order) == 0 {
		return nil
	}
	env.reset(s, p, ev, now)
	for _, seg := range s.order {
		if _, in := p.Segments[seg.Name]; in {
			env.member[seg.index] = true // until evaluated: segments read in order
		}
	}
	var changes []Change
	for _, seg := range s.order {
		if !seg.needs(inputs, env.changed) {
			continue
		}
		in := seg.Rule.Match(env)
		env.member[seg.index] = in
		_, was := p.Segments[seg.Name]
		switch {
		case in && !was:
			env.changed[seg.index] = true
			if p.Segments == nil {
				p.Segments = make(map[string]int64)
			}
			p.Segments[seg.Name] = now.UnixMilli()
			changes = append(changes, Change{Segment: seg.Name, Entered: true, At: now})
		case !in && was:
			env.changed[seg.index] = true
			delete(p.Segments, seg.Name)
			changes = append(changes, Change{Segment: seg.Name, Entered: false, At: now})
		}
	}
	return changes
}

// profileEnv evaluates rules over a profile and the event being applied.
// A batch reuses one, so evaluating allocates nothing of its own.
type profileEnv struct {
	p       *Profile
	ev      *event.Event // nil when no event is being applied
	now     time.Time
	aggs    []*Aggregate
	member  []bool // segment memberships, by schema index
	changed []bool // memberships changed in this pass, by schema index
	// interests configures interest(), quintiles rfm.r/f/m; set by the batch.
	interests *Interests
	quintiles RFMQuintiles
	// values caches the aggregates' values for one evaluation: several
	// rules read the same aggregates.
	values []aggValue
	json   fastjson.Parser
}

type aggValue struct {
	v        float64
	ok, done bool
}

func (e *profileEnv) reset(s *Segments, p *Profile, ev *event.Event, now time.Time) {
	e.p, e.ev, e.now, e.aggs = p, ev, now, s.aggs
	e.member = slices.Grow(e.member[:0], len(s.names))[:len(s.names)]
	clear(e.member)
	e.changed = slices.Grow(e.changed[:0], len(s.names))[:len(s.names)]
	clear(e.changed)
	e.values = slices.Grow(e.values[:0], len(s.aggs))[:len(s.aggs)]
	clear(e.values)
}

func (e *profileEnv) Now() time.Time { return e.now }

func (e *profileEnv) Trait(name string) rules.Value {
	t, ok := e.p.Traits[name]
	if !ok {
		return rules.Value{}
	}
	v, err := e.json.ParseBytes(t.Value)
	if err != nil {
		return rules.Value{}
	}
	return rules.FromJSON(v)
}

func (e *profileEnv) Property(path []string) rules.Value {
	if e.ev == nil || e.ev.Properties == nil {
		return rules.Value{}
	}
	return rules.FromJSON(e.ev.Properties.Get(path...))
}

func (e *profileEnv) Context(path []string) rules.Value {
	if e.ev == nil || e.ev.Context == nil {
		return rules.Value{}
	}
	return rules.FromJSON(e.ev.Context.Get(path...))
}

func (e *profileEnv) Aggregate(i int) (float64, bool) {
	c := &e.values[i]
	if !c.done {
		c.v, c.ok = e.p.AggregateValue(e.aggs[i], e.now)
		if c.ok && (e.aggs[i].Spec.Func == FirstSeen || e.aggs[i].Spec.Func == LastSeen) {
			c.v /= 1000 // rules take times in Unix seconds
		}
		c.done = true
	}
	return c.v, c.ok
}

func (e *profileEnv) LastEvent(name string) (time.Time, bool) {
	t, ok := e.p.EventLast[name]
	if !ok {
		return time.Time{}, false
	}
	return time.UnixMilli(t), true
}

func (e *profileEnv) RFM(field int) (float64, bool) { return e.p.RFM(field, e.quintiles, e.now) }

func (e *profileEnv) Interest(category string) float64 {
	return e.p.Affinity(e.interests, category, e.now)
}

func (e *profileEnv) Consent(purpose string) bool { return e.p.Consent(purpose) }

func (e *profileEnv) Segment(i int) bool { return e.member[i] }
