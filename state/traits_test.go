package state

import (
	"strings"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/event"
)

// TestNormaliseTraits: email is trimmed and lower-cased, phone written in
// E.164 (read in the default region when it has no country code); what
// cannot be normalised is kept as sent, with the reason.
func TestNormaliseTraits(t *testing.T) {
	cases := []struct {
		name    string
		region  string
		trait   string
		sent    string // JSON
		want    string // JSON kept
		problem string // a part of the reason; "" for none
	}{
		{"email spaces and case", "", "email", `"  Jane.Doe@Example.COM "`, `"jane.doe@example.com"`, ""},
		{"email already normal", "", "email", `"a@b.co"`, `"a@b.co"`, ""},
		{"email tab and newline", "", "email", `"\tA@B.CO\n"`, `"a@b.co"`, ""},
		{"email number", "", "email", `42`, `42`, "not a string: number"},
		{"email object", "", "email", `{"a":1}`, `{"a":1}`, "not a string: object"},
		{"email null", "", "email", `null`, `null`, "not a string: null"},
		{"phone national with region", "GB", "phone", `"07911 123456"`, `"+447911123456"`, ""},
		{"phone national US", "US", "phone", `"(415) 555-2671"`, `"+14155552671"`, ""},
		{"phone international, no region", "", "phone", `"+44 7911 123456"`, `"+447911123456"`, ""},
		{"phone international, other region", "US", "phone", `"+33 6 12 34 56 78"`, `"+33612345678"`, ""},
		{"phone national without region", "", "phone", `"07911 123456"`, `"07911 123456"`, "without a default region"},
		{"phone invalid", "GB", "phone", `"12"`, `"12"`, "not a valid phone number for region GB"},
		{"phone letters", "GB", "phone", `"call me"`, `"call me"`, "not a valid phone number for region GB"},
		{"phone number type", "GB", "phone", `7700900123`, `7700900123`, "not a string: number"},
		{"other trait untouched", "GB", "name", `"  Jane "`, `"  Jane "`, ""},
		{"Email is another trait", "", "Email", `" A@B.CO "`, `" A@B.CO "`, ""},
	}
	p := event.NewParser(event.DefaultLimits())
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := parse(t, p, `{"type": "identify", "userId": "u", "traits": {"`+c.trait+`": `+c.sent+`}}`)
			var prof Profile
			prof.apply(&ev, false, TraitRules{PhoneRegion: c.region})
			got := prof.Traits[c.trait]
			if string(got.Value) != c.want {
				t.Errorf("kept %s, want %s", got.Value, c.want)
			}
			switch {
			case c.problem == "" && got.Unnormalised != "":
				t.Errorf("flagged %q, want no flag", got.Unnormalised)
			case c.problem != "" && !strings.Contains(got.Unnormalised, c.problem):
				t.Errorf("flagged %q, want %q in it", got.Unnormalised, c.problem)
			}
		})
	}
}

// TestNormaliseAgain: a value sent again as it was normalised stays; a
// trait stored before normalisation, sent again as it was, is normalised
// now; a flagged value sent again is flagged again.
func TestNormaliseAgain(t *testing.T) {
	cases := []struct {
		name    string
		prev    Trait
		sent    string
		want    string
		problem string
	}{
		{"phone sent normalised", Trait{Value: []byte(`"+447911123456"`), Source: SourceAPI}, `"+447911123456"`, `"+447911123456"`, ""},
		{"email sent normalised", Trait{Value: []byte(`"a@b.co"`), Source: "analytics.js"}, `"a@b.co"`, `"a@b.co"`, ""},
		{"stored before normalisation", Trait{Value: []byte(`" A@B.co"`)}, `" A@B.co"`, `"a@b.co"`, ""},
		{"flagged before", Trait{Value: []byte(`"12"`), Source: SourceAPI, Unnormalised: "not a valid phone number"}, `"12"`, `"12"`, "not a valid phone number"},
	}
	p := event.NewParser(event.DefaultLimits())
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name := TraitEmail
			if strings.HasPrefix(c.name, "phone") || strings.HasPrefix(c.name, "flagged") {
				name = TraitPhone
			}
			c.prev.UpdatedAt = 1
			prof := Profile{Traits: map[string]Trait{name: c.prev}}
			ev := parse(t, p, `{"type": "identify", "userId": "u", "traits": {"`+name+`": `+c.sent+`}}`)
			prof.apply(&ev, false, TraitRules{PhoneRegion: "GB"})
			got := prof.Traits[name]
			if string(got.Value) != c.want || !strings.Contains(got.Unnormalised, c.problem) || (c.problem == "") != (got.Unnormalised == "") {
				t.Errorf("kept %s flagged %q, want %s flagged %q", got.Value, got.Unnormalised, c.want, c.problem)
			}
		})
	}
}

// TestTraitSources: a trait's source is the SDK's library name, else
// import for what tailor import produced, else the label of the write
// key collect took it with, else api; the newest value's
// source wins, and View shows it with the value's time.
func TestTraitSources(t *testing.T) {
	long := strings.Repeat("x", 100)
	cases := []struct {
		name, context, label, want string
	}{
		{"analytics.js", `{"library": {"name": "analytics.js", "version": "2.1"}}`, "", "analytics.js"},
		{"a library before the key's label", `{"library": {"name": "analytics.js"}}`, "web", "analytics.js"},
		{"no library, the write key's label", ``, "web", "key:web"},
		{"long label cut", ``, long, ("key:" + long)[:maxSourceLen]},
		{"another SDK", `{"library": {"name": "analytics-python"}}`, "", "analytics-python"},
		{"import", `{"library": {"name": "` + event.ImportLibrary + `"}}`, "", SourceImport},
		{"no context", ``, "", SourceAPI},
		{"no library", `{"ip": "1.2.3.4"}`, "", SourceAPI},
		{"library not an object", `{"library": "x"}`, "", SourceAPI},
		{"name not a string", `{"library": {"name": 3}}`, "", SourceAPI},
		{"long name cut", `{"library": {"name": "` + long + `"}}`, "", long[:maxSourceLen]},
	}
	p := event.NewParser(event.DefaultLimits())
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := ""
			if c.context != "" {
				ctx = `, "context": ` + c.context
			}
			ev := parse(t, p, `{"type": "identify", "userId": "u", "timestamp": "2026-04-02T00:00:00Z", "traits": {"plan": "pro"}`+ctx+`}`)
			ev.KeyLabel = c.label
			var prof Profile
			prof.Apply(&ev, false)
			if got := prof.Traits["plan"].Source; got != c.want {
				t.Errorf("source %q, want %q", got, c.want)
			}
			v := prof.View(Derived{}, received)
			want := TraitSourceView{Source: c.want, At: time.Date(2026, 4, 2, 0, 0, 0, 0, time.UTC)}
			if got := v.TraitSources["plan"]; got != want {
				t.Errorf("view %+v, want %+v", got, want)
			}
		})
	}

	// Latest event time wins, with its source; an older call changes
	// neither value nor source.
	var prof Profile
	for _, s := range []string{
		`{"type": "identify", "userId": "u", "timestamp": "2026-04-02T00:00:00Z", "traits": {"plan": "pro"}, "context": {"library": {"name": "analytics.js"}}}`,
		`{"type": "identify", "userId": "u", "timestamp": "2026-04-01T00:00:00Z", "traits": {"plan": "old", "city": "Paris"}}`,
	} {
		ev := parse(t, p, s)
		prof.Apply(&ev, false)
	}
	if tr := prof.Traits["plan"]; string(tr.Value) != `"pro"` || tr.Source != "analytics.js" {
		t.Errorf("plan %s from %q, want the newer pro from analytics.js", tr.Value, tr.Source)
	}
	if tr := prof.Traits["city"]; tr.Source != SourceAPI {
		t.Errorf("city from %q, want api", tr.Source)
	}
	if got := (&Profile{Traits: map[string]Trait{"old": {Value: []byte(`1`), UpdatedAt: 1}}}).View(Derived{}, received).TraitSources["old"].Source; got != SourceUnknown {
		t.Errorf("a trait stored without a source shows %q, want %q", got, SourceUnknown)
	}
}

// TestMergeKeepsNewerTraitSource: merging two profiles keeps, per trait,
// the newer value with its source and flag.
func TestMergeKeepsNewerTraitSource(t *testing.T) {
	p := &Profile{Key: "u", Traits: map[string]Trait{
		"email": {Value: []byte(`"old@x.co"`), UpdatedAt: 100, Source: "analytics.js"},
		"phone": {Value: []byte(`"+447911123456"`), UpdatedAt: 300, Source: SourceImport},
	}}
	o := &Profile{Key: "a", Traits: map[string]Trait{
		"email": {Value: []byte(`"new@x.co"`), UpdatedAt: 200, Source: "analytics-ios"},
		"phone": {Value: []byte(`"12"`), UpdatedAt: 250, Source: SourceAPI, Unnormalised: "not a valid phone number"},
		"plan":  {Value: []byte(`"pro"`), UpdatedAt: 50, Source: SourceAPI, Unnormalised: ""},
	}}
	p.mergeFrom(o, &Model{}, Dedup{}, 1000)
	want := map[string]Trait{
		"email": o.Traits["email"],
		"phone": {Value: []byte(`"+447911123456"`), UpdatedAt: 300, Source: SourceImport},
		"plan":  o.Traits["plan"],
	}
	for name, w := range want {
		got := p.Traits[name]
		if string(got.Value) != string(w.Value) || got.UpdatedAt != w.UpdatedAt || got.Source != w.Source || got.Unnormalised != w.Unnormalised {
			t.Errorf("%s: %+v, want %+v", name, got, w)
		}
	}
}

// TestSegmentsReadNormalisedTraits: segments over traits.email and
// traits.phone see the normalised values, through a store whose model
// names the phone region.
func TestSegmentsReadNormalisedTraits(t *testing.T) {
	_, segs := compileModel(t, nil, []SegmentConfig{
		{Name: "staff", Rule: `traits.email == "jane@shop.example"`},
		{Name: "uk_mobile", Rule: `traits.phone == "+447911123456"`},
	}, 0)
	o := testOptions()
	o.Segments = segs
	o.Traits = TraitRules{PhoneRegion: "GB"}
	s := openWith(t, t.TempDir(), o)
	defer s.Close()
	p := event.NewParser(event.DefaultLimits())
	ev := parse(t, p, `{"type": "identify", "userId": "u", "traits": {"email": " Jane@Shop.Example ", "phone": "07911 123456"}, "context": {"library": {"name": "analytics.js"}}}`)
	b := s.Begin()
	if _, err := b.Apply(&ev); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(1); err != nil {
		t.Fatal(err)
	}
	prof, err := s.Profile("u")
	if err != nil {
		t.Fatal(err)
	}
	for _, seg := range []string{"staff", "uk_mobile"} {
		if _, in := prof.Segments[seg]; !in {
			t.Errorf("not in %s: segments %v, traits email %s phone %s", seg, prof.Segments, prof.Traits["email"].Value, prof.Traits["phone"].Value)
		}
	}
	if src := prof.Traits["phone"].Source; src != "analytics.js" {
		t.Errorf("stored phone from %q, want analytics.js", src)
	}
}
