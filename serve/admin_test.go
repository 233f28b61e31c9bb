package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tailorcdp/tailor/audit"
	"github.com/tailorcdp/tailor/config"
)

// adminFake reloads a configuration by the text of the document: "bad"
// is invalid, "unrecorded" cannot be recorded, "fail" fails otherwise,
// anything else is applied. It keeps the documents and who sent them.
type adminFake struct{ docs, by []string }

func (a *adminFake) ReloadConfig(_ context.Context, doc []byte, by string) (any, error) {
	a.docs, a.by = append(a.docs, string(doc)), append(a.by, by)
	switch string(doc) {
	case "bad":
		return nil, fmt.Errorf("%w:\nsegment \"x\": rule: unknown name\n\noffer \"o\": no placement", config.ErrInvalid)
	case "unrecorded":
		return nil, fmt.Errorf("record config.reloaded: %w: broker away", audit.ErrNotRecorded)
	case "fail":
		return nil, errors.New("disk full")
	}
	return map[string]any{"changed": []string{"segments"}}, nil
}

// TestAdminHandler: PUT /v1/admin/config is off without admin keys, and
// otherwise answers each outcome of a reload.
func TestAdminHandler(t *testing.T) {
	admin := &adminFake{}
	s := handlerServer(t, Config{Admin: admin, AdminKeys: []Key{{Label: "ops", Secret: "adm"}, {Label: "ci", Secret: "adm2"}}}, &recorder{}, noProfiles{})
	for _, tc := range []struct {
		r      request
		status int
		want   string // in the body
	}{
		{request{method: "PUT", uri: "/v1/admin/config", auth: "Bearer adm", body: "segments: []"}, 200, `{"changed":["segments"]}`},
		{request{method: "PUT", uri: "/v1/admin/config", auth: basic("adm"), body: "bad"}, 400, `"code":"invalid_config"`},
		{request{method: "PUT", uri: "/v1/admin/config", auth: "Bearer adm", body: "fail"}, 500, "disk full"},
		{request{method: "PUT", uri: "/v1/admin/config", auth: basic("adm2"), body: "unrecorded"}, 503, `"code":"unavailable"`},
		{request{method: "PUT", uri: "/v1/admin/config", auth: "Bearer adm"}, 400, "body is empty"},
		{request{method: "POST", uri: "/v1/admin/config", auth: "Bearer adm", body: "x"}, 405, "use PUT"},
		{request{method: "PUT", uri: "/v1/admin/config", auth: "Bearer r", body: "x"}, 401, "invalid admin key"},
		{request{method: "PUT", uri: "/v1/admin/config", body: "x"}, 401, "missing admin key"},
	} {
		a := serveOnce(s, tc.r)
		if a.status != tc.status || !strings.Contains(a.body, tc.want) {
			t.Errorf("%s %q: %d %s, want %d with %s", tc.r.method, tc.r.body, a.status, a.body, tc.status, tc.want)
		}
	}
	if got := strings.Join(admin.by, " "); len(admin.docs) != 4 || got != "ops ops ops ci" {
		t.Errorf("reloads %q by %q, want the four documents with a valid key, by the labels of their keys", admin.docs, got)
	}
	// The problems of an invalid configuration are listed one by one.
	a := serveOnce(s, request{method: "PUT", uri: "/v1/admin/config", auth: "Bearer adm", body: "bad"})
	var e ErrorBody
	if err := json.Unmarshal([]byte(a.body), &e); err != nil || len(e.Errors) != 3 || e.Errors[1] != `segment "x": rule: unknown name` {
		t.Errorf("invalid config: %s", a.body)
	}

	for _, cfg := range []Config{{}, {Admin: admin}, {AdminKeys: keys("adm")}} {
		s := handlerServer(t, cfg, &recorder{}, noProfiles{})
		a := serveOnce(s, request{method: "PUT", uri: "/v1/admin/config", auth: "Bearer adm", body: "x"})
		if e := errorOf(t, a); a.status != 403 || !strings.Contains(e.Message, "the admin API is off") {
			t.Errorf("admin %v keys %v: %d %s, want 403", cfg.Admin != nil, cfg.AdminKeys, a.status, a.body)
		}
	}
}
