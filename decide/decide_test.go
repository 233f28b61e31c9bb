package decide_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/valyala/fastjson"

	"github.com/tailorcdp/tailor/decide"
	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/internal/jsonenc"
	"github.com/tailorcdp/tailor/state"
)

// store is a real partition store with a decider in front, applying
// events the way the stream does.
type store struct {
	t      testing.TB
	s      *state.Store
	d      *decide.Decider
	cfg    decide.Config // d's
	parser *event.Parser
	now    time.Time
	n      int
	offset int64
}

func (s *store) Profile(key string) (*state.Profile, error) { return s.s.Profile(key) }
func (s *store) OfferStats() map[state.OfferStatKey]state.OfferCounts {
	return s.s.OfferStats()
}
func (s *store) Products(id string) []*state.Product {
	if p := s.s.Product(id); p != nil {
		return []*state.Product{p}
	}
	return nil
}
func (s *store) EachProduct(fn func(*state.Product)) { s.s.EachProduct(fn) }
func (s *store) Quintiles() state.RFMQuintiles {
	return s.s.Population().Quintiles()
}

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func newStore(t testing.TB, segments map[string]string, placements []decide.PlacementConfig, offers []decide.OfferConfig) *store {
	t.Helper()
	aggs, err := state.CompileAggregates([]state.AggregateConfig{{Name: "views_7d", Event: "Product Viewed", Func: "count", Window: 7 * 24 * time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	var decls []state.SegmentConfig
	for name, rule := range segments {
		decls = append(decls, state.SegmentConfig{Name: name, Rule: rule})
	}
	segs, err := state.CompileSegments(decls, aggs, 0)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := decide.Compile(placements, offers, segs.Schema())
	if err != nil {
		t.Fatal(err)
	}
	st := &store{t: t, parser: event.NewParser(event.DefaultLimits()), now: t0}
	o := state.DefaultOptions()
	o.MemTableSize, o.BlockCacheSize = 2<<20, 1<<20
	o.Aggregates, o.Segments, o.Interests, o.Products = aggs, segs, state.DefaultInterests(), state.DefaultProducts()
	o.Offers = cat.FeedbackIDs()
	o.Now = func() time.Time { return st.now }
	if st.s, err = state.Open(t.TempDir(), o); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.s.Close() })
	st.cfg = decide.Config{Catalog: cat, Segments: segs, Interests: o.Interests, Products: o.Products,
		Now: func() time.Time { return st.now }, StatsMaxAge: time.Nanosecond}
	st.d = decide.New(st.cfg, st)
	return st
}

// apply applies events given as JSON objects (without messageId and
// timestamp, which it sets) in one batch.
func (s *store) apply(events ...string) {
	s.t.Helper()
	b := s.s.Begin()
	for _, e := range events {
		s.n++
		e = fmt.Sprintf(`{"messageId": "m%d", "timestamp": %q, %s`, s.n, s.now.Format(time.RFC3339Nano), strings.TrimPrefix(e, "{"))
		ev, err := s.parser.Parse([]byte(e), 0, s.now)
		if err != nil {
			s.t.Fatalf("%s: %v", e, err)
		}
		if _, err := b.Apply(&ev); err != nil {
			s.t.Fatal(err)
		}
		if b.Full() {
			s.offset++
			if err := b.Commit(s.offset); err != nil {
				s.t.Fatal(err)
			}
			b = s.s.Begin()
		}
	}
	s.offset++
	if err := b.Commit(s.offset); err != nil {
		s.t.Fatal(err)
	}
}

// answer is a decoded decide answer.
type answer struct{ decide.Answer }

func (s *store) decide(body string) answer {
	s.t.Helper()
	var p fastjson.Parser
	req, err := decide.ParseRequest(&p, []byte(body))
	if err != nil {
		s.t.Fatalf("%s: %v", body, err)
	}
	out, err := s.d.Decide(nil, &req)
	if err != nil {
		s.t.Fatalf("%s: %v", body, err)
	}
	// Strictly: decide.Answer documents every field the decider writes.
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	var a answer
	if err := dec.Decode(&a.Answer); err != nil {
		s.t.Fatalf("answer does not decode into decide.Answer: %v\n%s", err, out)
	}
	return a
}

// offers returns the offer ids answered for a placement, "fallback:" marked.
func (a answer) offers(placement string) string {
	var ids []string
	for _, o := range a.Decisions[placement].Offers {
		id := o.OfferID
		if o.Fallback {
			id = "fallback:" + id
		}
		ids = append(ids, id)
	}
	return strings.Join(ids, ",")
}

func TestDecideScript(t *testing.T) {
	s := newStore(t,
		map[string]string{"shoe_fan": `views_7d >= 2`, "french": `traits.country == "FR"`},
		[]decide.PlacementConfig{{Name: "hero", Fallback: "welcome"}, {Name: "side", Count: 2, Arbitration: decide.ByScore, Fallback: "welcome"}},
		[]decide.OfferConfig{
			{ID: "welcome", Placements: []string{"hero", "side"}, Content: json.RawMessage(`{"title": "Hello"}`)},
			{ID: "shoes", Placements: []string{"hero"}, When: `segment("shoe_fan")`, Priority: 10, CapImpressions: 2, CapPer: 24 * time.Hour,
				Cooldown: 48 * time.Hour, CooldownAfter: "click", Content: json.RawMessage(`{"title": "Shoes", "link": "/shoes"}`)},
			{ID: "paris", Placements: []string{"hero"}, When: `segment("french")`, Priority: 5, Start: t0.Add(time.Hour), End: t0.Add(2 * time.Hour)},
			{ID: "page-shoes", Placements: []string{"side"}, When: `context.category == "shoes"`, Score: `views_7d * 2`},
			{ID: "page-any", Placements: []string{"side"}, Score: `3`},
		})
	hero := `{"userId": "u1", "placements": ["hero"]}`

	// Unknown visitor: the fallback.
	if a := s.decide(hero); a.Known || a.offers("hero") != "fallback:welcome" {
		t.Errorf("unknown visitor: %+v", a)
	}
	s.apply(`{"type": "identify", "userId": "u1", "traits": {"country": "FR"}}`)
	if got := s.decide(hero).offers("hero"); got != "welcome" {
		t.Errorf("known, no segment: %s", got)
	}
	// paris runs from t0+1h to t0+2h.
	s.now = t0.Add(90 * time.Minute)
	if got := s.decide(hero).offers("hero"); got != "paris" {
		t.Errorf("in paris's schedule: %s", got)
	}
	s.apply(`{"type": "track", "userId": "u1", "event": "Product Viewed"}`, `{"type": "track", "userId": "u1", "event": "Product Viewed"}`)
	a := s.decide(hero)
	if got := a.offers("hero"); got != "shoes" {
		t.Fatalf("shoe fan: %s, want the higher priority shoes", got)
	}
	if c := string(a.Decisions["hero"].Offers[0].Content); c != `{"title":"Shoes","link":"/shoes"}` {
		t.Errorf("content %s", c)
	}
	// Two answers of shoes reach its cap of 2 even before their
	// impressions arrive; the third call falls through to paris.
	first := a.Decisions["hero"].Offers[0].DecisionID
	second := s.decide(hero).Decisions["hero"].Offers[0].DecisionID
	if got := s.decide(hero).offers("hero"); got != "paris" {
		t.Errorf("over the cap: %s", got)
	}
	for _, id := range []string{first, second} {
		s.apply(fmt.Sprintf(`{"type": "track", "userId": "u1", "event": "Offer Viewed", "properties": {"decision_id": %q}}`, id))
	}
	if got := s.decide(hero).offers("hero"); got != "paris" {
		t.Errorf("impressions applied, still capped: %s", got)
	}
	// A day later the cap has room again; a click starts the cooldown.
	s.now = s.now.Add(25 * time.Hour)
	a = s.decide(hero)
	if got := a.offers("hero"); got != "shoes" {
		t.Errorf("a day later: %s", got)
	}
	s.apply(fmt.Sprintf(`{"type": "track", "userId": "u1", "event": "Offer Clicked", "properties": {"decision_id": %q}}`, a.Decisions["hero"].Offers[0].DecisionID))
	if got := s.decide(hero).offers("hero"); got != "welcome" {
		t.Errorf("cooling down after a click (and paris over): %s", got)
	}
	s.now = s.now.Add(49 * time.Hour)
	if got := s.decide(hero).offers("hero"); got != "shoes" {
		t.Errorf("cooldown over: %s", got)
	}

	// Score arbitration, two offers, with the page context.
	side := `{"userId": "u1", "placements": ["side"], "context": {"category": "shoes"}}`
	if got := s.decide(side).offers("side"); got != "page-shoes,page-any" {
		t.Errorf("side on a shoe page: %s (views_7d*2 = 4 beats 3)", got)
	}
	if got := s.decide(`{"userId": "u1", "placements": ["side"]}`).offers("side"); got != "page-any,welcome" {
		t.Errorf("side elsewhere: %s", got)
	}
	// Unknown placements are errors.
	var p fastjson.Parser
	req, _ := decide.ParseRequest(&p, []byte(`{"userId": "u1", "placements": ["hero", "nope"]}`))
	if _, err := s.d.Decide(nil, &req); err == nil || err.Error() != `placements[1]: unknown placement "nope"` {
		t.Errorf("unknown placement: %v", err)
	}
}

func TestDecideConsent(t *testing.T) {
	s := newStore(t, nil,
		[]decide.PlacementConfig{{Name: "hero", Fallback: "generic"}, {Name: "recent", Kind: decide.KindRecentlyViewed}},
		[]decide.OfferConfig{{ID: "generic", Placements: []string{"hero"}}, {ID: "personal", Placements: []string{"hero"}, Priority: 1}})
	s.d = decide.New(decide.Config{Catalog: s.d.Catalog(), ConsentPurpose: "Personalization", Now: func() time.Time { return s.now }}, s)
	s.apply(`{"type": "track", "userId": "u", "event": "Product Viewed", "properties": {"product_id": "p1"}}`)
	body := `{"userId": "u", "placements": ["hero", "recent"]}`
	if a := s.decide(body); a.Personalised || a.offers("hero") != "fallback:generic" || len(a.Decisions["recent"].Products) != 0 {
		t.Errorf("no consent: %+v", a)
	}
	s.apply(`{"type": "track", "userId": "u", "event": "Consent Updated", "context": {"consent": {"categoryPreferences": {"Personalization": true}}}}`)
	if a := s.decide(body); !a.Personalised || a.offers("hero") != "personal" || len(a.Decisions["recent"].Products) != 1 {
		t.Errorf("consent given: %+v", a)
	}
	withdrawn := `{"userId": "u", "placements": ["hero"], "context": {"consent": {"categoryPreferences": {"Personalization": false}}}}`
	if a := s.decide(withdrawn); a.Personalised {
		t.Errorf("the request's own consent must win: %+v", a)
	}
}

// TestCapsUnderConcurrency: parallel decide calls for one profile answer a
// capped offer no more often than its cap.
func TestCapsUnderConcurrency(t *testing.T) {
	s := newStore(t, nil, []decide.PlacementConfig{{Name: "hero", Fallback: "base"}},
		[]decide.OfferConfig{{ID: "base", Placements: []string{"hero"}},
			{ID: "capped", Placements: []string{"hero"}, Priority: 1, CapImpressions: 3, CapPer: time.Hour}})
	s.apply(`{"type": "track", "userId": "u", "event": "Page"}`)
	var mu sync.Mutex
	var shown []string
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var p fastjson.Parser
			req, _ := decide.ParseRequest(&p, []byte(`{"userId": "u", "placements": ["hero"]}`))
			out, err := s.d.Decide(nil, &req)
			if err != nil {
				t.Error(err)
				return
			}
			id := fastjson.GetString(out, "decisions", "hero", "offers", "0", "decision_id")
			if strings.Contains(id, "~capped~") {
				mu.Lock()
				shown = append(shown, id)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(shown) != 3 {
		t.Fatalf("capped offer answered %d times, cap 3", len(shown))
	}
	var events []string
	for _, id := range shown {
		events = append(events, fmt.Sprintf(`{"type": "track", "userId": "u", "event": "Offer Viewed", "properties": {"decision_id": %q}}`, id))
	}
	s.apply(events...)
	prof, _ := s.s.Profile("u")
	if n := prof.Impressions("capped", 0); n != 3 {
		t.Errorf("%d impressions applied", n)
	}
	if got := s.decide(`{"userId": "u", "placements": ["hero"]}`).offers("hero"); got != "base" {
		t.Errorf("after the impressions: %s", got)
	}
}

// TestLearning simulates visitors: one offer's true click rate is clearly
// higher, and after some rounds the learner serves it most of the time,
// while the control group only ever gets the fallback.
func TestLearning(t *testing.T) {
	s := newStore(t, nil, []decide.PlacementConfig{{Name: "banner", Arbitration: decide.ByLearning, Fallback: "control-offer", Control: 0.2}},
		[]decide.OfferConfig{
			{ID: "control-offer", Placements: []string{"banner"}, Priority: -1, When: `false`},
			{ID: "weak", Placements: []string{"banner"}},
			{ID: "strong", Placements: []string{"banner"}},
			{ID: "middling", Placements: []string{"banner"}},
		})
	rate := map[string]float64{"weak": 0.02, "middling": 0.05, "strong": 0.15, "control-offer": 0.03}
	rng := newRand(1)
	var users []string
	for i := range 400 {
		users = append(users, fmt.Sprintf("v%d", i))
	}
	var seed []string
	for _, u := range users {
		seed = append(seed, fmt.Sprintf(`{"type": "track", "userId": %q, "event": "Page"}`, u))
	}
	s.apply(seed...)
	lastRound := map[string]int{}
	for round := range 30 {
		var feedback []string
		for _, u := range users {
			a := s.decide(fmt.Sprintf(`{"userId": %q, "placements": ["banner"]}`, u))
			d := a.Decisions["banner"]
			o := d.Offers[0]
			if d.Control != (o.OfferID == "control-offer") || d.Control != o.Fallback {
				t.Fatalf("control %v but offer %s (fallback %v)", d.Control, o.OfferID, o.Fallback)
			}
			feedback = append(feedback, fmt.Sprintf(`{"type": "track", "userId": %q, "event": "Offer Viewed", "properties": {"decision_id": %q}}`, u, o.DecisionID))
			if rng.float() < rate[o.OfferID] {
				feedback = append(feedback, fmt.Sprintf(`{"type": "track", "userId": %q, "event": "Offer Clicked", "properties": {"decision_id": %q}}`, u, o.DecisionID))
			}
			if round == 29 {
				lastRound[o.OfferID]++
			}
		}
		s.apply(feedback...)
	}
	treated := lastRound["weak"] + lastRound["middling"] + lastRound["strong"]
	if share := float64(lastRound["strong"]) / float64(treated); share < 0.7 {
		t.Errorf("last round: %v; strong served %.0f%% of treated visitors, want most", lastRound, 100*share)
	}
	if c := lastRound["control-offer"]; c < 40 || c > 120 {
		t.Errorf("control group of %d in 400, want about 20%%", c)
	}
	r := s.d.Report()
	for _, o := range r.Offers {
		if o.Offer == "strong" && (o.Lift == nil || o.Lift.CTR == nil || *o.Lift.CTR < 1) {
			t.Errorf("strong's CTR lift against control: %+v", o.Lift)
		}
	}
	t.Logf("last round %v; report %+v", lastRound, r.Placements)
}

// newRand is a seeded generator, so the simulation is reproducible.
type xorshift struct{ x uint64 }

func newRand(seed uint64) *xorshift { return &xorshift{x: seed*0x9E3779B97F4A7C15 + 1} }
func (r *xorshift) float() float64 {
	r.x ^= r.x << 13
	r.x ^= r.x >> 7
	r.x ^= r.x << 17
	return float64(r.x>>11) / (1 << 53)
}

func TestRecommendations(t *testing.T) {
	s := newStore(t, nil, []decide.PlacementConfig{
		{Name: "recent", Kind: decide.KindRecentlyViewed, Count: 3},
		{Name: "trend", Kind: decide.KindTrending, Count: 2, ByInterest: true},
		{Name: "together", Kind: decide.KindBoughtTogether, Count: 2, ExcludeBought: true},
	}, nil)
	view := func(user, id, category string) string {
		return fmt.Sprintf(`{"type": "track", "userId": %q, "event": "Product Viewed", "properties": {"product_id": %q, "category": %q, "name": "Name of %s"}}`, user, id, category, id)
	}
	order := func(user string, n int, ids ...string) string {
		var items []string
		for _, id := range ids {
			items = append(items, fmt.Sprintf(`{"product_id": %q}`, id))
		}
		return fmt.Sprintf(`{"type": "track", "userId": %q, "event": "Order Completed", "properties": {"order_id": "o%d", "products": [%s]}}`, user, n, strings.Join(items, ","))
	}
	s.apply(
		view("u1", "hat", "hats"), view("u1", "boot", "shoes"), view("u1", "sandal", "shoes"), view("u1", "boot", "shoes"),
		view("u2", "cap", "hats"), view("u2", "cap", "hats"), view("u2", "cap", "hats"), view("u2", "cap", "hats"),
		order("u2", 1, "boot", "laces"), order("u3", 2, "boot", "laces", "polish"), order("u4", 3, "boot", "laces"), order("u5", 4, "boot", "socks"),
		order("u1", 5, "laces"),
	)
	a := s.decide(`{"userId": "u1", "placements": ["recent", "trend", "together"], "context": {"product_id": "boot"}}`)
	ids := func(p string) string {
		var out []string
		for _, pr := range a.Decisions[p].Products {
			out = append(out, pr.ID)
		}
		return strings.Join(out, ",")
	}
	if got := ids("recent"); got != "sandal,hat" {
		t.Errorf("recently viewed %s (boot is on the page)", got)
	}
	// u1's top interest is shoes: boot (on the page) aside, sandal first,
	// then the most popular overall: laces (3 orders x 5) over cap.
	if got := ids("trend"); got != "sandal,laces" {
		t.Errorf("trending %s", got)
	}
	// laces (3) then polish and socks (1); u1 bought laces.
	if got := ids("together"); got != "polish,socks" {
		t.Errorf("bought together %s", got)
	}
	if a.Decisions["recent"].Products[0].Name != "Name of sandal" {
		t.Errorf("description missing: %+v", a.Decisions["recent"].Products[0])
	}
	// Anonymous and without context: trending overall, nothing else.
	a = s.decide(`{"anonymousId": "x", "placements": ["recent", "trend", "together"]}`)
	if got := ids("trend"); got != "boot,laces" || ids("recent") != "" || ids("together") != "" {
		t.Errorf("unknown visitor: %s / %s / %s", ids("recent"), ids("trend"), ids("together"))
	}
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		placements []decide.PlacementConfig
		offers     []decide.OfferConfig
		err        string
	}{
		{[]decide.PlacementConfig{{Name: "a b"}}, nil, `placement name: "a b" has ' ': use letters, digits, _ . : -`},
		{[]decide.PlacementConfig{{Name: "p", Arbitration: "random"}}, []decide.OfferConfig{{ID: "o", Placements: []string{"p"}}}, `placement "p": arbitration "random": want priority, score or learn`},
		{[]decide.PlacementConfig{{Name: "p"}}, nil, `placement "p" has no offers and no fallback`},
		{[]decide.PlacementConfig{{Name: "p", Fallback: "f"}}, nil, `placement "p": fallback offer "f" is not declared`},
		{[]decide.PlacementConfig{{Name: "p", Control: 0.1}}, []decide.OfferConfig{{ID: "o", Placements: []string{"p"}}}, `placement "p": a control group needs a fallback offer to show it`},
		{[]decide.PlacementConfig{{Name: "p", Kind: "random"}}, nil, `placement "p": kind "random": want offers, recently_viewed, trending or bought_together`},
		{[]decide.PlacementConfig{{Name: "r", Kind: decide.KindTrending, Fallback: "x"}}, nil, `placement "r": a trending placement recommends products: arbitration and fallback are for offers`},
		{[]decide.PlacementConfig{{Name: "p"}}, []decide.OfferConfig{{ID: "o", Placements: []string{"p", "q"}}}, `offer "o": placement "q" is not declared under placements`},
		{[]decide.PlacementConfig{{Name: "p"}}, []decide.OfferConfig{{ID: "o", Placements: []string{"p"}, When: `segment("x") &&`}}, `rule "offers.o.when" at 1:16: unexpected end of rule`},
		{[]decide.PlacementConfig{{Name: "p"}}, []decide.OfferConfig{{ID: "o", Placements: []string{"p"}, Score: `"high"`}}, `rule "offers.o.score" at 1:1: the rule must give a number, but gives a string`},
		{[]decide.PlacementConfig{{Name: "p"}}, []decide.OfferConfig{{ID: "o", Placements: []string{"p"}, CapImpressions: 3}}, `offer "o": cap.per is required with cap.impressions (e.g. 24h)`},
		{[]decide.PlacementConfig{{Name: "p"}}, []decide.OfferConfig{{ID: "o", Placements: []string{"p"}, CapImpressions: 99, CapPer: time.Hour}}, `offer "o": cap.impressions 99: want 0 (no cap) to 32`},
		{[]decide.PlacementConfig{{Name: "p"}}, []decide.OfferConfig{{ID: "o", Placements: []string{"p"}, Start: t0, End: t0}}, `offer "o": end 2026-05-01T12:00:00Z is not after start 2026-05-01T12:00:00Z`},
		{[]decide.PlacementConfig{{Name: "p"}}, []decide.OfferConfig{{ID: "o", Placements: []string{"p"}, CooldownAfter: "view"}}, `offer "o": cooldown.after "view": want click, conversion or any`},
		{[]decide.PlacementConfig{{Name: "p"}}, []decide.OfferConfig{{ID: "o", Placements: []string{"p"}, Content: json.RawMessage(`{`)}}, `offer "o": content is not valid JSON`},
		{[]decide.PlacementConfig{{Name: "p"}}, []decide.OfferConfig{{ID: "o", Placements: []string{"p"}}, {ID: "o", Placements: []string{"p"}}}, `offer "o" is declared twice`},
		{[]decide.PlacementConfig{{Name: "p"}}, []decide.OfferConfig{{ID: "o", Placements: []string{"p"}, Trusted: true}}, `offer "o": trusted: content must be an object (title, link, html, ...)`},
		{[]decide.PlacementConfig{{Name: "p"}}, []decide.OfferConfig{{ID: "o", Placements: []string{"p"}, Trusted: true, Content: json.RawMessage(`"<b>hi</b>"`)}}, `offer "o": trusted: content must be an object (title, link, html, ...)`},
		{[]decide.PlacementConfig{{Name: "p"}}, []decide.OfferConfig{{ID: "o", Placements: []string{"p"}, Trusted: true, Content: json.RawMessage(`{"html": ["<b>"]}`)}}, `offer "o": trusted: content.html must be a string of HTML`},
	} {
		segs, _ := state.CompileSegments(nil, nil, 0)
		_, err := decide.Compile(tc.placements, tc.offers, segs.Schema())
		if err == nil || err.Error() != tc.err {
			t.Errorf("error %v\nwant %s", err, tc.err)
		}
	}
}

// TestTrustedOffer: an offer marked trusted says so in its answers (for
// tailor.js, which then inserts its html as markup); others do not. An
// unknown visitor gets the fallbacks, which are these.
func TestTrustedOffer(t *testing.T) {
	s := newStore(t, nil, []decide.PlacementConfig{{Name: "a", Fallback: "markup"}, {Name: "b", Fallback: "text"}}, []decide.OfferConfig{
		{ID: "markup", Placements: []string{"a"}, Trusted: true, Content: json.RawMessage(`{"html": "<em>hi</em>"}`)},
		{ID: "text", Placements: []string{"b"}, Content: json.RawMessage(`{"html": "<em>hi</em>"}`)},
	})
	a := s.decide(`{"anonymousId": "v", "placements": ["a", "b"]}`)
	for _, tc := range []struct {
		placement string
		trusted   bool
	}{{"a", true}, {"b", false}} {
		offers := a.Decisions[tc.placement].Offers
		var content struct{ HTML string }
		if len(offers) == 1 {
			json.Unmarshal(offers[0].Content, &content)
		}
		if len(offers) != 1 || offers[0].Trusted != tc.trusted || content.HTML != "<em>hi</em>" {
			t.Errorf("placement %s: %+v, want trusted %v", tc.placement, offers, tc.trusted)
		}
	}
}

func TestParseRequestErrors(t *testing.T) {
	var p fastjson.Parser
	for _, tc := range []struct{ body, err string }{
		{`{`, `body is not valid JSON: cannot parse JSON: cannot parse object: missing '}'; unparsed tail: ""`},
		{`[]`, "body must be a JSON object, not array"},
		{`{"placements": ["a"]}`, "userId: userId or anonymousId is required"},
		{`{"userId": 5, "placements": ["a"]}`, "userId: must be a string, not number"},
		{`{"userId": "u", "userHash": 5, "placements": ["a"]}`, "userHash: must be a string, not number"},
		{`{"userId": "u"}`, "placements: is required: an array of placement names"},
		{`{"userId": "u", "placements": []}`, "placements: is empty: name at least one placement"},
		{`{"userId": "u", "placements": [1]}`, "placements[0]: must be a string, not number"},
		{`{"userId": "u", "placements": ["a"], "context": "x"}`, "context: must be an object, not string"},
	} {
		_, err := decide.ParseRequest(&p, []byte(tc.body))
		if err == nil || err.Error() != tc.err {
			t.Errorf("%s: error %v\nwant %s", tc.body, err, tc.err)
		}
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(`{"userId": "u1", "placements": ["hero", "recs"], "context": {"product_id": "p1", "category": "shoes"}}`))
	f.Add([]byte(`{"anonymousId": "\u00ff", "placements": ["hero"], "context": null}`))
	f.Add([]byte(`{"userId": "u\u0007", "placements": ["hero"], "context": {"product_id": "p\u0007", "category": "a\u0000\u000b\/b"}}`))
	s := newStore(f, nil, []decide.PlacementConfig{{Name: "hero", Fallback: "o"}, {Name: "recs", Kind: decide.KindBoughtTogether}},
		[]decide.OfferConfig{{ID: "o", Placements: []string{"hero"}, When: `context.category == "shoes"`}})
	f.Fuzz(func(t *testing.T, body []byte) {
		var p fastjson.Parser
		req, err := decide.ParseRequest(&p, body)
		if err != nil {
			return
		}
		// A request written out (to send it on) reads back the same; its
		// strings as valid UTF-8 (what events carry).
		written := req.AppendJSON(nil)
		if !json.Valid(written) {
			t.Fatalf("%q written out as %q: not JSON", body, written)
		}
		var p2 fastjson.Parser
		again, err := decide.ParseRequest(&p2, written)
		if utf8.Valid(body) && (err != nil || again.UserID != req.UserID || again.AnonymousID != req.AnonymousID || again.UserHash != req.UserHash ||
			!slices.Equal(again.Placements, req.Placements) || (again.Context == nil) != (req.Context == nil) ||
			req.Context != nil && string(jsonenc.AppendValue(nil, again.Context)) != string(jsonenc.AppendValue(nil, req.Context))) {
			t.Fatalf("%q written out as %s reads back as %+v, %v", body, req.AppendJSON(nil), again, err)
		}
		out, err := s.d.Decide(nil, &req)
		if err == nil && !json.Valid(out) {
			t.Fatalf("answer is not JSON: %s", out)
		}
	})
}

// TestQueryRequestWrittenAsJSON: a GET decide call's context built from
// its query, sent on to the instance that holds the key, is written as
// JSON that reads back the same, control characters included.
func TestQueryRequestWrittenAsJSON(t *testing.T) {
	query := map[string]string{"userId": "u\x07", "placement": "hero", "category": "a\x00\x0b\"/b", "product_id": "p\x1f"}
	var qp fastjson.Parser
	req, err := decide.QueryRequest(&qp, func(name string) []byte { return []byte(query[name]) },
		func(name string) [][]byte { return [][]byte{[]byte(query[name])} })
	if err != nil {
		t.Fatal(err)
	}
	written := req.AppendJSON(nil)
	if !json.Valid(written) {
		t.Fatalf("written out as %q: not JSON", written)
	}
	var p fastjson.Parser
	again, err := decide.ParseRequest(&p, written)
	if err != nil {
		t.Fatalf("%s reads back with %v", written, err)
	}
	for _, name := range []string{"category", "product_id"} {
		if got := string(again.Context.GetStringBytes(name)); got != query[name] {
			t.Errorf("context.%s reads back %q, want %q (written %s)", name, got, query[name], written)
		}
	}
}
