package engine_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/decide"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/money"
	"github.com/tailorcdp/tailor/state"
)

// TestExport: the access export of a person, read over HTTP with the
// admin key, holds what their profile answer holds, field by field, and
// what it leaves out: the consent history with times and sources, the
// order ids counted with amounts and times, the decisions remembered of
// an offer; the ids linked to the profile (an anonymous id merged into
// it, an alias) answer the same export.
func TestExport(t *testing.T) {
	cfg := testConfig(t, testkafka.Brokers(t), testkafka.Prefix(t), t.TempDir())
	cfg.HTTP.AdminKeys = config.NewKeys(adminKey)
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	cfg.Clock = func() time.Time { return now }
	cfg.Aggregates = map[string]config.Aggregate{
		"views_30d": {Event: "Product Viewed", Fn: "count", Window: config.Duration(30 * 24 * time.Hour)},
		"spend":     {Event: "Order Completed", Fn: "sum", Property: "total"},
	}
	cfg.Segments = map[string]string{"buyer": "spend > 0", "browser": "views_30d >= 2"}
	cfg.Placements = map[string]config.Placement{"hero": {Fallback: "welcome"}}
	cfg.Offers = []config.Offer{{ID: "welcome", Placements: []string{"hero"}}}
	e := startEngine(t, cfg)

	msg := 0
	send := func(body string) {
		t.Helper()
		msg++
		body = strings.Replace(body, "{", fmt.Sprintf(`{"messageId": "m%d", `, msg), 1)
		if r := e.post(t, "/v1/batch", `{"batch": [`+body+`]}`); r.Status != http.StatusOK {
			t.Fatalf("batch %s: %d %s", body, r.Status, r.Body)
		}
	}
	// A visitor browses and grants marketing in the web page; the
	// customer orders and identifies on the shop's server; the visitor
	// signs in; the customer withdraws marketing through the server; an
	// old id is aliased to the customer.
	send(`{"type": "track", "anonymousId": "anon-x", "event": "Product Viewed", "timestamp": "2026-11-01T10:00:00Z", "properties": {"product_id": "p1", "category": "shoes"},
	  "context": {"library": {"name": "analytics.js"}, "consent": {"categoryPreferences": {"Marketing": true}}}}`)
	send(`{"type": "identify", "userId": "ann", "timestamp": "2026-11-02T10:00:00Z", "traits": {"email": " Ann@Example.com", "plan": "pro"}, "context": {"library": {"name": "analytics-node"}}}`)
	send(`{"type": "track", "userId": "ann", "event": "Order Completed", "timestamp": "2026-11-03T10:00:00Z", "properties": {"order_id": "o-1", "total": 40.5}}`)
	send(`{"type": "track", "userId": "ann", "event": "Product Viewed", "timestamp": "2026-11-04T10:00:00Z", "properties": {"product_id": "p2", "category": "bags"}}`)
	e.waitProfile(t, "anon-x", func(v state.View) bool { return v.Key == "anon-x" })
	e.waitProfile(t, "ann", func(v state.View) bool { return v.Orders.Count == 1 && v.Events["Product Viewed"] == 1 })
	send(`{"type": "identify", "userId": "ann", "anonymousId": "anon-x", "timestamp": "2026-11-05T10:00:00Z", "context": {"library": {"name": "analytics.js"}}}`)
	e.waitProfile(t, "ann", func(v state.View) bool { return v.Events["Product Viewed"] == 2 })
	send(`{"type": "track", "userId": "ann", "event": "Newsletter Unsubscribed", "timestamp": "2026-11-06T10:00:00Z",
	  "context": {"library": {"name": "analytics-node"}, "consent": {"categoryPreferences": {"Marketing": false}}}}`)
	send(`{"type": "alias", "userId": "ann", "previousId": "old-id", "timestamp": "2026-11-07T10:00:00Z"}`)
	// An offer shown to her, and its impression.
	resp := do(t, "POST", e.url+"/v1/decide", readKey, []byte(`{"userId": "ann", "placements": ["hero"]}`), nil)
	var a decide.Answer
	resp.json(t, &a)
	if len(a.Decisions["hero"].Offers) != 1 {
		t.Fatalf("decide: %s", resp.Body)
	}
	send(fmt.Sprintf(`{"type": "track", "userId": "ann", "event": "Offer Viewed", "timestamp": "2026-11-08T10:00:00Z", "properties": {"decision_id": %q}}`, a.Decisions["hero"].Offers[0].DecisionID))
	v := e.waitProfile(t, "ann", func(v state.View) bool { return v.Offers["welcome"].Impressions == 1 && v.Calls["alias"] == 1 })

	profile := do(t, "GET", e.url+"/v1/profiles/ann", readKey, nil, nil)
	export := do(t, "GET", e.url+"/v1/profiles/ann/export", adminKey, nil, nil)
	if profile.Status != http.StatusOK || export.Status != http.StatusOK {
		t.Fatalf("profile %d %s; export %d %s", profile.Status, profile.Body, export.Status, export.Body)
	}
	// Every field of the profile answer is in the export as it is in the
	// answer; the interests are all of them, the answer's first.
	var pf, xf map[string]json.RawMessage
	profile.json(t, &pf)
	export.json(t, &xf)
	for name, want := range pf {
		got, ok := xf[name]
		if name == "interests" {
			var all, top []state.Affinity
			json.Unmarshal(got, &all)
			json.Unmarshal(want, &top)
			if len(top) == 0 || len(all) < len(top) || !slices.Equal(all[:len(top)], top) {
				t.Errorf("interests: export %s, profile %s", got, want)
			}
			continue
		}
		if !ok || !jsonEqual(got, want) {
			t.Errorf("%s: export %s, profile %s", name, got, want)
		}
	}
	if len(pf) < 15 {
		t.Errorf("the profile answer has %d fields: %s", len(pf), profile.Body)
	}

	var x state.Export
	export.json(t, &x)
	if !slices.Contains(x.AnonymousIDs, "anon-x") || !slices.Contains(x.AnonymousIDs, "old-id") || x.Key != "ann" || x.UserID != "ann" {
		t.Errorf("linked ids: key %q userId %q anonymousIds %v", x.Key, x.UserID, x.AnonymousIDs)
	}
	wantHistory := []string{"2026-11-01 Marketing=true analytics.js", "2026-11-06 Marketing=false analytics-node"}
	var history []string
	for _, c := range x.ConsentHistory {
		history = append(history, fmt.Sprintf("%s %s=%t %s", c.At.Format(time.DateOnly), c.Purpose, c.Granted, c.Source))
	}
	if !slices.Equal(history, wantHistory) || v.Consent["Marketing"] || x.Consent["Marketing"] {
		t.Errorf("consent %v, history %q, want %q", x.Consent, history, wantHistory)
	}
	orderAt := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	if len(x.CountedOrders) != 1 || x.CountedOrders[0].ID != "o-1" || x.CountedOrders[0].Amount == nil || *x.CountedOrders[0].Amount != money.MustParse("40.5") ||
		x.CountedOrders[0].At == nil || !x.CountedOrders[0].At.Equal(orderAt) {
		t.Errorf("counted orders %s", mustJSON(x.CountedOrders))
	}
	if len(x.OrderLog) != 1 || !x.OrderLog[0].At.Equal(orderAt) || x.OrderLog[0].Amount != money.MustParse("40.5") {
		t.Errorf("order log %s", mustJSON(x.OrderLog))
	}
	if d := x.OfferDecisions["welcome"]; len(d) != 1 || !slices.Equal(d[0].Feedback, []string{"impression"}) {
		t.Errorf("offer decisions %s", mustJSON(x.OfferDecisions))
	}
	if !x.EventsLast["Product Viewed"].Equal(time.Date(2026, 11, 4, 10, 0, 0, 0, time.UTC)) || len(x.EventsLast) != 4 {
		t.Errorf("events last %v", x.EventsLast)
	}
	if x.MessageIDs != msg || !x.ExportedAt.Equal(now) {
		t.Errorf("remembered messageIds %d, want %d; exported at %s", x.MessageIDs, msg, x.ExportedAt)
	}

	// The linked ids answer the same export; unknown keys and other keys
	// do not.
	for _, key := range []string{"anon-x", "old-id"} {
		r := do(t, "GET", e.url+"/v1/profiles/"+key+"/export", adminKey, nil, nil)
		if r.Status != http.StatusOK || !bytes.Equal(r.Body, export.Body) {
			t.Errorf("export of %s: %d %.300s, want ann's", key, r.Status, r.Body)
		}
	}
	for _, tc := range []struct {
		key, auth string
		status    int
	}{
		{"nobody", adminKey, http.StatusNotFound},
		{"ann", readKey, http.StatusUnauthorized},
		{"ann", "", http.StatusUnauthorized},
	} {
		r := do(t, "GET", e.url+"/v1/profiles/"+tc.key+"/export", tc.auth, nil, nil)
		var body struct {
			Success bool   `json:"success"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil || r.Status != tc.status || body.Success || body.Message == "" {
			t.Errorf("export of %s with %q: %d %s, want %d and a JSON error", tc.key, tc.auth, r.Status, r.Body, tc.status)
		}
	}
}

// jsonEqual reports whether two JSON documents hold the same values.
func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return fmt.Sprint(x) == fmt.Sprint(y)
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
