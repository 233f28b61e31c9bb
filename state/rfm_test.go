package state

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/money"
)

// TestRFMPopulation applies orders through a store and checks the
// histograms, the quintiles and the scores, also after a restart.
func TestRFMPopulation(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	p := event.NewParser(event.DefaultLimits())
	b := s.Begin()
	// Customer i orders i times, the last on day i, spending 10*i each time.
	for i := 1; i <= 10; i++ {
		for j := 1; j <= i; j++ {
			ts := t0.Add(time.Duration(i)*24*time.Hour + time.Duration(j)*time.Minute).Format(time.RFC3339)
			ev, err := p.Parse([]byte(`{"type": "track", "userId": "c`+string(rune('a'+i))+`", "event": "Order Completed", "timestamp": "`+ts+`", "properties": {"order_id": "`+string(rune('a'+i))+string(rune('a'+j))+`", "total": 10}}`), 0, t0.Add(30*24*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.Apply(&ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := b.Commit(1); err != nil {
		t.Fatal(err)
	}
	check := func(s *Store) {
		t.Helper()
		pop := s.Population()
		var n int64
		for _, c := range pop.Orders {
			n += c
		}
		if n != 10 {
			t.Fatalf("population of %d, want 10: %+v", n, pop)
		}
		q := pop.Quintiles()
		if q.Orders != [4]float64{2, 4, 6, 8} {
			t.Errorf("order quintiles %v, want [2 4 6 8]", q.Orders)
		}
		prof, err := s.Profile("c" + string(rune('a'+9)))
		if err != nil {
			t.Fatal(err)
		}
		now := t0.Add(30 * 24 * time.Hour)
		r, _ := prof.RFM(0, q, now)
		f, _ := prof.RFM(1, q, now)
		m, _ := prof.RFM(2, q, now)
		rec, _ := prof.RFM(3, q, now)
		if r != 5 || f != 5 || m != 5 || rec != 20 {
			t.Errorf("customer 9: r %v f %v m %v recency %v, want 5 5 5 and 20 days", r, f, m, rec)
		}
	}
	check(s)
	s.Close()
	s = openStore(t, dir)
	defer s.Close()
	check(s)
}

// TestRFMHorizon counts only the orders of the last horizon: frequency
// and monetary value, the population histograms and the segments reading
// them move as orders leave the horizon, with time alone.
func TestRFMHorizon(t *testing.T) {
	const day = 24 * time.Hour
	segs, err := CompileSegments([]SegmentConfig{{"buyer", `rfm.frequency >= 1`}, {"regular", `rfm.frequency >= 2`}}, nil, 30*day)
	if err != nil {
		t.Fatal(err)
	}
	clock := t0
	o := testOptions()
	o.Segments, o.RFMHorizon, o.Now = segs, 30*day, func() time.Time { return clock }
	s := openWith(t, t.TempDir(), o)
	defer s.Close()
	p := event.NewParser(event.DefaultLimits())
	b := s.Begin()
	for i, order := range []struct {
		user   string
		ago    time.Duration
		amount float64
	}{{"u1", 40 * day, 100}, {"u1", 10 * day, 50}, {"u2", 5 * day, 10}, {"u2", 4 * day, 30}} {
		e := parse(t, p, fmt.Sprintf(`{"type": "track", "event": "Order Completed", "userId": %q, "timestamp": %q, "properties": {"order_id": "o%d", "total": %g}}`,
			order.user, t0.Add(-order.ago).Format(time.RFC3339), i, order.amount))
		if _, err := b.Apply(&e); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(4); err != nil {
		t.Fatal(err)
	}
	check := func(at time.Duration, want map[string][3]float64, orders map[int64]int64) {
		t.Helper()
		q := RFMQuintiles{Horizon: 30 * day}
		for user, w := range want {
			prof, err := s.Profile(user)
			if err != nil {
				t.Fatal(err)
			}
			f, _ := prof.RFM(4, q, t0.Add(at))
			m, _ := prof.RFM(5, q, t0.Add(at))
			if _, in := prof.Segments["buyer"]; f != w[0] || m != w[1] || in != (w[2] == 1) {
				t.Errorf("at %v: %s frequency %v monetary %v buyer %v, want %v", at, user, f, m, in, w)
			}
		}
		pop := s.Population()
		for bin, n := range pop.Orders {
			if n != orders[bin] {
				t.Errorf("at %v: %d customers with %d orders, want %d (histogram %v)", at, n, bin, orders[bin], pop.Orders)
			}
		}
		for bin, n := range orders {
			if pop.Orders[bin] != n {
				t.Errorf("at %v: %d customers with %d orders, want %d (histogram %v)", at, pop.Orders[bin], bin, n, pop.Orders)
			}
		}
	}
	check(0, map[string][3]float64{"u1": {1, 50, 1}, "u2": {2, 40, 1}}, map[int64]int64{1: 1, 2: 1})
	if got := s.SegmentSizes(); got["buyer"] != 2 || got["regular"] != 1 {
		t.Errorf("sizes %v", got)
	}
	wake := func(at time.Duration) {
		t.Helper()
		clock = t0.Add(at)
		b := s.Begin()
		if _, err := b.Wake(clock, 100); err != nil {
			t.Fatal(err)
		}
		if err := b.Commit(4); err != nil {
			t.Fatal(err)
		}
	}
	// u1's order of 10 days ago leaves the horizon 20 days from now; u2's
	// go at 25 and 26 days.
	if next, ok := s.NextWake(); !ok || next.Sub(t0) > 20*day+time.Millisecond {
		t.Errorf("next wake %v, want by 20 days", next.Sub(t0))
	}
	wake(20*day + time.Millisecond)
	check(20*day+time.Millisecond, map[string][3]float64{"u1": {0, 0, 0}, "u2": {2, 40, 1}}, map[int64]int64{2: 1})
	wake(25*day + time.Millisecond)
	check(25*day+time.Millisecond, map[string][3]float64{"u2": {1, 30, 1}}, map[int64]int64{1: 1})
	if got := s.SegmentSizes(); got["buyer"] != 1 || got["regular"] != 0 {
		t.Errorf("sizes after the wake-ups %v", got)
	}
	wake(26*day + time.Millisecond)
	check(26*day+time.Millisecond, map[string][3]float64{"u2": {0, 0, 0}}, nil)
	if next, ok := s.NextWake(); ok {
		t.Errorf("a wake-up at %v after every order left", next.Sub(t0))
	}
}

// TestRFMRefresh: as new customers order, the quintiles move and a
// customer's score with them, without an event of its own; the segments
// reading scores are re-evaluated for every profile once the refresh
// interval has passed, each change recorded once.
func TestRFMRefresh(t *testing.T) {
	segs, err := CompileSegments([]SegmentConfig{{"top_spender", `rfm.m >= 5`}, {"top_fan", `segment("top_spender") && traits.fan == true`}}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	clock := t0
	o := testOptions()
	o.Segments, o.RFMRefresh, o.Now = segs, time.Hour, func() time.Time { return clock }
	var s *Store
	o.Quintiles = func() RFMQuintiles { return s.Population().Quintiles() }
	s = openWith(t, t.TempDir(), o)
	defer s.Close()
	p := event.NewParser(event.DefaultLimits())
	offset := int64(0)
	order := func(user string, total float64) {
		t.Helper()
		b := s.Begin()
		for _, raw := range []string{
			fmt.Sprintf(`{"type": "identify", "userId": %q, "traits": {"fan": true}, "timestamp": %q}`, user, clock.Format(time.RFC3339)),
			fmt.Sprintf(`{"type": "track", "event": "Order Completed", "userId": %q, "timestamp": %q, "properties": {"order_id": %q, "total": %g}}`, user, clock.Format(time.RFC3339), user, total),
		} {
			e := parse(t, p, raw)
			if _, err := b.Apply(&e); err != nil {
				t.Fatal(err)
			}
		}
		offset++
		if err := b.Commit(offset); err != nil {
			t.Fatal(err)
		}
	}
	walk := func() []string {
		t.Helper()
		changes, _ := walkBackfill(t, s, 100, offset)
		return changes
	}
	walk() // the first quintiles: nothing to change yet
	view := func(user string) *Profile {
		t.Helper()
		prof, err := s.Profile(user)
		if err != nil {
			t.Fatal(err)
		}
		return prof
	}
	// The first five customers order with fewer than MinRFMValues
	// customers before them: no m score, in no segment reading it.
	for i := 1; i <= 5; i++ {
		order(fmt.Sprintf("u%d", i), float64(10*i))
	}
	if prof := view("u5"); len(prof.Segments) != 0 || prof.View(Derived{}, clock).RFM.M != 0 {
		t.Fatalf("u5 with four customers before it: segments %v, RFM %+v; want none and no m score", prof.Segments, prof.View(Derived{}, clock).RFM)
	}
	// The sixth has five before it, and is the biggest spender.
	order("u6", 60)
	if prof := view("u6"); prof.Segments["top_spender"] == 0 || prof.Segments["top_fan"] == 0 || prof.View(Derived{}, clock).RFM.M != 5 {
		t.Fatalf("u6, the biggest spender, is not in top_spender and top_fan, or does not show m 5: %v", prof.Segments)
	}
	// Bigger spenders arrive: u6 is in the middle now, but nothing of its
	// own happened, so it stays until the refresh, and so does its score.
	for i := 7; i <= 10; i++ {
		order(fmt.Sprintf("u%d", i), float64(10*i))
	}
	if changes := walk(); len(changes) != 0 {
		t.Errorf("a walk before the refresh interval: %v", changes)
	}
	if prof := view("u6"); prof.Segments["top_spender"] == 0 || prof.View(Derived{}, clock).RFM.M != 5 {
		t.Error("u6 left top_spender, or its m score moved, before the refresh")
	}
	clock = clock.Add(time.Hour)
	got := walk()
	// Each customer from u6 on entered with its own order, the biggest so
	// far; the walk takes out everyone but the top fifth, u9 and u10.
	var want []string
	for i := 6; i <= 8; i++ {
		want = append(want, fmt.Sprintf("u%d-top_fan", i), fmt.Sprintf("u%d-top_spender", i))
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("the walk after the refresh: %v, want %v", got, want)
	}
	if sizes := s.SegmentSizes(); sizes["top_spender"] != 2 || sizes["top_fan"] != 2 {
		t.Errorf("sizes %v, want 2 and 2", sizes)
	}
	// Every profile shows the scores its segments were evaluated on, now
	// the quintiles of all ten: u1 and u2 in the bottom fifth, u9 and u10
	// in the top one.
	for i := 1; i <= 10; i++ {
		prof := view(fmt.Sprintf("u%d", i))
		m := prof.View(Derived{}, clock).RFM.M
		if _, in := prof.Segments["top_spender"]; in != (m >= 5) || m != float64((i+1)/2) {
			t.Errorf("u%d: m %v, in top_spender %v; want m %d, in it for 5 only", i, m, in, (i+1)/2)
		}
	}
}

// TestRFMHorizonWithoutSegments: the histograms follow orders leaving the
// horizon, one after the other, even when no segment reads RFM.
func TestRFMHorizonWithoutSegments(t *testing.T) {
	const day = 24 * time.Hour
	clock := t0
	o := testOptions()
	o.RFMHorizon, o.Now = 10*day, func() time.Time { return clock }
	s := openWith(t, t.TempDir(), o)
	defer s.Close()
	p := event.NewParser(event.DefaultLimits())
	b := s.Begin()
	for i, ago := range []time.Duration{2 * day, day} {
		e := parse(t, p, fmt.Sprintf(`{"type": "track", "event": "Order Completed", "userId": "u", "timestamp": %q, "properties": {"order_id": "%d", "total": 5}}`, t0.Add(-ago).Format(time.RFC3339), i))
		if _, err := b.Apply(&e); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(2); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		orders int64         // the histogram bin holding the customer; 0: none
		next   time.Duration // the next wake-up; 0: none
	}{{2, 8*day + time.Millisecond}, {1, 9*day + time.Millisecond}, {0, 0}} {
		pop := s.Population()
		for bin, n := range pop.Orders {
			if want := map[bool]int64{true: 1, false: 0}[bin == step.orders]; n != want {
				t.Errorf("before the wake-up at %v: %d customers with %d orders, want %d", step.next, n, bin, want)
			}
		}
		at, ok := s.NextWake()
		if ok != (step.next != 0) || ok && at.Sub(t0) != step.next {
			t.Fatalf("next wake-up %v (%v), want %v", at.Sub(t0), ok, step.next)
		}
		if !ok {
			break
		}
		clock = at
		b := s.Begin()
		if _, err := b.Wake(clock, 10); err != nil {
			t.Fatal(err)
		}
		if err := b.Commit(2); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRFMTooFewValues: a score needs MinRFMValues distinct values of its
// dimension among the customers; below that it is absent, the others
// given.
func TestRFMTooFewValues(t *testing.T) {
	for _, tc := range []struct {
		name               string
		days, orders, bins []int64 // one customer per entry
		want               [3]bool
	}{
		{"empty", nil, nil, nil, [3]bool{}},
		{"one customer", []int64{1}, []int64{1}, []int64{100}, [3]bool{}},
		{"four of each", []int64{1, 2, 3, 4}, []int64{1, 2, 3, 4}, []int64{1, 2, 3, 4}, [3]bool{}},
		{"five distinct days only", []int64{1, 2, 3, 4, 5, 5}, []int64{1, 1, 1, 1, 1, 2}, []int64{7, 7, 7, 7, 7, 7}, [3]bool{true, false, false}},
		{"five of each", []int64{1, 2, 3, 4, 5}, []int64{1, 2, 3, 4, 5}, []int64{1, 2, 3, 4, 5}, [3]bool{true, true, true}},
	} {
		pop := NewPopulation()
		for i := range tc.days {
			pop.move(rfmPoint{}, rfmPoint{day: tc.days[i], orders: tc.orders[i], money: tc.bins[i], ok: true})
		}
		q := pop.Quintiles()
		if q.ok != tc.want {
			t.Errorf("%s: scores %v, want %v", tc.name, q.ok, tc.want)
		}
		p := &Profile{Orders: 1, Revenue: money.Units(5), LastOrderAt: 3 * rfmDay.Milliseconds()}
		for field := range 3 {
			if _, ok := p.RFM(field, q, time.UnixMilli(10*rfmDay.Milliseconds())); ok != tc.want[field] {
				t.Errorf("%s: score %d given %v, want %v", tc.name, field, ok, tc.want[field])
			}
		}
	}
}

// TestRFMScoresStored: the scores a profile's segments were evaluated on
// are stored with it, an absent one too.
func TestRFMScoresStored(t *testing.T) {
	p := &Profile{Key: "u", rfmScores: rfmScores{5, 0, 3}, rfmScored: true}
	got, err := DecodeProfile(p.AppendEncode(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !got.rfmScored || got.rfmScores != p.rfmScores {
		t.Errorf("decoded scores %v (%v), want %v", got.rfmScores, got.rfmScored, p.rfmScores)
	}
	if got, _ := DecodeProfile((&Profile{Key: "u"}).AppendEncode(nil)); got.rfmScored {
		t.Error("a profile without recorded scores decodes with some")
	}
}

// TestRFMScoresMixedRule: a segment reading a score and a trait, evaluated
// on an identify call long after the profile's last order, reads the score
// the profile shows (recorded with its order), not one of quintiles that
// have moved since: membership and the shown scores agree whatever input
// re-evaluates the segment.
func TestRFMScoresMixedRule(t *testing.T) {
	segs, err := CompileSegments([]SegmentConfig{{"vip_fan", `rfm.m >= 5 && traits.fan == true`}}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	o := testOptions()
	o.Segments, o.RFMRefresh, o.Now = segs, time.Hour, func() time.Time { return t0 }
	var s *Store
	o.Quintiles = func() RFMQuintiles { return s.Population().Quintiles() }
	s = openWith(t, t.TempDir(), o)
	defer s.Close()
	p := event.NewParser(event.DefaultLimits())
	offset := int64(0)
	send := func(raw string) {
		t.Helper()
		b := s.Begin()
		e := parse(t, p, raw)
		if _, err := b.Apply(&e); err != nil {
			t.Fatal(err)
		}
		offset++
		if err := b.Commit(offset); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 10; i++ { // u6 is the biggest spender when it orders
		send(fmt.Sprintf(`{"type": "track", "event": "Order Completed", "userId": "u%d", "timestamp": %q, "properties": {"order_id": "o%d", "revenue": %d}}`, i, t0.Format(time.RFC3339), i, 10*i))
	}
	send(fmt.Sprintf(`{"type": "identify", "userId": "u6", "traits": {"fan": true}, "timestamp": %q}`, t0.Format(time.RFC3339)))
	prof, err := s.Profile("u6")
	if err != nil {
		t.Fatal(err)
	}
	m := prof.View(Derived{Quintiles: s.Population().Quintiles()}, t0).RFM.M
	if _, in := prof.Segments["vip_fan"]; m != 5 || !in {
		t.Errorf("u6 shows m %v and is in vip_fan: %v; want m 5, in it", m, in)
	}
}
