package serve

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tailorcdp/tailor/state"
)

// exportFake is a profileFake that answers exports of the views it holds.
type exportFake struct{ profileFake }

func (f *exportFake) Export(key string) (state.Export, error) {
	v, err := f.ProfileView(key)
	if err != nil {
		return state.Export{}, err
	}
	return state.Export{View: v, ConsentHistory: []state.ConsentChange{{Purpose: "Marketing", Granted: true, Source: "analytics.js"}}}, nil
}

// TestExportHandler: GET /v1/profiles/{key}/export answers an admin key
// with the export of the key read from the raw path, and each error as
// JSON; the admin API off, it is 403.
func TestExportHandler(t *testing.T) {
	profiles := &exportFake{profileFake{
		views: map[string]state.View{"u1": {Key: "u1"}, "a/export": {Key: "a/export"}, "café": {Key: "café"}},
		errs:  map[string]error{"broken": errBroken, "moved": &state.MergedError{Key: "moved", Into: "elsewhere"}},
	}}
	s := handlerServer(t, Config{Admin: &adminFake{}, AdminKeys: keys("adm")}, &recorder{}, profiles)
	for _, tc := range []struct {
		r      request
		status int
		want   string // in the body
	}{
		{request{method: "GET", uri: "/v1/profiles/u1/export", auth: "Bearer adm"}, 200, `"consentHistory":[{"purpose":"Marketing"`},
		{request{method: "HEAD", uri: "/v1/profiles/u1/export", auth: basic("adm")}, 200, ""},
		{request{method: "GET", uri: "/v1/profiles/caf%C3%A9/export", auth: "Bearer adm"}, 200, `"key":"café"`},
		{request{method: "GET", uri: "/v1/profiles/a%2Fexport/export", auth: "Bearer adm"}, 200, `"key":"a/export"`},
		{request{method: "GET", uri: "/v1/profiles/a%2Fexport", auth: "Bearer r"}, 200, `"key":"a/export"`}, // the profile, not its export
		{request{method: "GET", uri: "/v1/profiles/nobody/export", auth: "Bearer adm"}, 404, `no profile with key \"nobody\"`},
		{request{method: "GET", uri: "/v1/profiles/broken/export", auth: "Bearer adm"}, 503, "store broken"},
		{request{method: "GET", uri: "/v1/profiles/moved/export", auth: "Bearer adm"}, 503, `merged into profile \"elsewhere\"`},
		{request{method: "GET", uri: "/v1/profiles//export", auth: "Bearer adm"}, 400, "profile key is empty"},
		{request{method: "GET", uri: "/v1/profiles/a%zz/export", auth: "Bearer adm"}, 400, "not percent-encoded properly"},
		{request{method: "POST", uri: "/v1/profiles/u1/export", auth: "Bearer adm"}, 405, "use GET"},
		{request{method: "GET", uri: "/v1/profiles/u1/export", auth: "Bearer r"}, 401, "invalid admin key"},
		{request{method: "GET", uri: "/v1/profiles/u1/export"}, 401, "missing admin key"},
	} {
		a := serveOnce(s, tc.r)
		if a.status != tc.status || !strings.Contains(a.body, tc.want) {
			t.Errorf("%s %s: %d %.300s, want %d with %s", tc.r.method, tc.r.uri, a.status, a.body, tc.status, tc.want)
		}
		if tc.status >= 400 {
			errorOf(t, a)
		}
	}
	for _, key := range profiles.viewed {
		if key == "" || key == "nobody/export" {
			t.Errorf("asked for profile %q", key)
		}
	}

	for _, cfg := range []Config{{}, {Admin: &adminFake{}}} { // no admin keys
		s := handlerServer(t, cfg, &recorder{}, profiles)
		a := serveOnce(s, request{method: "GET", uri: "/v1/profiles/u1/export", auth: "Bearer adm"})
		if e := errorOf(t, a); a.status != 403 || !strings.Contains(e.Message, "the admin API is off") {
			t.Errorf("admin %v keys %v: %d %s, want 403", cfg.Admin != nil, cfg.AdminKeys, a.status, a.body)
		}
	}
	// Profiles that cannot export.
	s = handlerServer(t, Config{Admin: &adminFake{}, AdminKeys: keys("adm")}, &recorder{}, &profiles.profileFake)
	if a := serveOnce(s, request{method: "GET", uri: "/v1/profiles/u1/export", auth: "Bearer adm"}); a.status != 404 {
		t.Errorf("without an Exporter: %d %s, want 404", a.status, a.body)
	}
}

// keyedExports is a keyed that answers exports too.
type keyedExports struct{ keyed }

func (k *keyedExports) Export(key string) (state.Export, error) {
	v, err := k.ProfileView(key)
	return state.Export{View: v, MessageIDs: 3}, err
}

// TestExportForwarded: an export of a key another instance holds is sent
// on to it, the key as sent, and answered from there.
func TestExportForwarded(t *testing.T) {
	cfg := Config{Admin: &adminFake{}, AdminKeys: keys("adm")}
	owner := &keyedExports{}
	ownerAddr, _ := startServer(t, cfg, &recorder{}, owner)
	front := &keyedExports{keyed{owner: ownerAddr}}
	frontAddr, _ := startServer(t, cfg, &recorder{}, front)
	for path, want := range map[string]string{
		"/v1/profiles/u1/export":            "u1",
		"/v1/profiles/c%2F..%2Fd/export":    "c/../d",
		"/v1/profiles/a/../../b/export?x=1": "a/../../b",
	} {
		resp, text := rawRequest(t, frontAddr, "GET "+path+" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer adm\r\nConnection: close\r\n\r\n")
		var x state.Export
		if err := json.Unmarshal([]byte(text), &x); err != nil || resp.StatusCode != http.StatusOK || x.Key != want || x.MessageIDs != 3 {
			t.Errorf("GET %s: %d %s, want the export of %q", path, resp.StatusCode, text, want)
		}
	}
	owner.mu.Lock()
	defer owner.mu.Unlock()
	if got := fmt.Sprint(len(owner.asked), len(front.asked)); got != "3 0" {
		t.Errorf("the owner was asked %d keys and the front %d, want 3 and 0", len(owner.asked), len(front.asked))
	}
}
