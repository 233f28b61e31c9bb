package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tailorcdp/tailor/config"
)

// adminFake reloads a configuration by the text of the document: "bad"
// is invalid, "fail" fails otherwise, anything else is applied.
type adminFake struct{ docs []string }

func (a *adminFake) ReloadConfig(doc []byte) (any, error) {
	a.docs = append(a.docs, string(doc))
	switch string(doc) {
	case "bad":
		return nil, fmt.Errorf("%w:\nsegment \"x\": rule: unknown name\n\noffer \"o\": no placement", config.ErrInvalid)
	case "fail":
		return nil, errors.New("disk full")
	}
	return map[string]any{"changed": []string{"segments"}}, nil
}

// TestAdminHandler: PUT /v1/admin/config is off without admin keys, and
// otherwise answers each outcome of a reload.
func TestAdminHandler(t *testing.T) {
	admin := &adminFake{}
	s := handlerServer(t, Config{Admin: admin, AdminKeys: []string{"adm"}}, &recorder{}, noProfiles{})
	for _, tc := range []struct {
		r      request
		status int
		want   string // in the body
	}{
		{request{method: "PUT", uri: "/v1/admin/config", auth: "Bearer adm", body: "segments: []"}, 200, `{"changed":["segments"]}`},
		{request{method: "PUT", uri: "/v1/admin/config", auth: basic("adm"), body: "bad"}, 400, `"code":"invalid_config"`},
		{request{method: "PUT", uri: "/v1/admin/config", auth: "Bearer adm", body: "fail"}, 500, "disk full"},
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
	if len(admin.docs) != 3 {
		t.Errorf("reloads %q, want the three documents with a valid key", admin.docs)
	}
	// The problems of an invalid configuration are listed one by one.
	a := serveOnce(s, request{method: "PUT", uri: "/v1/admin/config", auth: "Bearer adm", body: "bad"})
	var e ErrorBody
	if err := json.Unmarshal([]byte(a.body), &e); err != nil || len(e.Errors) != 3 || e.Errors[1] != `segment "x": rule: unknown name` {
		t.Errorf("invalid config: %s", a.body)
	}

	for _, cfg := range []Config{{}, {Admin: admin}, {AdminKeys: []string{"adm"}}} {
		s := handlerServer(t, cfg, &recorder{}, noProfiles{})
		a := serveOnce(s, request{method: "PUT", uri: "/v1/admin/config", auth: "Bearer adm", body: "x"})
		if e := errorOf(t, a); a.status != 403 || !strings.Contains(e.Message, "the admin API is off") {
			t.Errorf("admin %v keys %v: %d %s, want 403", cfg.Admin != nil, cfg.AdminKeys, a.status, a.body)
		}
	}
}
