package state

import (
	"fmt"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/event"
)

func TestOfferFeedback(t *testing.T) {
	dir := t.TempDir()
	o := testOptions()
	o.Offers = map[string]bool{"shoes-10": true}
	s := openWith(t, dir, o)
	p := event.NewParser(event.DefaultLimits())
	d1 := event.Decision{Placement: "home", Offer: "shoes-10", At: received.UnixMilli(), Nonce: 1}.ID()
	d2 := event.Decision{Placement: "home", Offer: "shoes-10", Control: true, At: received.UnixMilli(), Nonce: 2}.ID()
	other := event.Decision{Placement: "home", Offer: "retired", At: received.UnixMilli(), Nonce: 3}.ID()
	feedback := func(name, id string, n int, ts string) string {
		return fmt.Sprintf(`{"type": "track", "userId": "u", "event": %q, "messageId": "m%d", "timestamp": %q, "properties": {"decision_id": %q, "order_id": "o%d"}}`, name, n, ts, id, n)
	}
	b := s.Begin()
	for i, e := range []string{
		feedback(event.OfferViewed, d1, 1, "2026-05-01T10:00:00Z"),
		feedback(event.OfferViewed, d1, 2, "2026-05-01T10:00:01Z"), // the same decision, re-sent with another messageId
		feedback(event.OfferClicked, d1, 3, "2026-05-01T10:00:05Z"),
		feedback(event.OfferViewed, d2, 4, "2026-05-01T11:00:00Z"),
		feedback(event.OrderCompleted, d2, 5, "2026-05-01T11:30:00Z"),
		feedback(event.OrderCompleted, d2, 6, "2026-05-01T11:31:00Z"), // a second order: one conversion per decision
		feedback(event.OfferViewed, other, 7, "2026-05-01T12:00:00Z"),
	} {
		ev := parse(t, p, e)
		if ok, err := b.Apply(&ev); !ok || err != nil {
			t.Fatalf("event %d not applied: %v", i, err)
		}
	}
	if err := b.Commit(7); err != nil {
		t.Fatal(err)
	}
	want := map[OfferStatKey]OfferCounts{
		{Offer: "shoes-10", Placement: "home", Arm: Treatment}: {Impressions: 1, Clicks: 1},
		{Offer: "shoes-10", Placement: "home", Arm: Control}:   {Impressions: 1, Conversions: 1},
	}
	check := func(s *Store) {
		t.Helper()
		got := s.OfferStats()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("stats %v, want %v", got, want)
		}
		prof, err := s.Profile("u")
		if err != nil {
			t.Fatal(err)
		}
		at := func(ts string) int64 { tm, _ := time.Parse(time.RFC3339, ts); return tm.UnixMilli() }
		if n := prof.Impressions("shoes-10", 0); n != 2 {
			t.Errorf("impressions %d, want 2", n)
		}
		if n := prof.Impressions("shoes-10", at("2026-05-01T10:30:00Z")); n != 1 {
			t.Errorf("impressions since 10:30 %d, want 1", n)
		}
		if c, v := prof.LastResponse("shoes-10"); c != at("2026-05-01T10:00:05Z") || v != at("2026-05-01T11:30:00Z") {
			t.Errorf("last click %d, conversion %d", c, v)
		}
		if !prof.Viewed("shoes-10", DecisionHash(d1)) || prof.Viewed("shoes-10", DecisionHash("nope")) {
			t.Error("Viewed does not tell applied impressions")
		}
		if prof.Impressions("retired", 0) != 0 {
			t.Error("feedback on an unknown offer was kept")
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openWith(t, dir, o) // statistics and histories survive a restart
	defer s.Close()
	check(s)
}

func TestOfferHistoryBounded(t *testing.T) {
	p := &Profile{}
	known := map[string]bool{}
	parser := event.NewParser(event.DefaultLimits())
	for i := range MaxOffers + 10 {
		offer := fmt.Sprintf("o%d", i)
		known[offer] = true
		for j := range MaxOfferDecisions + 5 {
			id := event.Decision{Placement: "x", Offer: offer, At: int64(j), Nonce: uint32(j)}.ID()
			ev := parse(t, parser, fmt.Sprintf(`{"type": "track", "userId": "u", "event": "Offer Viewed", "timestamp": "2026-05-01T10:%02d:%02dZ", "properties": {"decision_id": %q}}`, i%60, j%60, id))
			if _, _, ok := p.applyFeedback(&ev, known); !ok {
				t.Fatalf("impression %d of %s not counted", j, offer)
			}
		}
	}
	if len(p.offers) != MaxOffers {
		t.Errorf("%d offers kept, want %d", len(p.offers), MaxOffers)
	}
	for id, h := range p.offers {
		if len(h.decisions) != MaxOfferDecisions {
			t.Errorf("%s keeps %d decisions, want %d", id, len(h.decisions), MaxOfferDecisions)
		}
	}
	if _, ok := p.offers["o0"]; ok {
		t.Error("the least recently active offer was kept")
	}
}

func TestStatKeyRoundTrip(t *testing.T) {
	for _, k := range []OfferStatKey{{Offer: "a", Placement: "b"}, {Offer: "x~y", Placement: "", Arm: Control}} {
		got, err := parseStatKey(statKey(k))
		if err != nil || got != k {
			t.Errorf("%+v: got %+v, %v", k, got, err)
		}
	}
	for _, bad := range []string{"", "s", "s\x05ab", "x\x01a\x01b\x00", "s\x01a\x01b\x07"} {
		if _, err := parseStatKey([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
