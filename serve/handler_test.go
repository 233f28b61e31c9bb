package serve

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fasthttp"

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/state"
)

// The handler tests run each request through Server.Handler in memory (no
// listener): the fakes behind the small interfaces serve uses (Events,
// Profiles, Decisions, Admin) say what each handler asked for and give the
// answers a branch needs.

// keys returns keys labelled "label-" and their secret.
func keys(secrets ...string) []Key {
	out := make([]Key, len(secrets))
	for i, secret := range secrets {
		out[i] = Key{Label: "label-" + secret, Secret: secret}
	}
	return out
}

// handlerServer returns a server of cfg (write key "w", read key "r",
// unless cfg names keys) over events and profiles.
func handlerServer(t *testing.T, cfg Config, events Events, profiles Profiles) *Server {
	t.Helper()
	if cfg.WriteKeys == nil {
		cfg.WriteKeys, cfg.ReadKeys = keys("w"), keys("r")
	}
	cfg.EventsTopic = "events"
	if cfg.Limits == (event.Limits{}) {
		cfg.Limits = event.DefaultLimits()
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Now = func() time.Time { return time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC) }
	s, err := New(cfg, events, profiles, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// request is one request to a handler.
type request struct {
	method, uri string
	auth        string // the Authorization header; "" for none
	body        string
	header      map[string]string
}

// answer is a handler's answer.
type answer struct {
	status int
	body   string
	header *fasthttp.ResponseHeader
}

// serveOnce runs r through s's handler in memory.
func serveOnce(s *Server, r request) answer {
	var req fasthttp.Request
	req.Header.SetMethod(r.method)
	req.SetRequestURI(r.uri)
	if r.auth != "" {
		req.Header.Set(fasthttp.HeaderAuthorization, r.auth)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	if r.body != "" {
		req.SetBodyString(r.body)
	}
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, nil, nil)
	s.Handler()(&ctx)
	var h fasthttp.ResponseHeader
	ctx.Response.Header.CopyTo(&h)
	return answer{status: ctx.Response.StatusCode(), body: string(ctx.Response.Body()), header: &h}
}

// errorOf decodes an error answer.
func errorOf(t *testing.T, a answer) ErrorBody {
	t.Helper()
	var e ErrorBody
	if err := json.Unmarshal([]byte(a.body), &e); err != nil {
		t.Fatalf("error answer %d %q: %v", a.status, a.body, err)
	}
	if e.Success || e.Message == "" || e.Error != e.Message || e.Code != statusCode(a.status) && !knownCode(e.Code) {
		t.Errorf("error answer %d %q: want success false, a code and a message", a.status, a.body)
	}
	return e
}

// knownCode says whether code is one of the codes handlers set themselves.
func knownCode(code string) bool {
	switch code {
	case "invalid_event", "invalid_body", "invalid_batch", "too_large", "busy", "unavailable", "invalid_config":
		return true
	}
	return false
}

// failing is an Events whose produces fail.
type failing struct{ err error }

func (f failing) Produce(context.Context, ...*kgo.Record) error { return f.err }

// profileFake is a Profiles holding views by key, or an error for a key.
type profileFake struct {
	views  map[string]state.View
	errs   map[string]error
	sizes  map[string]int64
	model  state.Model
	ready  bool
	mu     sync.Mutex
	viewed []string
}

func (f *profileFake) ProfileView(key string) (state.View, error) {
	f.mu.Lock()
	f.viewed = append(f.viewed, key)
	f.mu.Unlock()
	if err := f.errs[key]; err != nil {
		return state.View{}, err
	}
	v, ok := f.views[key]
	if !ok {
		return state.View{}, state.ErrNotFound
	}
	return v, nil
}
func (f *profileFake) Ready() bool                    { return f.ready }
func (f *profileFake) SegmentSizes() map[string]int64 { return f.sizes }
func (f *profileFake) Model() *state.Model            { return &f.model }
func (f *profileFake) Owner(string) (string, bool)    { return "", true }

var errBroken = errors.New("store broken")

// TestRoutes: every route answers, an unknown path is a JSON 404, and the
// probes need no key.
func TestRoutes(t *testing.T) {
	s := handlerServer(t, Config{}, &recorder{}, &profileFake{ready: true})
	for _, tc := range []struct {
		r      request
		status int
		want   string // in the body
	}{
		{request{method: "GET", uri: "/healthz"}, 200, `"status":"ok"`},
		{request{method: "GET", uri: "/readyz"}, 200, `"status":"ready"`},
		{request{method: "GET", uri: "/metrics"}, 200, "tailor_http_body_bytes_in_flight"},
		{request{method: "GET", uri: "/v1/nothing"}, 404, "no such endpoint: /v1/nothing"},
		{request{method: "GET", uri: "/"}, 404, "no such endpoint: /"},
		{request{method: "GET", uri: "/v1/x/../profiles/k", auth: "Bearer r"}, 404, "send the profile key right after"},
	} {
		a := serveOnce(s, tc.r)
		if a.status != tc.status || !strings.Contains(a.body, tc.want) {
			t.Errorf("%s %s: %d %.200s, want %d with %q", tc.r.method, tc.r.uri, a.status, a.body, tc.status, tc.want)
		}
		if tc.status == 404 {
			if e := errorOf(t, a); e.Code != "not_found" {
				t.Errorf("%s: code %q, want not_found", tc.r.uri, e.Code)
			}
		}
	}
}

// TestCollectRoute: the collect paths the route table holds, and paths
// it does not (the type each takes is checked by the collect tests that
// send to them).
func TestCollectRoute(t *testing.T) {
	table := make(map[string]bool)
	for _, r := range collectRoutes() {
		table[r.path] = true
	}
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{"/v1/batch", true}, {"/v1/import", true}, {"/v1/b", true}, {"/beacon/v1/batch", true},
		{"/v1/track", true}, {"/v1/t", true}, {"/v1/p", true}, {"/v1/identify", true}, {"/v1/i", true},
		{"/v1/s", true}, {"/v1/g", true}, {"/v1/a", true},
		{"/v1/x", false}, {"/v1/segments", false}, {"/v2/track", false}, {"/v1/", false},
	} {
		if table[tc.path] != tc.ok {
			t.Errorf("%s in the collect routes: %v, want %v", tc.path, table[tc.path], tc.ok)
		}
	}
}
