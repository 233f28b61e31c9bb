package state

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
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
	// always: the rule reads the event itself (properties, context), so
	// every event re-evaluates it.
	always bool
	// timed: time alone changes the rule's result, so the profile is
	// scheduled for its next change. A rule that also reads the event is
	// not: its membership is decided by events.
	timed bool
	// readsEvent: the rule reads the event (properties, context); only
	// events decide it, not time or a backfill.
	readsEvent bool
	// quintiles: the rule reads RFM scores, itself or through a segment
	// it reads, so its result follows the population's quintiles.
	quintiles bool
	// windows are the windowed aggregates the rule reads.
	windows []*Aggregate
	// pos is the segment's position in evaluation order; dependents
	// holds the positions of the segments reading it.
	pos        int
	dependents bitset
	// Fingerprint identifies the definition: the rule and the
	// definitions of the aggregates and segments it reads. A store whose
	// memberships were evaluated under another fingerprint backfills.
	Fingerprint uint64
}

// Inputs says what applying an event changed in a profile, so that only
// the segments reading those inputs are re-evaluated.
type Inputs struct {
	All       bool   // a new profile: evaluate everything
	Time      bool   // no event, time alone moved: evaluate the timed segments
	Traits    bool   // an identify call
	Event     string // a track call's name, for since()
	Aggs      []bool // aggregates updated, indexed like Aggregates.List
	Orders    bool   // orders or refunds: RFM values
	Interests bool   // a weighted event
	Consent   bool   // consent choices
	// Backfill, indexed like the schema's segment names, marks the
	// segments a backfill re-evaluates, with no event.
	Backfill []bool
	// Whole: with no event, evaluate every segment not decided by events
	// (another profile was merged into this one; or, when compiling, an
	// empty profile).
	Whole bool
	// Scores: the RFM scores the profile records (and shows) changed:
	// evaluate every segment reading them, and those reading these.
	Scores bool
}

// The inputs a segment rule may read, numbered for the bit sets that
// decide which segments an event re-evaluates: the four below, then
// aggregate i as inputAggregates+i, then the event names since() reads.
const (
	inputTraits = iota
	inputOrders
	inputInterests
	inputConsent
	inputAggregates
)

// bitset is a set of small non-negative integers.
type bitset []uint64

func newBitset(n int) bitset { return make(bitset, (n+63)/64) }

func (s bitset) add(i int) { s[i/64] |= 1 << (i % 64) }

func (s bitset) remove(i int) { s[i/64] &^= 1 << (i % 64) }

func (s bitset) has(i int) bool { return s[i/64]&(1<<(i%64)) != 0 }

// or adds t's members to s, which is at least as long.
func (s bitset) or(t bitset) {
	for i, w := range t {
		s[i] |= w
	}
}

func (s bitset) empty() bool {
	for _, w := range s {
		if w != 0 {
			return false
		}
	}
	return true
}

// candidates returns the positions (in evaluation order) of the segments
// in must re-evaluate, in dst's storage: those reading an input it
// changed and those reading the event itself (for a new profile, those in
// newProfile as well); with no event, those time alone changes (in.Time)
// or a backfill marks. The segments reading one that changes in the pass
// are added as it changes.
func (s *Segments) candidates(in *Inputs, dst bitset) bitset {
	n := (len(s.order) + 63) / 64
	dst = slices.Grow(dst[:0], n)[:n]
	switch {
	case in.Whole:
		copy(dst, s.all)
	case in.Time:
		copy(dst, s.timedSet)
	case in.Backfill != nil:
		clear(dst)
		for _, seg := range s.order {
			if in.Backfill[seg.index] {
				dst.add(seg.pos)
			}
		}
	default:
		if in.All {
			copy(dst, s.newProfile)
		} else {
			copy(dst, s.alwaysSet)
		}
		for _, f := range [...]struct {
			on    bool
			input int
		}{{in.Traits, inputTraits}, {in.Orders, inputOrders}, {in.Interests, inputInterests}, {in.Consent, inputConsent}} {
			if f.on {
				dst.or(s.byInput[f.input])
			}
		}
		for i, on := range in.Aggs {
			if on && i < len(s.aggs) {
				dst.or(s.byInput[inputAggregates+i])
			}
		}
		if i, ok := s.events[in.Event]; ok && in.Event != "" {
			dst.or(s.byInput[i])
		}
	}
	if in.Scores {
		dst.or(s.scoreSet)
	}
	return dst
}

// Segments are the compiled segments of a configuration, in an order in
// which every segment comes after the segments its rule reads.
type Segments struct {
	order []*Segment
	names []string // the schema's: sorted
	rfm   bool     // a segment reads rfm.*: evaluations need the quintiles
	timed bool     // a segment changes with time alone
	// quintiles: a segment follows the RFM quintiles (Segment.quintiles)
	quintiles bool
	aggs      []*Aggregate
	schema    *rules.Schema
	// events numbers the event names since() reads as inputs; byInput
	// holds, per input, the positions of the segments reading it;
	// alwaysSet those reading the event itself, timedSet those time alone
	// changes, all every position.
	events                   map[string]int
	byInput                  []bitset
	alwaysSet, timedSet, all bitset
	// scoreSet holds the positions of the segments reading rfm.r, rfm.f
	// or rfm.m themselves (Inputs.Scores).
	scoreSet bitset
	// newProfile holds the positions a new profile's first event
	// evaluates besides those reading what it changed: a rule whose
	// inputs the event left alone reads an empty profile, so only the
	// rules true for one (and those reading the event or now()) can
	// differ from "not in the segment".
	newProfile bitset
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
//
// rfmHorizon is the model's RFMHorizon: with one, rfm.* values change as
// orders leave it, with time alone.
func CompileSegments(decls []SegmentConfig, aggs *Aggregates, rfmHorizon time.Duration) (*Segments, error) {
	s := &Segments{aggs: aggs.List(), events: make(map[string]int)}
	inputs := inputAggregates + len(s.aggs)
	schema := &rules.Schema{RFMExpires: rfmHorizon > 0}
	for _, a := range s.aggs {
		t := rules.TypeNumber
		if a.Spec.Func == FirstSeen || a.Spec.Func == LastSeen {
			t = rules.TypeTime
		}
		schema.Aggregates = append(schema.Aggregates, rules.Field{Name: a.Name, Type: t, Expires: a.Spec.Window > 0})
	}
	for _, d := range decls {
		s.names = append(s.names, d.Name)
	}
	sort.Strings(s.names)
	schema.Segments = s.names
	s.schema = schema
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
		readsEvent := len(dp.Properties) > 0 || len(dp.Context) > 0
		// A rule reading the clock changes with its inputs, re-evaluated
		// by the events that change them, and with time, re-evaluated by
		// the wake-ups the store schedules; one also reading the event is
		// decided by every event instead.
		seg.always = readsEvent
		seg.readsEvent = readsEvent
		seg.timed = dp.Clock && !readsEvent
		s.timed = s.timed || seg.timed
		for _, a := range dp.Aggregates {
			if s.aggs[a].Spec.Window > 0 {
				seg.windows = append(seg.windows, s.aggs[a])
			}
		}
		for _, name := range dp.Events {
			if _, ok := s.events[name]; !ok {
				s.events[name] = inputs
				inputs++
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
		seg := byIndex[i]
		h := xxhash.New()
		fmt.Fprintf(h, "%s\x00%s", seg.Name, seg.Rule.Source)
		for _, a := range seg.Rule.Deps.Aggregates {
			fmt.Fprintf(h, "\x00%d", s.aggs[a].definition)
		}
		for _, dep := range seg.Rule.Deps.Segments {
			fmt.Fprintf(h, "\x00%d", byIndex[dep].Fingerprint) // visited first
		}
		seg.Fingerprint = h.Sum64()
		seg.quintiles = seg.Rule.Deps.RFMScores
		for _, dep := range seg.Rule.Deps.Segments {
			seg.quintiles = seg.quintiles || byIndex[dep].quintiles
		}
		s.quintiles = s.quintiles || seg.quintiles
		s.order = append(s.order, seg)
		s.rfm = s.rfm || byIndex[i].Rule.Deps.RFM
		return nil
	}
	for i := range byIndex {
		if err := visit(i, nil); err != nil {
			return nil, err
		}
	}
	s.indexInputs(inputs)
	s.findNewProfile()
	return s, nil
}

// findNewProfile fills in newProfile, evaluating for an empty profile
// every segment not decided by events.
func (s *Segments) findNewProfile() {
	empty := &Profile{}
	s.evaluate(&RuleEnv{}, empty, nil, time.Unix(0, 0).UTC(), &Inputs{Whole: true})
	s.newProfile = newBitset(len(s.order))
	for _, seg := range s.order {
		if _, in := empty.Segments[seg.Name]; in || seg.always || seg.Rule.Deps.Now {
			s.newProfile.add(seg.pos)
		}
	}
}

// indexInputs fills in, for the segments in evaluation order, which
// segments each input and each segment's change re-evaluate.
func (s *Segments) indexInputs(inputs int) {
	n := len(s.order)
	s.byInput = make([]bitset, inputs)
	for i := range s.byInput {
		s.byInput[i] = newBitset(n)
	}
	s.alwaysSet, s.timedSet, s.all, s.scoreSet = newBitset(n), newBitset(n), newBitset(n), newBitset(n)
	for pos, seg := range s.order {
		seg.pos = pos
		seg.dependents = newBitset(n)
	}
	byIndex := make([]*Segment, len(s.names))
	for _, seg := range s.order {
		byIndex[seg.index] = seg
	}
	for _, seg := range s.order {
		dp := &seg.Rule.Deps
		s.all.add(seg.pos)
		if dp.RFMScores {
			s.scoreSet.add(seg.pos)
		}
		if seg.always {
			s.alwaysSet.add(seg.pos)
		}
		if seg.timed {
			s.timedSet.add(seg.pos)
		}
		for _, f := range [...]struct {
			reads bool
			input int
		}{{len(dp.Traits) > 0, inputTraits}, {dp.RFM, inputOrders}, {len(dp.Interests) > 0, inputInterests}, {len(dp.Consents) > 0, inputConsent}} {
			if f.reads {
				s.byInput[f.input].add(seg.pos)
			}
		}
		for _, a := range dp.Aggregates {
			s.byInput[inputAggregates+a].add(seg.pos)
		}
		for _, name := range dp.Events {
			s.byInput[s.events[name]].add(seg.pos)
		}
		for _, dep := range dp.Segments {
			byIndex[dep].dependents.add(seg.pos)
		}
	}
}

// Schema returns what other rules (offer eligibility) may read: the
// aggregates and these segments.
func (s *Segments) Schema() *rules.Schema { return s.schema }

// readQuintiles reports whether any segment follows the RFM quintiles.
func (s *Segments) readQuintiles() bool { return s != nil && s.quintiles }

// readRFM reports whether any segment reads rfm.*.
func (s *Segments) readRFM() bool { return s != nil && s.rfm }

// List returns the segments in evaluation order.
func (s *Segments) List() []*Segment {
	if s == nil {
		return nil
	}
	return s.order
}

// movesWithTime reports whether time alone may change the result of the
// segment's rule for p: it reads now(), or a clock input p has something
// in (a windowed aggregate with events in it, since() of an event p has
// seen, rfm.* with orders). The others are constants until an event comes
// (rules.Deps.Now), which spares most profiles most rules' NextChange.
func (seg *Segment) movesWithTime(p *Profile) bool {
	dp := &seg.Rule.Deps
	if dp.Now || dp.RFM && p.Orders > 0 {
		return true
	}
	for _, name := range dp.Events {
		if _, seen := p.EventLast[name]; seen {
			return true
		}
	}
	for _, a := range seg.windows {
		if st := p.aggs.state(a); st != nil && st.bucketCount() > 0 {
			return true
		}
	}
	return false
}

// wakeAt returns when time alone may next change one of p's segments
// (Unix ms), as seen at env's instant, or 0 for never. env must have been
// reset for p by evaluate.
func (s *Segments) wakeAt(env *RuleEnv) int64 {
	if s == nil || !s.timed {
		return 0
	}
	env.props, env.ctx = nil, nil
	next := int64(0)
	for _, seg := range s.order {
		if !seg.timed || !seg.movesWithTime(env.p) {
			continue
		}
		if at, ok := seg.Rule.NextChange(env); ok && (next == 0 || at.UnixMilli() < next) {
			next = at.UnixMilli()
		}
	}
	return next
}

// evaluate re-evaluates every segment of the profile at now (with ev, the
// event being applied, or nil when time alone moved), records the new
// memberships in the profile and returns the changes.
func (s *Segments) evaluate(env *RuleEnv, p *Profile, ev *event.Event, now time.Time, inputs *Inputs) []Change {
	if s == nil || len(s.order) == 0 {
		return nil
	}
	env.pending = s.candidates(inputs, env.pending)
	if env.pending.empty() {
		env.timedEvaluated = false
		return nil // the event changed nothing a segment reads
	}
	env.reset(s, p, now)
	env.props, env.ctx = nil, nil
	if ev != nil {
		env.props, env.ctx = ev.Properties, ev.Context
	}
	noEvent := inputs.Time || inputs.Backfill != nil || inputs.Whole
	// The profile's memberships are updated as segments are evaluated, in
	// an order where each comes after those it reads (so a segment that
	// changes adds only later positions): segment() reads them as they are.
	var changes []Change
	p.members(s)
	pending := env.pending
	for w := range pending {
		for pending[w] != 0 {
			bit := bits.TrailingZeros64(pending[w])
			pending[w] &^= 1 << bit
			seg := s.order[w*64+bit]
			if noEvent && seg.readsEvent {
				continue // decided by events only
			}
			env.timedEvaluated = env.timedEvaluated || seg.timed
			in := seg.Rule.Match(env)
			if in == p.member.has(seg.index) {
				continue
			}
			p.setSegment(s, seg, in, now.UnixMilli())
			changes = append(changes, Change{Segment: seg.Name, Entered: in, At: now})
			pending.or(seg.dependents)
		}
	}
	return changes
}

// RuleEnv evaluates rules over a profile: while an event is applied (its
// properties and context readable), or when a decision is made (the
// request's context readable, memberships as stored in the profile). One
// is reused for many evaluations, so evaluating allocates nothing of its own.
type RuleEnv struct {
	p          *Profile
	props, ctx *fastjson.Value // nil when absent
	now        time.Time
	segs       *Segments
	aggs       []*Aggregate
	names      []string   // segment names, by schema index
	pending    bitset     // positions of the segments left to evaluate in this pass
	scratch    []byte     // for aggregates' distinct values
	aggScratch aggScratch // where applying an event changes aggregate states
	// timedEvaluated: a segment that time changes was evaluated in this
	// pass, so the profile's wake-up may have moved.
	timedEvaluated bool
	// interests configures interest(), quintiles rfm.r/f/m.
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

// NewRuleEnv returns an environment for rules compiled against s's
// schema (Segments.Schema), evaluated outside of applying an event.
func NewRuleEnv(s *Segments, interests *Interests) *RuleEnv {
	e := &RuleEnv{interests: interests}
	if s != nil {
		e.segs, e.aggs, e.names = s, s.aggs, s.names
	}
	return e
}

// Reset points the environment at profile p at now, with ctx as the
// context.* the rules read (nil: none) and q as the RFM quintiles.
func (e *RuleEnv) Reset(p *Profile, ctx *fastjson.Value, now time.Time, q RFMQuintiles) {
	e.p, e.props, e.ctx, e.now, e.quintiles = p, nil, ctx, now, q
	e.values = slices.Grow(e.values[:0], len(e.aggs))[:len(e.aggs)]
	clear(e.values)
}

func (e *RuleEnv) reset(s *Segments, p *Profile, now time.Time) {
	e.p, e.now, e.segs, e.aggs, e.names = p, now, s, s.aggs, s.names
	e.timedEvaluated = false
	e.values = slices.Grow(e.values[:0], len(s.aggs))[:len(s.aggs)]
	clear(e.values)
}

func (e *RuleEnv) Now() time.Time { return e.now }

func (e *RuleEnv) Trait(name string) rules.Value {
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

func (e *RuleEnv) Property(path []string) rules.Value {
	if e.props == nil {
		return rules.Value{}
	}
	return rules.FromJSONShared(e.props.Get(path...)) // read while the event is applied
}

func (e *RuleEnv) Context(path []string) rules.Value {
	if e.ctx == nil {
		return rules.Value{}
	}
	return rules.FromJSONShared(e.ctx.Get(path...)) // read while the event or the request is handled
}

func (e *RuleEnv) Aggregate(i int) (float64, bool) {
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

func (e *RuleEnv) LastEvent(name string) (time.Time, bool) {
	t, ok := e.p.EventLast[name]
	if !ok {
		return time.Time{}, false
	}
	return time.UnixMilli(t), true
}

// RFM reads rfm.*: the scores the profile records when it does (those
// its view shows; Batch.evaluate records them anew, on the same quintiles,
// before evaluating when they may have moved), else as the quintiles give
// them; the values as they are at the env's instant.
func (e *RuleEnv) RFM(field int) (float64, bool) {
	if field < len(e.p.rfmScores) && e.p.rfmScored {
		s := e.p.rfmScores[field]
		return float64(s), s != 0
	}
	return e.p.RFM(field, e.quintiles, e.now)
}

func (e *RuleEnv) AggregateNext(i int) float64 {
	a := e.aggs[i]
	at, ok := e.p.aggs.state(a).nextChange(a.Spec, e.now.UnixMilli())
	if !ok {
		return math.Inf(1)
	}
	return float64(at) / 1000
}

func (e *RuleEnv) RFMNext(field int) float64 {
	if e.p.Orders == 0 {
		return math.Inf(1)
	}
	now := e.now.UnixMilli()
	next := math.Inf(1)
	if field == rules.RFMRecency {
		day := rfmDay.Milliseconds()
		next = float64(e.p.LastOrderAt + (floorDiv(now-e.p.LastOrderAt, day)+1)*day)
	}
	if exit := e.p.orderExit(now, e.quintiles.Horizon); exit != 0 {
		next = math.Min(next, float64(exit))
	}
	return next / 1000
}

func (e *RuleEnv) Interest(category string) float64 {
	return e.p.Affinity(e.interests, category)
}

func (e *RuleEnv) Consent(purpose string) bool { return e.p.Consent(purpose) }

func (e *RuleEnv) Segment(i int) bool {
	if e.p.memberOf == e.segs && e.segs != nil {
		return e.p.member.has(i) // worked out by the batch that published p
	}
	_, in := e.p.Segments[e.names[i]]
	return in
}
