package state

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/internal/workload"
)

func TestCompileSegmentsErrors(t *testing.T) {
	aggs, err := CompileAggregates([]AggregateConfig{{Name: "cart_adds_1h", Event: "Product Added", Func: "count", Window: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		decls []SegmentConfig
		want  string
	}{
		{[]SegmentConfig{{"a", `cart_adds > 0`}}, `rule "segments.a" at 1:1: unknown name "cart_adds"`},
		{[]SegmentConfig{{"a", `cart_adds_1h + 1`}}, `rule "segments.a" at 1:14: the rule must give true/false, but gives a number`},
		{[]SegmentConfig{{"a", `segment("b")`}, {"b", `segment("c")`}, {"c", `segment("a")`}}, `segments read each other in a cycle: a → b → c → a`},
		{[]SegmentConfig{{"a", `segment("nope")`}}, `rule "segments.a" at 1:9: unknown segment "nope"`},
	}
	for _, tc := range tests {
		_, err := CompileSegments(tc.decls, aggs, 0)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.decls, err, tc.want)
		}
	}
}

// TestSegmentChanges scripts events with a fake clock and checks the
// entered/exited changes on events, in dependency order, and those time
// alone made by the next event (a wake-up just before each event; TestWake
// covers wake-ups in detail).
func TestSegmentChanges(t *testing.T) {
	aggs, segs := compileModel(t, []AggregateConfig{
		{Name: "cart_adds_1h", Event: "Product Added", Func: "count", Window: time.Hour},
	}, []SegmentConfig{
		{"cart_abandoner", `cart_adds_1h > 0 && since("Order Completed") > 30m`},
		{"french_adult", `traits.country == "FR" && traits.age >= 18`},
		{"french_abandoner", `segment("french_adult") && segment("cart_abandoner")`},
	}, 0)
	clock := t0
	o := testOptions()
	o.Aggregates, o.Segments, o.Now = aggs, segs, func() time.Time { return clock }
	s := openWith(t, t.TempDir(), o)
	defer s.Close()
	p := event.NewParser(event.DefaultLimits())
	offset := int64(0)
	send := func(at time.Duration, ev string) []string {
		t.Helper()
		clock = t0.Add(at)
		e, err := p.Parse([]byte(`{"userId": "u", "timestamp": "`+clock.Format(time.RFC3339)+`", `+ev+`}`), 0, clock)
		if err != nil {
			t.Fatal(err)
		}
		// What time alone changed by now, then what the event changes.
		var got []string
		collect := func(b *Batch) {
			for _, c := range b.Changes() {
				sign := "-"
				if c.Entered {
					sign = "+"
				}
				got = append(got, sign+c.Segment)
			}
		}
		b := s.Begin()
		if _, err := b.Wake(clock, 100); err != nil {
			t.Fatal(err)
		}
		collect(b)
		if err := b.Commit(offset); err != nil {
			t.Fatal(err)
		}
		b = s.Begin()
		if _, err := b.Apply(&e); err != nil {
			t.Fatal(err)
		}
		collect(b)
		offset++
		if err := b.Commit(offset); err != nil {
			t.Fatal(err)
		}
		return got
	}
	steps := []struct {
		at   time.Duration
		ev   string
		want string
	}{
		{0, `"type": "identify", "traits": {"country": "FR", "age": 30}`, "+french_adult"},
		{time.Minute, `"type": "track", "event": "Product Added"`, "+cart_abandoner +french_abandoner"},
		{2 * time.Minute, `"type": "track", "event": "Product Added"`, ""},
		{3 * time.Minute, `"type": "track", "event": "Order Completed", "properties": {"total": 5}`, "-cart_abandoner -french_abandoner"},
		// 30 minutes after the order, with no event
		{40 * time.Minute, `"type": "track", "event": "Page Viewed"`, "+cart_abandoner +french_abandoner"},
		{41 * time.Minute, `"type": "identify", "traits": {"age": 17}`, "-french_adult -french_abandoner"},
		// the cart adds are over an hour old
		{125 * time.Minute, `"type": "track", "event": "Page Viewed"`, "-cart_abandoner"},
	}
	for i, st := range steps {
		if got := strings.Join(send(st.at, st.ev), " "); got != st.want {
			t.Errorf("at %v after %s: changes %q, want %q", st.at, st.ev, got, st.want)
		}
		if i == 1 {
			if got := s.SegmentSizes(); got["cart_abandoner"] != 1 || got["french_adult"] != 1 || got["french_abandoner"] != 1 {
				t.Errorf("sizes after the cart add: %v", got)
			}
		}
	}
	if got := s.SegmentSizes(); got["cart_abandoner"] != 0 || got["french_adult"] != 0 || len(got) != 3 {
		t.Errorf("sizes at the end: %v, want all three at 0", got)
	}
	prof, _ := s.Profile("u")
	if v := prof.View(Derived{Aggregates: aggs}, clock); len(v.Segments) != 0 {
		t.Errorf("segments at the end: %v", v.Segments)
	}
}

// TestSegmentNeeds checks which segments an event re-evaluates: those
// whose inputs it changed, those reading the event, and those reading a
// segment that changed in the same pass; time alone (a wake-up)
// re-evaluates those reading the clock.
func TestSegmentNeeds(t *testing.T) {
	_, segs := compileModel(t, []AggregateConfig{
		{Name: "orders_all", Event: "Order Completed", Func: "count"},
		{Name: "views_1h", Event: "Product Viewed", Func: "count", Window: time.Hour},
	}, []SegmentConfig{
		{"adult", `traits.age >= 18`},
		{"buyer", `orders_all >= 1`},
		{"browsing", `views_1h > 0`},
		{"champion", `rfm.r >= 4`},
		{"shoes", `interest("shoes") > 0.5`},
		{"ads", `consent("Advertising")`},
		{"recent", `since("Signed In") < 1d`},
		{"on_sale", `properties.sale == true`},
		{"adult_buyer", `segment("adult") && segment("buyer")`},
		{"never_ordered", `orders_all == 0`},
		{"late", `now() > now() - 1h`},
	}, 0)
	always := []string{"on_sale"}
	tests := []struct {
		name   string
		in     Inputs
		needed []string
	}{
		{"identify", Inputs{Traits: true}, []string{"adult"}},
		{"order", Inputs{Orders: true, Event: "Order Completed", Aggs: []bool{true, false}, Interests: true}, []string{"buyer", "champion", "never_ordered", "shoes"}},
		{"view", Inputs{Event: "Product Viewed", Aggs: []bool{false, true}}, []string{"browsing"}},
		{"sign in", Inputs{Event: "Signed In"}, []string{"recent"}},
		{"consent", Inputs{Consent: true}, []string{"ads"}},
		// A new profile: besides what its first event changed, the rules
		// true for an empty profile and those reading now() itself.
		{"new profile", Inputs{All: true, Traits: true}, []string{"adult", "never_ordered", "late"}},
		{"new profile's order", Inputs{All: true, Event: "Order Completed", Aggs: []bool{true, false}}, []string{"buyer", "never_ordered", "late"}},
	}
	// Time alone re-evaluates the segments reading the clock, not those
	// decided by events.
	if got := reevaluated(segs, &Inputs{Time: true}); strings.Join(got, ",") != "browsing,late,recent" {
		t.Errorf("time alone re-evaluates %v, want browsing, late and recent", got)
	}
	for _, tc := range tests {
		got := reevaluated(segs, &tc.in)
		want := append(append([]string(nil), tc.needed...), always...)
		sort.Strings(want)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: re-evaluates %v, want %v", tc.name, got, want)
		}
	}
	// A changed segment re-evaluates those reading it.
	if got := reevaluated(segs, &Inputs{}, "adult"); strings.Join(got, ",") != "adult_buyer,on_sale" {
		t.Errorf("after adult changed, re-evaluates %v, want adult_buyer (and on_sale, reading the event)", got)
	}
}

// reevaluated returns, sorted, the segments that applying in re-evaluates
// when the segments named in changed change in the pass.
func reevaluated(s *Segments, in *Inputs, changed ...string) []string {
	pending := s.candidates(in, nil)
	for _, seg := range s.List() {
		if slices.Contains(changed, seg.Name) {
			pending.or(seg.dependents)
		}
	}
	var names []string
	for _, seg := range s.List() {
		noEvent := in.Time || in.Backfill != nil
		if pending[seg.pos/64]&(1<<(seg.pos%64)) != 0 && !(noEvent && seg.readsEvent) {
			names = append(names, seg.Name)
		}
	}
	sort.Strings(names)
	return names
}

// TestSegmentNeedsManyInputs: past 64 aggregates and segments, an
// event still re-evaluates exactly the segments reading what it changed.
func TestSegmentNeedsManyInputs(t *testing.T) {
	var aggDecls []AggregateConfig
	var segDecls []SegmentConfig
	for i := range 70 {
		aggDecls = append(aggDecls, AggregateConfig{Name: fmt.Sprintf("a%02d", i), Event: fmt.Sprintf("E%d", i), Func: "count"})
		segDecls = append(segDecls, SegmentConfig{fmt.Sprintf("s%02d", i), fmt.Sprintf("a%02d > 0", i)})
	}
	segDecls = append(segDecls, SegmentConfig{"last", `segment("s69") && since("E0") < 1h`})
	_, segs := compileModel(t, aggDecls, segDecls, 0)
	touched := make([]bool, 70)
	touched[69] = true
	for _, tc := range []struct {
		in      Inputs
		changed string
		want    string
	}{
		{Inputs{Event: "E69", Aggs: touched}, "", "s69"},
		{Inputs{Event: "E0"}, "", "last"},
		{Inputs{}, "s69", "last"},
	} {
		if got := reevaluated(segs, &tc.in, tc.changed); strings.Join(got, ",") != tc.want {
			t.Errorf("%+v, %q changed: re-evaluates %v, want %v", tc.in, tc.changed, got, tc.want)
		}
	}
}

// TestWake scripts events and the passing of time with a fake clock: the
// store schedules each profile for the instant time alone may change its
// segments, and Wake applies those changes at that instant with no event.
func TestWake(t *testing.T) {
	aggs, segs := compileModel(t, []AggregateConfig{
		{Name: "cart_adds_1h", Event: "Product Added", Func: "count", Window: time.Hour},
	}, []SegmentConfig{
		{"cart_1h", `cart_adds_1h > 0`},
		{"abandoned", `since("Product Added") < 2h && since("Order Completed") > since("Product Added")`},
		{"lapsed", `since("Order Completed") > 3h && since("Order Completed") < 1000d`},
		{"lapsed_fr", `segment("lapsed") && traits.country == "FR"`},
		{"on_sale", `properties.sale == true && since("Product Added") < 1h`}, // decided by events
	}, 0)
	clock := t0 // a whole hour: window buckets start on it
	o := testOptions()
	o.Aggregates, o.Segments, o.Now = aggs, segs, func() time.Time { return clock }
	dir := t.TempDir()
	s := openWith(t, dir, o)
	defer func() { s.Close() }()
	p := event.NewParser(event.DefaultLimits())
	offset := int64(0)
	changes := func(b *Batch) string {
		var got []string
		for _, c := range b.Changes() {
			sign := "-"
			if c.Entered {
				sign = "+"
			}
			if c.MessageID != "" || !c.At.Equal(clock) {
				t.Errorf("change %+v: want no messageId and the time %v", c, clock)
			}
			got = append(got, c.Key+sign+c.Segment)
		}
		return strings.Join(got, " ")
	}
	send := func(at time.Duration, user, ev string) string {
		t.Helper()
		clock = t0.Add(at)
		e, err := p.Parse([]byte(`{"userId": "`+user+`", "timestamp": "`+clock.Format(time.RFC3339)+`", `+ev+`}`), 0, clock)
		if err != nil {
			t.Fatal(err)
		}
		e.MessageID = ""
		b := s.Begin()
		if _, err := b.Apply(&e); err != nil {
			t.Fatal(err)
		}
		got := changes(b)
		offset++
		if err := b.Commit(offset); err != nil {
			t.Fatal(err)
		}
		return got
	}
	wake := func(at time.Duration, limit int) (string, int) {
		t.Helper()
		clock = t0.Add(at)
		b := s.Begin()
		n, err := b.Wake(clock, limit)
		if err != nil {
			t.Fatal(err)
		}
		got := changes(b)
		if err := b.Commit(offset); err != nil {
			t.Fatal(err)
		}
		return got, n
	}
	nextWake := func() time.Duration {
		at, ok := s.NextWake()
		if !ok {
			return -1
		}
		return at.Sub(t0)
	}
	const ms = time.Millisecond
	steps := []struct {
		at        time.Duration
		user, ev  string // empty: time alone, a wake at at
		want      string
		nextWake  time.Duration // -1: none
		wakeTaken int
	}{
		{0, "a", `"type": "identify", "traits": {"country": "FR"}`, "", -1, 0},
		{time.Minute, "a", `"type": "track", "event": "Product Added"`, "a+abandoned a+cart_1h", 62*time.Minute + ms, 0},
		{2 * time.Minute, "b", `"type": "track", "event": "Product Added", "properties": {"sale": true}`, "b+abandoned b+cart_1h b+on_sale", 62*time.Minute + ms, 0},
		{30 * time.Minute, "a", `"type": "track", "event": "Order Completed", "properties": {"total": 5}`, "a-abandoned", 62*time.Minute + ms, 0},
		// Nothing due yet: a wake takes nobody.
		{61 * time.Minute, "", "", "", 62*time.Minute + ms, 0},
		// a's cart add leaves the window (its 2-minute bucket has passed
		// the hour); b's is in the next bucket. on_sale is decided by
		// events: time does not touch it.
		{62*time.Minute + ms, "", "", "a-cart_1h", 64*time.Minute + ms, 1},
		{64*time.Minute + ms, "", "", "b-cart_1h", 2*time.Hour + time.Minute + ms, 1},
		// a: Product Added 2 h ago (the abandoned bound; no change, it
		// has ordered since); b leaves abandoned at 2h2m.
		{2*time.Hour + time.Minute + ms, "", "", "", 2*time.Hour + 2*time.Minute + ms, 1},
		{2*time.Hour + 2*time.Minute + ms, "", "", "b-abandoned", 3*time.Hour + 30*time.Minute + ms, 1},
		// a enters lapsed 3 h after its order, and lapsed_fr with it.
		{3*time.Hour + 30*time.Minute + ms, "", "", "a+lapsed a+lapsed_fr", 1000*24*time.Hour + 30*time.Minute + ms, 1},
	}
	for _, st := range steps {
		var got string
		if st.user == "" {
			var n int
			got, n = wake(st.at, 100)
			if n != st.wakeTaken {
				t.Errorf("wake at %v took %d profiles, want %d", st.at, n, st.wakeTaken)
			}
		} else {
			got = send(st.at, st.user, st.ev)
		}
		if got != st.want {
			t.Errorf("at %v (%s): changes %q, want %q", st.at, st.ev, got, st.want)
		}
		if next := nextWake(); next != st.nextWake {
			t.Errorf("at %v (%s): next wake at %v, want %v", st.at, st.ev, next, st.nextWake)
		}
	}
	if got := s.SegmentSizes(); got["lapsed"] != 1 || got["cart_1h"] != 0 || got["abandoned"] != 0 || got["on_sale"] != 1 {
		t.Errorf("sizes: %v", got)
	}

	// The schedule and the last wake survive a restart.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openWith(t, dir, o)
	if next := nextWake(); next != 1000*24*time.Hour+30*time.Minute+ms {
		t.Errorf("next wake after reopening: %v", next)
	}
	if at, ok, err := s.LastWake(); err != nil || !ok || !at.Equal(t0.Add(3*time.Hour+30*time.Minute+ms)) {
		t.Errorf("last wake after reopening: %v %v %v", at, ok, err)
	}

	// A wake takes at most limit profiles, in schedule order; the rest
	// stay due. (Segments change in evaluation order: by name, after the
	// segments they read.)
	for i, u := range []string{"c", "d", "e"} {
		send(4*time.Hour+time.Duration(i)*time.Minute, u, `"type": "track", "event": "Product Added"`)
	}
	if got, n := wake(6*time.Hour, 2); n != 2 || got != "c-abandoned c-cart_1h d-cart_1h" {
		t.Errorf("limited wake: %q, %d profiles", got, n)
	}
	if next := nextWake(); next != 5*time.Hour+4*time.Minute+ms {
		t.Errorf("next wake after a limited wake: %v", next)
	}
	if got, n := wake(6*time.Hour, 2); n != 1 || got != "e-cart_1h" {
		t.Errorf("second wake: %q, %d profiles", got, n)
	}
}

// TestBackfill changes the segments of a store that holds profiles: the
// new and changed segments are evaluated for every profile, a batch at a
// time, and the removed ones emptied, each change recorded once; a model
// changed again in the middle of a backfill leaves nothing stale.
func TestBackfill(t *testing.T) {
	model := func(decls ...SegmentConfig) *Model {
		t.Helper()
		segs, err := CompileSegments(decls, &Aggregates{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		return &Model{Segments: segs}
	}
	a := model(SegmentConfig{"adult", `traits.age >= 18`}, SegmentConfig{"old", `traits.age > 0`},
		SegmentConfig{"sale", `properties.sale == true`})
	b := model(SegmentConfig{"adult", `traits.age >= 21`}, SegmentConfig{"fr", `traits.country == "FR"`},
		SegmentConfig{"fr_adult", `segment("fr") && segment("adult")`}, SegmentConfig{"sale", `properties.sale == true`})
	c := model(SegmentConfig{"adult", `traits.age >= 21`}, SegmentConfig{"fr", `traits.country == "DE"`},
		SegmentConfig{"fr_adult", `segment("fr") && segment("adult")`}, SegmentConfig{"sale", `properties.sale == true`})

	o := testOptions()
	o.Model = *a
	o.Now = func() time.Time { return t0 }
	dir := t.TempDir()
	s := openWith(t, dir, o)
	defer func() { s.Close() }()
	p := event.NewParser(event.DefaultLimits())
	users := []string{`"u1", "traits": {"age": 19, "country": "FR"}`, `"u2", "traits": {"age": 30, "country": "FR"}`,
		`"u3", "traits": {"age": 40, "country": "DE"}`, `"u4", "traits": {"age": 12, "country": "FR"}`, `"u5", "traits": {"age": 25}`}
	batch := s.Begin()
	for _, u := range users {
		e := parse(t, p, `{"type": "identify", "userId": `+u+`}`)
		if _, err := batch.Apply(&e); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Commit(5); err != nil {
		t.Fatal(err)
	}
	if _, pending, _ := s.BackfillPending(); pending {
		t.Fatal("a backfill is pending before any change")
	}

	backfill := func(limit int) ([]string, int) { return walkBackfill(t, s, limit, 5) }
	s.SetModel(b)
	changes, batches := backfill(2)
	want := "u1+fr u1-adult u1-old u2+fr u2+fr_adult u2-old u3-old u4+fr u4-old u5-old"
	if strings.Join(changes, " ") != want || batches != 3 {
		t.Errorf("backfill: %d batches, changes\n%s\nwant\n%s", batches, strings.Join(changes, " "), want)
	}
	if got := s.SegmentSizes(); got["adult"] != 3 || got["fr"] != 3 || got["fr_adult"] != 1 || got["old"] != 0 {
		t.Errorf("sizes after the backfill: %v", got)
	}
	if changes, _ := backfill(2); len(changes) != 0 {
		t.Errorf("a second backfill changed %v", changes)
	}

	// Interrupted: one batch toward c, then back to b; the two profiles
	// c changed are put right.
	s.SetModel(c)
	first := s.Begin()
	if n, done, err := first.Backfill(2); err != nil || n != 2 || done {
		t.Fatalf("first batch toward c: %d, %v, %v", n, done, err)
	}
	if err := first.Commit(5); err != nil {
		t.Fatal(err)
	}
	s.SetModel(b)
	if changes, _ := backfill(10); strings.Join(changes, " ") != "u1+fr u2+fr u2+fr_adult" {
		t.Errorf("back to b: changes %v", changes)
	}
	for key, want := range map[string]string{"u1": "fr", "u2": "adult fr fr_adult", "u3": "adult", "u4": "fr", "u5": "adult"} {
		prof, err := s.Profile(key)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(slices.Sorted(maps.Keys(prof.Segments)), " "); got != want {
			t.Errorf("%s: segments %q, want %q", key, got, want)
		}
	}

	// The evaluated definitions survive a restart; a configuration
	// changed while the store was closed backfills when it opens.
	s.Close()
	o.Model = *b
	s = openWith(t, dir, o)
	if _, pending, _ := s.BackfillPending(); pending {
		t.Error("a backfill is pending after reopening with the same model")
	}
	s.Close()
	o.Model = *c
	s = openWith(t, dir, o)
	if changes, _ := backfill(100); strings.Join(changes, " ") != "u1-fr u2-fr u2-fr_adult u3+fr u3+fr_adult u4-fr" {
		t.Errorf("backfill at open: %v", changes)
	}
}

// walkBackfill runs backfill batches of limit, committed at offset, until
// the walk is over, and returns the changes ("key+segment" entered,
// "key-segment" exited), sorted, and the number of batches.
func walkBackfill(t *testing.T, s *Store, limit int, offset int64) (changes []string, batches int) {
	t.Helper()
	for {
		if _, pending, err := s.BackfillPending(); err != nil || !pending {
			if err != nil {
				t.Fatal(err)
			}
			sort.Strings(changes)
			return changes, batches
		}
		b := s.Begin()
		if _, _, err := b.Backfill(limit); err != nil {
			t.Fatal(err)
		}
		for _, c := range b.Changes() {
			sign := "-"
			if c.Entered {
				sign = "+"
			}
			changes = append(changes, c.Key+sign+c.Segment)
		}
		if err := b.Commit(offset); err != nil {
			t.Fatal(err)
		}
		batches++
	}
}

// TestIncrementalEvaluation: re-evaluating only the segments an event
// may have changed gives exactly the memberships and changes of
// re-evaluating every segment on every event, over generated traffic
// under a model like the sample config's.
func TestIncrementalEvaluation(t *testing.T) {
	aggDecls := []AggregateConfig{
		{Name: "track_calls_30m", Event: "*", Func: "count", Window: 30 * time.Minute},
		{Name: "product_views_7d", Event: "Product Viewed", Func: "count", Window: 7 * 24 * time.Hour},
		{Name: "shoe_views_7d", Event: "Product Viewed", Where: `properties.category == "shoes"`, Func: "count", Window: 7 * 24 * time.Hour},
		{Name: "categories_30d", Event: "Product Viewed", Func: "distinct", Property: "category", Window: 30 * 24 * time.Hour},
		{Name: "cart_adds_1h", Event: "Product Added", Func: "count", Window: time.Hour},
		{Name: "orders_365d", Event: "Order Completed", Func: "count", Window: 365 * 24 * time.Hour},
		{Name: "spend_365d", Event: "Order Completed", Func: "sum", Property: "total", Window: 365 * 24 * time.Hour},
		{Name: "first_order", Event: "Order Completed", Func: "first_seen"},
	}
	segDecls := append([]SegmentConfig{
		{"cart_abandoner", `cart_adds_1h > 0 && since("Order Completed") > 1h`},
		{"shoe_lover", `shoe_views_7d >= 2`},
		{"window_shopper", `product_views_7d >= 3 && orders_365d == 0`},
		{"browser", `track_calls_30m >= 4 || categories_30d >= 3`},
		{"repeat_buyer", `orders_365d >= 2`},
		{"big_spender", `spend_365d >= 200`},
		{"new_buyer", `now() - first_order < 1d`},
		{"no_orders", `orders_365d == 0 && !segment("cart_abandoner")`},
		{"french_adult", `traits.country == "FR" && traits.age >= 18`},
		{"vip", `segment("big_spender") && segment("repeat_buyer")`},
		{"into_shoes", `interest("shoes") > 0.3`},
		{"ads_allowed", `consent("Advertising")`},
		{"pricey_view", `properties.price > 100`},
		{"lapsed", `since("Order Completed") > 12h`},
		{"recent_buyer", `rfm.recency < 1`},
	}, RFMSegments()...)
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	open := func(everything bool) *Store {
		aggs, segs := compileModel(t, aggDecls, segDecls, 0)
		if everything {
			for i := range segs.byInput {
				segs.byInput[i] = segs.all
			}
			segs.alwaysSet, segs.newProfile = segs.all, segs.all
			for _, seg := range segs.order {
				seg.Rule.Deps.Now = true // every timed rule's next change worked out (movesWithTime)
			}
		}
		o := testOptions()
		o.Aggregates, o.Segments, o.Now = aggs, segs, func() time.Time { return clock }
		s := openWith(t, t.TempDir(), o)
		t.Cleanup(func() { s.Close() })
		return s
	}
	incremental, everything := open(false), open(true)
	wl := workload.DefaultConfig()
	wl.Customers, wl.Start, wl.Step = 2_000, clock, time.Minute // two days and more, for rfm.recency
	gen := workload.New(wl)
	p := event.NewParser(event.DefaultLimits())
	changes := func(b *Batch) []string {
		var out []string
		for _, c := range b.Changes() {
			out = append(out, fmt.Sprintf("%s %s %v %s", c.Key, c.Segment, c.Entered, c.MessageID))
		}
		sort.Strings(out)
		return out
	}
	entered, offset := 0, int64(0)
	for batch := range 60 {
		// A batch is evaluated at one instant, after the wake-ups due by
		// then: what time alone changes, both stores change at a wake-up.
		var raws [][]byte
		var keys []string
		for range 250 {
			key, raw := gen.Next()
			ev, err := p.Parse(raw, 0, clock)
			if err != nil {
				t.Fatal(err)
			}
			// A parsed event's values live until the next parse: parsed
			// again below.
			raws, keys = append(raws, raw), append(keys, key)
			if next := ev.Time.Add(time.Second); next.After(clock) {
				clock = next
			}
		}
		offset++
		for _, s := range []*Store{incremental, everything} {
			b := s.Begin()
			if _, err := b.Wake(clock, 1<<20); err != nil {
				t.Fatal(err)
			}
			if err := b.Commit(offset); err != nil {
				t.Fatal(err)
			}
		}
		bi, be := incremental.Begin(), everything.Begin()
		for _, raw := range raws {
			for _, b := range []*Batch{bi, be} {
				ev, err := p.Parse(raw, 0, clock)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := b.Apply(&ev); err != nil {
					t.Fatal(err)
				}
			}
		}
		ci, ce := changes(bi), changes(be)
		if !slices.Equal(ci, ce) {
			t.Fatalf("batch %d: changes differ:\nincremental %q\n every rule %q", batch, ci, ce)
		}
		entered += len(ci)
		offset++
		for _, b := range []*Batch{bi, be} {
			if err := b.Commit(offset); err != nil {
				t.Fatal(err)
			}
		}
		for _, key := range keys {
			pi, err := incremental.Profile(key)
			if err != nil {
				t.Fatal(err)
			}
			pe, err := everything.Profile(key)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(pi.Segments, pe.Segments) {
				t.Fatalf("batch %d, profile %s: segments %v, evaluating every rule %v", batch, key, pi.Segments, pe.Segments)
			}
		}
	}
	if entered < 1000 {
		t.Errorf("only %d changes: the traffic does not exercise the segments", entered)
	}
}
