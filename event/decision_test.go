package event_test

import (
	"testing"
	"time"

	"github.com/tailorcdp/tailor/event"
)

func TestDecisionID(t *testing.T) {
	d := event.Decision{Placement: "home_hero", Offer: "shoes-10", Control: true, At: 1767225600000, Nonce: 0x9f2c01aa}
	id := d.ID()
	if id != "home_hero~shoes-10~c~mjuohs00~9f2c01aa" {
		t.Errorf("id %q", id)
	}
	got, err := event.ParseDecisionID(id)
	if err != nil || got != d {
		t.Errorf("parsed %+v, %v", got, err)
	}
	for _, tc := range []struct{ id, err string }{
		{"", "not a decision id issued by tailor (want placement~offer~arm~time~nonce)"},
		{"a~b~t~1", "not a decision id issued by tailor (want placement~offer~arm~time~nonce)"},
		{"~b~t~1~00000000", "placement: is empty"},
		{"a~b c~t~1~00000000", `offer: "b c" has ' ': use letters, digits, _ . : -`},
		{"a~b~x~1~00000000", `arm "x": want t or c`},
		{"a~b~t~-1~00000000", `time "-1" is not a base-36 number`},
		{"a~b~t~1~0000", `nonce "0000": want 8 hex digits`},
		{"a~b~t~1~0000000g", `nonce "0000000g": want 8 hex digits`},
	} {
		_, err := event.ParseDecisionID(tc.id)
		if err == nil || err.Error() != tc.err {
			t.Errorf("%q: error %v, want %s", tc.id, err, tc.err)
		}
	}
}

func TestFeedbackValidation(t *testing.T) {
	id := event.Decision{Placement: "p", Offer: "o", At: 1, Nonce: 2}.ID()
	p := event.NewParser(event.DefaultLimits())
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct{ in, err string }{
		{`{"type": "track", "userId": "u", "event": "Offer Viewed", "properties": {"decision_id": "` + id + `"}}`, ""},
		{`{"type": "track", "userId": "u", "event": "Order Completed", "properties": {"decision_id": "` + id + `"}}`, ""},
		{`{"type": "track", "userId": "u", "event": "Offer Clicked"}`, "properties.decision_id: is required for Offer Clicked: send the decision_id the decide call returned"},
		{`{"type": "track", "userId": "u", "event": "Offer Viewed", "properties": {"decision_id": 5}}`, "properties.decision_id: must be a string, not number"},
		{`{"type": "track", "userId": "u", "event": "Order Completed", "properties": {"decision_id": "x"}}`, `properties.decision_id: "x": not a decision id issued by tailor (want placement~offer~arm~time~nonce)`},
	} {
		ev, err := p.Parse([]byte(tc.in), 0, now)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.in, err)
		case tc.err == "":
			if d, ok := ev.Decision(); !ok || d.Offer != "o" {
				t.Errorf("%s: decision %+v %v", tc.in, d, ok)
			}
		case err == nil || err.Error() != tc.err:
			t.Errorf("%s: error %v, want %s", tc.in, err, tc.err)
		}
	}
}

func FuzzParseDecisionID(f *testing.F) {
	f.Add("home_hero~shoes-10~c~mjuohs00~9f2c01aa")
	f.Add("a~b~t~zzzzzzzzzzzzzzz~ffffffff")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := event.ParseDecisionID(s)
		if err != nil {
			return
		}
		again, err := event.ParseDecisionID(d.ID())
		if err != nil || again != d {
			t.Fatalf("%q parsed to %+v, whose id %q parses to %+v, %v", s, d, d.ID(), again, err)
		}
	})
}
