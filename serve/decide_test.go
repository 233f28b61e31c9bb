package serve

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/tailorcdp/tailor/decide"
	"github.com/tailorcdp/tailor/state"
)

// decisionsFake answers decide calls with the request it was asked, or the
// error set for the key.
type decisionsFake struct {
	mu    sync.Mutex
	asked []string // "userId/anonymousId:placements"
	errs  map[string]error
}

func (d *decisionsFake) Decide(dst []byte, r *decide.Request) ([]byte, error) {
	d.mu.Lock()
	asked := fmt.Sprintf("%s/%s:%s", r.UserID, r.AnonymousID, strings.Join(r.Placements, ","))
	d.asked = append(d.asked, asked)
	d.mu.Unlock()
	if err := d.errs[r.Key()]; err != nil {
		return dst, err
	}
	return fmt.Appendf(dst, `{"asked":%q}`, asked), nil
}

func (d *decisionsFake) Report() decide.Report {
	return decide.Report{Offers: []decide.OfferReport{{Offer: "o1", Placement: "home"}}, Placements: []decide.PlacementReport{}}
}

// SignUser signs nothing: the fake has no identity secret.
func (d *decisionsFake) SignUser(string) string { return "" }

// TestDecideHandler: a decide call by POST or GET, with a read or decide
// key, and each error its answer can meet.
func TestDecideHandler(t *testing.T) {
	d := &decisionsFake{errs: map[string]error{
		"fenced": fmt.Errorf("partition 1: %w", state.ErrUnavailable),
		"broken": errBroken,
		"merged": &state.MergedError{Key: "merged", Into: "u9"},
	}}
	s := handlerServer(t, Config{Decisions: d, DecideKeys: keys("d")}, &recorder{}, noProfiles{})
	for _, tc := range []struct {
		r      request
		status int
		want   string // the body, or in the error's message
	}{
		{request{method: "POST", uri: "/v1/decide", auth: "Bearer d", body: `{"userId": "u1", "placements": ["home", "recs"]}`}, 200, `{"asked":"u1/:home,recs"}`},
		{request{method: "POST", uri: "/v1/decide", auth: basic("r"), body: `{"anonymousId": "a1", "placements": ["home"]}`}, 200, `{"asked":"/a1:home"}`},
		{request{method: "GET", uri: "/v1/decide?userId=u2&placement=home&placement=recs", auth: "Bearer d"}, 200, `{"asked":"u2/:home,recs"}`},
		// Merged into a profile no other instance holds: decided here
		// for the profile it was merged into.
		{request{method: "POST", uri: "/v1/decide", auth: "Bearer d", body: `{"userId": "merged", "placements": ["home"]}`}, 200, `{"asked":"u9/:home"}`},
		{request{method: "POST", uri: "/v1/decide", auth: "Bearer d", body: `{"userId": "u1"}`}, 400, "is required: an array of placement names"},
		{request{method: "POST", uri: "/v1/decide", auth: "Bearer d", body: `[`}, 400, "body is not valid JSON"},
		{request{method: "GET", uri: "/v1/decide?placement=home", auth: "Bearer d"}, 400, "userId or anonymousId is required"},
		{request{method: "POST", uri: "/v1/decide", auth: "Bearer d", body: `{"userId": "fenced", "placements": ["home"]}`}, 503, "profile unavailable"},
		{request{method: "POST", uri: "/v1/decide", auth: "Bearer d", body: `{"userId": "broken", "placements": ["home"]}`}, 500, "store broken"},
		{request{method: "POST", uri: "/v1/decide", body: `{"userId": "u1", "placements": ["home"]}`}, 401, "missing read or decide key"},
		{request{method: "POST", uri: "/v1/decide", auth: basic("w"), body: `{"userId": "u1", "placements": ["home"]}`}, 401, "invalid read or decide key"},
		{request{method: "PUT", uri: "/v1/decide", auth: "Bearer d"}, 405, "use POST"},
		// A decide key may come in the query (tailor.js: no preflight),
		// by GET or POST; a read key may not.
		{request{method: "GET", uri: "/v1/decide?key=d&anonymousId=a2&placement=home"}, 200, `{"asked":"/a2:home"}`},
		{request{method: "POST", uri: "/v1/decide?key=d", body: `{"anonymousId": "a3", "placements": ["home"]}`}, 200, `{"asked":"/a3:home"}`},
		{request{method: "GET", uri: "/v1/decide?key=r&anonymousId=a2&placement=home"}, 401, "a read key must not be sent in the URL"},
		{request{method: "GET", uri: "/v1/decide?key=w&anonymousId=a2&placement=home"}, 401, "invalid read or decide key"},
		{request{method: "GET", uri: "/v1/decide?key=&anonymousId=a2&placement=home"}, 401, "missing read or decide key"},
	} {
		a := serveOnce(s, tc.r)
		if a.status != tc.status {
			t.Errorf("%s %s %s: %d %s, want %d", tc.r.method, tc.r.uri, tc.r.body, a.status, a.body, tc.status)
			continue
		}
		if tc.status == 200 {
			if a.body != tc.want || string(a.header.ContentType()) != "application/json" || string(a.header.Peek("Cache-Control")) != "no-store" {
				t.Errorf("%s %s: %s (%s), want %s", tc.r.method, tc.r.body, a.body, a.header.ContentType(), tc.want)
			}
			continue
		}
		if e := errorOf(t, a); !strings.Contains(e.Message, tc.want) {
			t.Errorf("%s %s: %q, want %q in it", tc.r.method, tc.r.body, e.Message, tc.want)
		}
	}

	// Without placements configured, decide is not found.
	s = handlerServer(t, Config{}, &recorder{}, noProfiles{})
	a := serveOnce(s, request{method: "POST", uri: "/v1/decide", auth: "Bearer r", body: `{"userId": "u", "placements": ["home"]}`})
	if e := errorOf(t, a); a.status != 404 || !strings.Contains(e.Message, "no placements are configured") {
		t.Errorf("no decisions: %d %s", a.status, a.body)
	}
}

// TestOffersHandler: the offers' report behind the read key, an empty one
// without placements.
func TestOffersHandler(t *testing.T) {
	s := handlerServer(t, Config{Decisions: &decisionsFake{}, DecideKeys: keys("d")}, &recorder{}, noProfiles{})
	if a := serveOnce(s, request{method: "GET", uri: "/v1/offers", auth: "Bearer r"}); a.status != 200 || !strings.Contains(a.body, `"offer":"o1"`) {
		t.Errorf("report: %d %s", a.status, a.body)
	}
	// A decide key may ship in web pages: it reads no reports.
	if a := serveOnce(s, request{method: "GET", uri: "/v1/offers", auth: "Bearer d"}); a.status != 401 {
		t.Errorf("decide key: %d %s, want 401", a.status, a.body)
	}
	s = handlerServer(t, Config{}, &recorder{}, noProfiles{})
	if a := serveOnce(s, request{method: "GET", uri: "/v1/offers", auth: "Bearer r"}); a.status != 200 || a.body != `{"offers":[],"placements":[]}` {
		t.Errorf("no decisions: %d %s", a.status, a.body)
	}
}
