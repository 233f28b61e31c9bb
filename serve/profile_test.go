package serve

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/tailorcdp/tailor/state"
)

// TestProfileHandler: a profile by its key, or the error that says why
// not, behind the read key.
func TestProfileHandler(t *testing.T) {
	f := &profileFake{
		views: map[string]state.View{"u1": {Key: "u1"}, "a/b": {Key: "a/b"}},
		errs: map[string]error{
			"fenced": fmt.Errorf("partition 3: %w", state.ErrUnavailable),
			"broken": errBroken,
			"merged": &state.MergedError{Key: "merged", Into: "u1"},
		},
	}
	s := handlerServer(t, Config{}, &recorder{}, f)
	for _, tc := range []struct {
		r      request
		status int
		want   string // the key of the view, or in the error's message
	}{
		{request{method: "GET", uri: "/v1/profiles/u1", auth: "Bearer r"}, 200, "u1"},
		{request{method: "HEAD", uri: "/v1/profiles/u1", auth: basic("r")}, 200, ""},
		{request{method: "GET", uri: "/v1/profiles/a%2Fb", auth: "Bearer r"}, 200, "a/b"},
		{request{method: "GET", uri: "/v1/profiles/nobody", auth: "Bearer r"}, 404, `no profile with key "nobody"`},
		{request{method: "GET", uri: "/v1/profiles/fenced", auth: "Bearer r"}, 503, "profile unavailable"},
		{request{method: "GET", uri: "/v1/profiles/broken", auth: "Bearer r"}, 503, "store broken"},
		// Merged into a profile no other instance holds: answered here.
		{request{method: "GET", uri: "/v1/profiles/merged", auth: "Bearer r"}, 503, `merged into profile "u1"`},
		{request{method: "GET", uri: "/v1/profiles/", auth: "Bearer r"}, 400, "profile key is empty"},
		{request{method: "GET", uri: "/v1/profiles/%zz", auth: "Bearer r"}, 400, "not percent-encoded properly"},
		{request{method: "GET", uri: "/v1/profiles/u1"}, 401, "missing read key"},
		{request{method: "GET", uri: "/v1/profiles/u1", auth: "Bearer w"}, 401, "invalid read key"},
		{request{method: "POST", uri: "/v1/profiles/u1", auth: "Bearer r"}, 405, "use GET"},
	} {
		a := serveOnce(s, tc.r)
		if a.status != tc.status {
			t.Errorf("%s %s: %d %s, want %d", tc.r.method, tc.r.uri, a.status, a.body, tc.status)
			continue
		}
		if tc.status != 200 {
			if e := errorOf(t, a); !strings.Contains(e.Message, tc.want) {
				t.Errorf("%s: %q, want %q in it", tc.r.uri, e.Message, tc.want)
			}
			if tc.status == 503 && string(a.header.Peek("Retry-After")) != "1" {
				t.Errorf("%s: 503 without Retry-After", tc.r.uri)
			}
			continue
		}
		if tc.r.method == "HEAD" {
			continue
		}
		var v state.View
		if err := json.Unmarshal([]byte(a.body), &v); err != nil || v.Key != tc.want {
			t.Errorf("%s: %s, want the view of %q", tc.r.uri, a.body, tc.want)
		}
	}
}

// TestSegmentsHandler: the configured segments, sorted by name, with their
// rules and this instance's sizes.
func TestSegmentsHandler(t *testing.T) {
	segs, err := state.CompileSegments([]state.SegmentConfig{
		{Name: "vip", Rule: `traits.plan == "gold"`},
		{Name: "buyers", Rule: `has(traits.email)`},
	}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := &profileFake{sizes: map[string]int64{"vip": 7}, model: state.Model{Segments: segs}}
	s := handlerServer(t, Config{}, &recorder{}, f)
	a := serveOnce(s, request{method: "GET", uri: "/v1/segments", auth: "Bearer r"})
	var got struct{ Segments []SegmentInfo }
	if err := json.Unmarshal([]byte(a.body), &got); err != nil || a.status != 200 {
		t.Fatalf("%d %s: %v", a.status, a.body, err)
	}
	want := []SegmentInfo{{Name: "buyers", Rule: `has(traits.email)`}, {Name: "vip", Rule: `traits.plan == "gold"`, Size: 7}}
	if fmt.Sprint(got.Segments) != fmt.Sprint(want) {
		t.Errorf("segments %v, want %v", got.Segments, want)
	}
	// No segments: an empty list, not null.
	s = handlerServer(t, Config{}, &recorder{}, &profileFake{})
	if a := serveOnce(s, request{method: "GET", uri: "/v1/segments", auth: "Bearer r"}); a.body != `{"segments":[]}` {
		t.Errorf("no segments: %s", a.body)
	}
	if a := serveOnce(s, request{method: "GET", uri: "/v1/segments", auth: "Bearer w"}); a.status != 401 {
		t.Errorf("write key: %d, want 401", a.status)
	}
}

// TestReadyzHandler: ready is 200, catching up 503, and a probe needs
// no key.
func TestReadyzHandler(t *testing.T) {
	for _, ready := range []bool{true, false} {
		s := handlerServer(t, Config{}, &recorder{}, &profileFake{ready: ready})
		a := serveOnce(s, request{method: "GET", uri: "/readyz"})
		var r Readiness
		if err := json.Unmarshal([]byte(a.body), &r); err != nil || r.Ready != ready || r.Serve != ready || !r.Collect {
			t.Errorf("ready %v: %d %s", ready, a.status, a.body)
		}
		if want := map[bool]int{true: 200, false: 503}[ready]; a.status != want {
			t.Errorf("ready %v: status %d, want %d", ready, a.status, want)
		}
	}
}
