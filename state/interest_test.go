package state

import (
	"math"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/event"
)

func TestInterests(t *testing.T) {
	c := DefaultInterests()
	c.HalfLife = 24 * time.Hour
	c.Max = 3
	p := event.NewParser(event.DefaultLimits())
	prof := &Profile{}
	apply := func(at time.Duration, ev string) {
		t.Helper()
		e, err := p.Parse([]byte(`{"type": "track", "userId": "u", "timestamp": "`+t0.Add(at).Format(time.RFC3339)+`", `+ev+`}`), 0, t0.Add(48*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		prof.Apply(&e, true)
		c.apply(prof, &e)
	}
	apply(0, `"event": "Product Viewed", "properties": {"category": "shoes"}`)           // shoes 1
	apply(0, `"event": "Product Added", "properties": {"category": "shoes"}`)            // shoes 4
	apply(24*time.Hour, `"event": "Product Viewed", "properties": {"category": "bags"}`) // shoes 2 (a half-life later), bags 1
	apply(24*time.Hour, `"event": "Signed Up", "properties": {"category": "toys"}`)      // not weighted
	near := func(got, want float64, what string) {
		t.Helper()
		if math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	now := t0.Add(24 * time.Hour)
	near(prof.Affinity(c, "shoes"), 2.0/3, "shoes")
	near(prof.Affinity(c, "bags"), 1.0/3, "bags")
	near(prof.Affinity(c, "toys"), 0, "toys")
	// A late view of shoes (12 hours ago, at 12h) counts, decayed: 2^-0.5.
	apply(12*time.Hour, `"event": "Product Viewed", "properties": {"category": "shoes"}`)
	near(prof.Affinity(c, "shoes"), (2+math.Sqrt(0.5))/(3+math.Sqrt(0.5)), "shoes after a late view")
	// Orders count their products' categories; the bound keeps the strongest.
	apply(24*time.Hour, `"event": "Order Completed", "properties": {"products": [{"category": "books", "price": 1}, {"category": "home", "price": 2}]}`)
	top := prof.Affinities(c, now)
	if len(top) != 3 || top[0].Category != "books" && top[0].Category != "home" {
		t.Errorf("top interests %v: want 3, led by the order's categories", top)
	}
	if _, kept := prof.interests["bags"]; kept {
		t.Errorf("the weakest category was kept past the bound: %v", prof.interests)
	}
	sum := 0.0
	for _, a := range top {
		sum += a.Affinity
	}
	near(sum, 1, "sum of affinities")
	// interest() reads the same shares, past the bound and read back
	// from storage.
	decoded, err := DecodeProfile(prof.AppendEncode(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range top {
		near(prof.Affinity(c, a.Category), a.Affinity, a.Category)
		near(decoded.Affinity(c, a.Category), a.Affinity, a.Category+" read back")
	}
}

func TestConsent(t *testing.T) {
	p := event.NewParser(event.DefaultLimits())
	prof := &Profile{}
	for _, s := range []string{
		`{"type": "page", "userId": "u", "timestamp": "2026-01-02T00:00:00Z", "context": {"consent": {"categoryPreferences": {"Advertising": true, "Analytics": false}}}}`,
		`{"type": "track", "userId": "u", "event": "E", "timestamp": "2026-01-01T00:00:00Z", "context": {"consent": {"categoryPreferences": {"Advertising": false}}}}`, // older: ignored
		`{"type": "identify", "userId": "u", "timestamp": "2026-01-03T00:00:00Z", "context": {"consent": {"categoryPreferences": {"Analytics": true, "Bad": "yes"}}}}`,
	} {
		e, err := p.Parse([]byte(s), 0, time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		prof.Apply(&e, false)
	}
	if !prof.Consent("Advertising") || !prof.Consent("Analytics") || prof.Consent("Bad") || prof.Consent("Other") {
		t.Errorf("consents %v", prof.consents)
	}
}
