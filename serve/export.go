package serve

import (
	"errors"
	"fmt"
	"net/url"

	"github.com/valyala/fasthttp"

	"github.com/tailorcdp/tailor/audit"
	"github.com/tailorcdp/tailor/state"
)

// The access export (decision 0028): GET /v1/profiles/{key}/export
// answers, to an admin key, everything held about the person whose
// profile key is, or whose profile key was merged into: one JSON
// document (state.Export). It is read where the profile is read: on the
// instance holding the key, following links like a profile read.

// exportRoute is the export route's path template.
const exportRoute = profileRoute + exportSuffix

// exportSuffix ends the raw path of an export: a key that itself ends so
// is sent with its slash percent-encoded (%2Fexport).
const exportSuffix = "/export"

// Exporter answers access exports; the Profiles that serve is given may
// implement it (stream.Reads does).
type Exporter interface {
	// Export returns the access export of key's profile, with the
	// errors of Profiles.ProfileView.
	Export(key string) (state.Export, error)
}

// export serves the access export of key's profile (raw: the key as the
// path has it, percent-encoded).
func (s *Server) export(ctx *fasthttp.RequestCtx, raw string) {
	label, ok := s.adminAllowed(ctx)
	if !ok {
		return
	}
	if !ctx.IsGet() && !ctx.IsHead() {
		writeError(ctx, fasthttp.StatusMethodNotAllowed, "", "use GET")
		return
	}
	key, err := url.PathUnescape(raw)
	switch {
	case err != nil:
		writeError(ctx, fasthttp.StatusBadRequest, "key", "profile key is not percent-encoded properly: "+err.Error())
		return
	case key == "":
		writeError(ctx, fasthttp.StatusBadRequest, "key", "profile key is empty")
		return
	}
	exporter, ok := s.profiles.(Exporter)
	if !ok {
		writeError(ctx, fasthttp.StatusNotFound, "", "this server has no access export")
		return
	}
	if s.forward(ctx, key) {
		return
	}
	x, err := exporter.Export(key)
	var merged *state.MergedError
	switch {
	case errors.As(err, &merged):
		// Merged into a profile another instance holds: answered there.
		if !s.forwardMerged(ctx, merged.Into, func(req *fasthttp.Request) {
			req.SetRequestURI(profilesPrefix + url.PathEscape(merged.Into) + exportSuffix)
		}) {
			writeError(ctx, fasthttp.StatusServiceUnavailable, "", err.Error())
		}
	case errors.Is(err, state.ErrNotFound):
		s.markRead(ctx, key)
		writeError(ctx, fasthttp.StatusNotFound, "", fmt.Sprintf("no profile with key %q", key))
	case err != nil:
		s.log.Warn("profile export failed", "key", key, "err", err)
		writeError(ctx, fasthttp.StatusServiceUnavailable, "", err.Error())
	default:
		// Recorded before anything is answered: an export that cannot be
		// recorded does not happen.
		if err := s.audit(audit.Entry{ID: audit.NewID(), Action: audit.ProfileExported, By: label,
			Detail: map[string]any{"subject": audit.Subject(x.Key)}}); err != nil {
			s.log.Warn("export refused: its audit record could not be written", "by", label, "err", err)
			ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "1")
			writeError(ctx, fasthttp.StatusServiceUnavailable, "", err.Error()+"; nothing was exported")
			return
		}
		s.markRead(ctx, key)
		writeJSON(ctx, fasthttp.StatusOK, x)
	}
}
