package engine_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/decide"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/state"
)

// TestDecide goes through the whole loop over HTTP and Kafka: events make
// a visitor eligible, decide answers the offer, the impressions sent back
// through the collect API reach the cap, and GET /v1/offers counts them.
func TestDecide(t *testing.T) {
	cfg := testConfig(t, testkafka.Brokers(t), testkafka.Prefix(t), t.TempDir())
	cfg.HTTP.DecideKeys = config.NewKeys("page-key")
	cfg.HTTP.CORSOrigins = []string{"https://shop.example"}
	cfg.Aggregates = map[string]config.Aggregate{"views": {Event: "Product Viewed", Fn: "count"}}
	cfg.Segments = map[string]string{"browser": "views >= 2"}
	cfg.Placements = map[string]config.Placement{"hero": {Fallback: "welcome"}, "recs": {Kind: decide.KindRecentlyViewed}}
	cfg.Offers = []config.Offer{{ID: "welcome", Placements: []string{"hero"}}, {ID: "deal", Placements: []string{"hero"}, When: `segment("browser")`, Priority: 1}}
	cfg.Offers[1].Cap.Impressions, cfg.Offers[1].Cap.Per = 2, config.Duration(24*60*60*1e9)
	e := startEngine(t, cfg)

	decideOnce := func(key string) decide.Answer {
		t.Helper()
		resp := do(t, "POST", e.url+"/v1/decide", key, []byte(`{"userId": "d1", "placements": ["hero", "recs"]}`), nil)
		if resp.Status != http.StatusOK {
			t.Fatalf("decide: %d %s", resp.Status, resp.Body)
		}
		var a decide.Answer
		resp.json(t, &a)
		return a
	}
	if a := decideOnce(readKey); a.Known || a.Decisions["hero"].Offers[0].OfferID != "welcome" || !a.Decisions["hero"].Offers[0].Fallback {
		t.Fatalf("unknown visitor: %+v", a)
	}
	for i := range 2 {
		if r := e.post(t, "/v1/track", fmt.Sprintf(`{"userId": "d1", "event": "Product Viewed", "properties": {"product_id": "p%d"}}`, i)); r.Status != 200 {
			t.Fatalf("track: %d %s", r.Status, r.Body)
		}
	}
	e.waitProfile(t, "d1", func(v state.View) bool { _, in := v.Segments["browser"]; return in })
	var shown []string
	for range 3 {
		a := decideOnce("page-key")
		if o := a.Decisions["hero"].Offers[0]; o.OfferID == "deal" {
			shown = append(shown, o.DecisionID)
		}
	}
	if len(shown) != 2 {
		t.Fatalf("deal answered %d times, cap 2", len(shown))
	}
	for _, id := range shown {
		if r := e.post(t, "/v1/track", fmt.Sprintf(`{"userId": "d1", "event": "Offer Viewed", "properties": {"decision_id": %q}}`, id)); r.Status != 200 {
			t.Fatalf("impression: %d %s", r.Status, r.Body)
		}
	}
	e.post(t, "/v1/track", fmt.Sprintf(`{"userId": "d1", "event": "Offer Clicked", "properties": {"decision_id": %q}}`, shown[0]))
	v := e.waitProfile(t, "d1", func(v state.View) bool { return v.Offers["deal"].LastClick != nil })
	if v.Offers["deal"].Impressions != 2 || strings.Join(v.RecentlyViewed, ",") != "p1,p0" {
		t.Errorf("profile offers %+v, recently viewed %v", v.Offers, v.RecentlyViewed)
	}
	if a := decideOnce(readKey); a.Decisions["hero"].Offers[0].OfferID != "welcome" {
		t.Errorf("over the cap: %+v", a)
	}
	var report decide.Report
	resp := do(t, "GET", e.url+"/v1/offers", readKey, nil, nil)
	resp.json(t, &report)
	for _, o := range report.Offers {
		if o.Offer == "deal" && (o.Impressions != 2 || o.Clicks != 1 || o.CTR != 0.5) {
			t.Errorf("deal's statistics %+v", o)
		}
	}

	// CORS preflight from an allowed origin.
	resp2, err := http.DefaultClient.Do(func() *http.Request {
		req, _ := http.NewRequest("OPTIONS", e.url+"/v1/decide", nil)
		req.Header.Set("Origin", "https://shop.example")
		return req
	}())
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusNoContent || resp2.Header.Get("Access-Control-Allow-Origin") != "https://shop.example" {
		t.Errorf("preflight: %d %v", resp2.StatusCode, resp2.Header)
	}

	// Bad input: the documented errors.
	for _, tc := range []struct {
		name, method, path, key, body string
		status                        int
		field, error                  string
	}{
		{"unknown placement", "POST", "/v1/decide", readKey, `{"userId": "d1", "placements": ["hero", "nope"]}`, 400, "placements[1]", `unknown placement "nope"`},
		{"no profile key", "POST", "/v1/decide", readKey, `{"placements": ["hero"]}`, 400, "userId", "userId or anonymousId is required"},
		{"malformed body", "POST", "/v1/decide", readKey, `{"userId": "d1", "placements": [`, 400, "", "body is not valid JSON"},
		{"no placements", "GET", "/v1/decide?userId=d1", readKey, "", 400, "placements", "is empty"},
		{"no key", "POST", "/v1/decide", "", `{"userId": "d1", "placements": ["hero"]}`, 401, "", "missing read or decide key"},
		{"write key", "POST", "/v1/decide", writeKey, `{"userId": "d1", "placements": ["hero"]}`, 401, "", "invalid read or decide key"},
		{"decide key on profiles", "GET", "/v1/profiles/d1", "page-key", "", 401, "", "invalid read key"},
		{"method", "PUT", "/v1/decide", readKey, "", 405, "", "use POST"},
		{"too large", "POST", "/v1/decide", readKey, `{"userId": "d1", "placements": ["hero"], "context": {"x": "` + strings.Repeat("x", 33<<10) + `"}}`, 413, "", "over 32768 bytes"},
		{"bad feedback", "POST", "/v1/track", writeKey, `{"userId": "d1", "event": "Offer Viewed", "properties": {"decision_id": "forged"}}`, 400, "properties.decision_id", "not a decision id issued by tailor"},
	} {
		resp := do(t, tc.method, e.url+tc.path, tc.key, []byte(tc.body), nil)
		var body struct {
			Error string `json:"error"`
			Field string `json:"field"`
		}
		resp.json(t, &body)
		if resp.Status != tc.status || body.Field != tc.field || !strings.Contains(body.Error, tc.error) {
			t.Errorf("%s: %d %s; want %d, field %q, error with %q", tc.name, resp.Status, resp.Body, tc.status, tc.field, tc.error)
		}
	}
	// GET form for simple clients.
	resp = do(t, "GET", e.url+"/v1/decide?userId=d1&placement=hero&placement=recs", readKey, nil, nil)
	var a decide.Answer
	resp.json(t, &a)
	if resp.Status != 200 || !a.Known || len(a.Decisions) != 2 {
		t.Errorf("GET decide: %d %s", resp.Status, resp.Body)
	}
}

// TestDecidePublicKey: with an identity secret, a decide key's call for
// a userId without its userHash learns nothing of the customer (the
// fallback, no recently viewed products, known false) and is counted in
// /metrics; with the hash, in the body or the query, it gets the
// personal answer, as a read key's call does without one. A flood of
// decide calls from one address is answered 429 while another address
// is served (the proxy header names the address).
func TestDecidePublicKey(t *testing.T) {
	const secret = "site-secret"
	cfg := testConfig(t, testkafka.Brokers(t), testkafka.Prefix(t), t.TempDir())
	cfg.HTTP.DecideKeys = config.NewKeys("page-key")
	cfg.Decide.IdentitySecret = secret
	cfg.HTTP.ProxyHeader = "X-Forwarded-For"
	cfg.HTTP.RateLimits.Exempt = nil
	cfg.HTTP.RateLimits.Decide = config.Rate{PerSecond: 0.01, Burst: 20}
	cfg.Aggregates = map[string]config.Aggregate{"views": {Event: "Product Viewed", Fn: "count"}}
	cfg.Segments = map[string]string{"browser": "views >= 2"}
	cfg.Placements = map[string]config.Placement{"hero": {Fallback: "welcome"}, "recs": {Kind: decide.KindRecentlyViewed}}
	cfg.Offers = []config.Offer{{ID: "welcome", Placements: []string{"hero"}}, {ID: "deal", Placements: []string{"hero"}, When: `segment("browser")`, Priority: 1}}
	e := startEngine(t, cfg)
	for i := range 2 {
		if r := e.post(t, "/v1/track", fmt.Sprintf(`{"userId": "d1", "event": "Product Viewed", "properties": {"product_id": "p%d"}}`, i)); r.Status != 200 {
			t.Fatalf("track: %d %s", r.Status, r.Body)
		}
	}
	e.waitProfile(t, "d1", func(v state.View) bool { _, in := v.Segments["browser"]; return in })

	hash := decide.UserHash(secret, "d1")
	ask := func(method, key, query, body, from string) (response, decide.Answer) {
		t.Helper()
		resp := do(t, method, e.url+"/v1/decide"+query, key, []byte(body), map[string]string{"X-Forwarded-For": from})
		var a decide.Answer
		if resp.Status == http.StatusOK {
			resp.json(t, &a)
		}
		return resp, a
	}
	personal := func(a decide.Answer) bool {
		return a.Known && !a.Unverified && a.Decisions["hero"].Offers[0].OfferID == "deal" && len(a.Decisions["recs"].Products) == 2
	}
	for _, body := range []string{`{"userId": "d1", "placements": ["hero", "recs"]}`,
		`{"userId": "d1", "userHash": "` + decide.UserHash("wrong", "d1") + `", "placements": ["hero", "recs"]}`} {
		resp, a := ask("POST", "page-key", "", body, "203.0.113.1")
		if resp.Status != 200 || a.Known || !a.Unverified || a.Decisions["hero"].Offers[0].OfferID != "welcome" || len(a.Decisions["recs"].Products) != 0 {
			t.Errorf("unverified %s: %d %s", body, resp.Status, resp.Body)
		}
	}
	for _, c := range []struct{ method, key, query, body string }{
		{"POST", "page-key", "", `{"userId": "d1", "userHash": "` + hash + `", "placements": ["hero", "recs"]}`},
		{"GET", "page-key", "?userId=d1&placement=hero&placement=recs&userHash=" + hash, ""},
		{"POST", readKey, "", `{"userId": "d1", "placements": ["hero", "recs"]}`},
	} {
		if resp, a := ask(c.method, c.key, c.query, c.body, "203.0.113.1"); !personal(a) {
			t.Errorf("verified %s %s%s: %d %s", c.method, c.key, c.query, resp.Status, resp.Body)
		}
	}
	metrics := do(t, "GET", e.url+"/metrics", "", nil, nil)
	if !strings.Contains(string(metrics.Body), "\ntailor_decide_unverified_total 2\n") {
		t.Errorf("/metrics does not count the 2 unverified calls")
	}

	// The flood: 20 tokens, 4 taken above by the decide key.
	limited := 0
	for range 20 {
		if resp, _ := ask("POST", "page-key", "", `{"anonymousId": "a", "placements": ["hero"]}`, "203.0.113.1"); resp.Status == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited != 4 {
		t.Errorf("%d of 20 flood calls refused, want 4", limited)
	}
	if resp, _ := ask("POST", "page-key", "", `{"anonymousId": "a", "placements": ["hero"]}`, "203.0.113.2"); resp.Status != 200 {
		t.Errorf("another address during the flood: %d %s", resp.Status, resp.Body)
	}
}
