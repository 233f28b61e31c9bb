package state

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/event"
)

// consentEvent is a track call of u on day of January 2026 (past 31: the
// days after) carrying
// prefs (a categoryPreferences object) from library ("" for none).
func consentEvent(t *testing.T, day int, prefs, library string) *event.Event {
	t.Helper()
	ctx := `"consent": {"categoryPreferences": ` + prefs + `}`
	if library != "" {
		ctx += `, "library": {"name": "` + library + `"}`
	}
	at := time.Date(2026, 1, day, 0, 0, 0, 0, time.UTC).Format(time.RFC3339)
	s := fmt.Sprintf(`{"type": "track", "userId": "u", "event": "E", "timestamp": %q, "context": {%s}}`, at, ctx)
	ev, err := event.NewParser(event.DefaultLimits()).Parse([]byte(s), 0, time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatalf("parse %s: %v", s, err)
	}
	return &ev
}

// historyOf writes a consent history as "day purpose=granted source"
// lines, for comparing.
func historyOf(h []ConsentChange) []string {
	out := make([]string, len(h))
	for i, c := range h {
		out[i] = fmt.Sprintf("%d %s=%t %s", c.At.Day(), c.Purpose, c.Granted, c.Source)
	}
	return out
}

type consentStep struct {
	day            int
	prefs, library string
}

// TestConsentHistory: a change of choice joins the history with its time
// and source; a restated or older choice does not; the bound drops the
// oldest replaced change first.
func TestConsentHistory(t *testing.T) {
	flips := []consentStep{{1, `{"Keep": true}`, "analytics.js"}}
	for i := range 40 {
		flips = append(flips, consentStep{2 + i, fmt.Sprintf(`{"Flip": %t}`, i%2 == 0), "analytics.js"})
	}
	for _, tc := range []struct {
		name  string
		steps []consentStep
		want  []string
	}{
		{"changes, not restatements", []consentStep{
			{1, `{"Marketing": true}`, "analytics.js"},
			{2, `{"Marketing": true}`, "analytics.js"},
			{3, `{"Marketing": false}`, "analytics-ios"},
		}, []string{"1 Marketing=true analytics.js", "3 Marketing=false analytics-ios"}},
		{"an older choice changes nothing", []consentStep{
			{5, `{"Marketing": true}`, ""},
			{4, `{"Marketing": false}`, ""},
		}, []string{"5 Marketing=true api"}},
		{"each purpose, in time order", []consentStep{
			{1, `{"Advertising": true, "Analytics": false}`, "tailor-import"},
			{3, `{"Advertising": false}`, ""},
			{2, `{"Analytics": true, "Bad": "yes"}`, "analytics.js"},
		}, []string{"1 Advertising=true import", "1 Analytics=false import", "2 Analytics=true analytics.js", "3 Advertising=false api"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Profile{}
			for _, s := range tc.steps {
				p.Apply(consentEvent(t, s.day, s.prefs, s.library), false)
			}
			if got := historyOf(p.ConsentHistory()); !slices.Equal(got, tc.want) {
				t.Errorf("history\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
	t.Run("bounded", func(t *testing.T) {
		p := &Profile{}
		for _, s := range flips {
			p.Apply(consentEvent(t, s.day, s.prefs, s.library), false)
		}
		h := p.ConsentHistory()
		if len(h) != MaxConsentHistory {
			t.Fatalf("%d changes kept, want %d", len(h), MaxConsentHistory)
		}
		if h[0].Purpose != "Keep" || !h[0].Granted {
			t.Errorf("the only choice of Keep went: first kept %+v", h[0])
		}
		if last := h[len(h)-1]; last.Purpose != "Flip" || last.Granted != p.Consent("Flip") {
			t.Errorf("last change %+v, latest choice %t", last, p.Consent("Flip"))
		}
	})
}

// TestConsentHistoryBeforeKept: a profile stored before the history was
// kept shows its choices, their source unknown, and keeps the replaced one
// when a change comes.
func TestConsentHistoryBeforeKept(t *testing.T) {
	day := func(d int) int64 { return time.Date(2026, 1, d, 0, 0, 0, 0, time.UTC).UnixMilli() }
	p := &Profile{consents: map[string]consent{"Marketing": {granted: true, at: day(1)}, "Analytics": {at: day(2)}}}
	want := []string{"1 Marketing=true unknown", "2 Analytics=false unknown"}
	if got := historyOf(p.ConsentHistory()); !slices.Equal(got, want) {
		t.Errorf("before a change: %q, want %q", got, want)
	}
	p.Apply(consentEvent(t, 3, `{"Marketing": false}`, "analytics.js"), false)
	want = []string{"1 Marketing=true unknown", "2 Analytics=false unknown", "3 Marketing=false analytics.js"}
	if got := historyOf(p.ConsentHistory()); !slices.Equal(got, want) {
		t.Errorf("after a change: %q, want %q", got, want)
	}
	if len(p.consentLog) != 2 {
		t.Errorf("stored history %+v, want the replaced choice and the change", p.consentLog)
	}
}

// TestMergeConsents: merged profiles keep the latest choice per purpose
// and both histories, in time order, a change both hold once.
func TestMergeConsents(t *testing.T) {
	anon, user := &Profile{}, &Profile{}
	shared := consentEvent(t, 2, `{"Analytics": true}`, "analytics.js")
	for _, ev := range []*event.Event{consentEvent(t, 1, `{"Marketing": true}`, "analytics.js"), shared, consentEvent(t, 4, `{"Marketing": false}`, "analytics.js")} {
		anon.Apply(ev, false)
	}
	for _, ev := range []*event.Event{consentEvent(t, 3, `{"Marketing": true}`, "server"), shared} {
		user.Apply(ev, false)
	}
	user.mergeConsents(anon)
	want := []string{"1 Marketing=true analytics.js", "2 Analytics=true analytics.js", "3 Marketing=true server", "4 Marketing=false analytics.js"}
	if got := historyOf(user.ConsentHistory()); !slices.Equal(got, want) {
		t.Errorf("merged history\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if user.Consent("Marketing") || !user.Consent("Analytics") {
		t.Errorf("merged choices %+v: want the latest, Marketing refused", user.consents)
	}
}

// TestPurposeAllows: an output with no purpose carries everyone; one with
// a purpose carries those whose latest choice grants it.
func TestPurposeAllows(t *testing.T) {
	granted, refused, revoked, other := &Profile{}, &Profile{}, &Profile{}, &Profile{}
	granted.Apply(consentEvent(t, 1, `{"Marketing": true}`, ""), false)
	refused.Apply(consentEvent(t, 1, `{"Marketing": false}`, ""), false)
	revoked.Apply(consentEvent(t, 1, `{"Marketing": true}`, ""), false)
	revoked.Apply(consentEvent(t, 2, `{"Marketing": false}`, ""), false)
	other.Apply(consentEvent(t, 1, `{"Advertising": true}`, ""), false)
	for _, tc := range []struct {
		name    string
		purpose Purpose
		p       *Profile
		want    bool
	}{
		{"no purpose, no profile", "", nil, true},
		{"no purpose, refused", "", refused, true},
		{"granted", "Marketing", granted, true},
		{"refused", "Marketing", refused, false},
		{"revoked", "Marketing", revoked, false},
		{"never asked", "Marketing", other, false},
		{"no profile", "Marketing", nil, false},
	} {
		if got := tc.purpose.Allows(tc.p); got != tc.want {
			t.Errorf("%s: Allows %t, want %t", tc.name, got, tc.want)
		}
	}
}
