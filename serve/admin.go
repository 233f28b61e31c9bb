package serve

import (
	"context"
	"errors"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/tailorcdp/tailor/audit"
	"github.com/tailorcdp/tailor/config"
)

// maxConfigBody bounds a configuration document.
const maxConfigBody = 1 << 20

// adminConfig serves PUT /v1/admin/config: a new configuration, as YAML,
// replaces the running one.
func (s *Server) adminConfig(ctx *fasthttp.RequestCtx) {
	if s.cfg.Admin == nil || len(s.cfg.AdminKeys) == 0 {
		writeError(ctx, fasthttp.StatusForbidden, "", "the admin API is off: set http.admin_keys (--admin-keys) to turn it on")
		return
	}
	if !ctx.IsPut() {
		writeError(ctx, fasthttp.StatusMethodNotAllowed, "", "use PUT with the whole configuration as YAML")
		return
	}
	user, ok := basicUser(ctx)
	label, ok := checkKey(ctx, user, ok, s.cfg.AdminKeys, "admin key", "the Basic auth user name or a Bearer token")
	if !ok {
		return
	}
	body, release, err := s.readBody(ctx, maxConfigBody)
	if err != nil {
		bodyError(ctx, err)
		return
	}
	defer release()
	// Not the request's context: the producer may keep a record's
	// context after the answer, when fasthttp has reused the request's.
	res, err := s.cfg.Admin.ReloadConfig(context.Background(), body, label)
	switch {
	case errors.Is(err, config.ErrInvalid):
		writeJSON(ctx, fasthttp.StatusBadRequest, ErrorBody{Code: "invalid_config", Message: err.Error(), Error: err.Error(), Errors: problems(err)})
	case errors.Is(err, audit.ErrNotRecorded):
		// Nothing changed: the client may send it again.
		s.log.Warn("config reload refused: its audit record could not be written", "by", label, "err", err)
		writeError(ctx, fasthttp.StatusServiceUnavailable, "", err.Error()+"; the running configuration stays in force")
	case err != nil:
		s.log.Error("config reload failed", "err", err)
		writeError(ctx, fasthttp.StatusInternalServerError, "", err.Error())
	default:
		writeJSON(ctx, fasthttp.StatusOK, res)
	}
}

// problems lists the problems of a rejected configuration, one per line
// of the joined errors.
func problems(err error) []string {
	var out []string
	for _, line := range strings.Split(err.Error(), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out
}
