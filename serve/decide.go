package serve

import (
	"errors"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/tailorcdp/tailor/decide"
	"github.com/tailorcdp/tailor/state"
)

// Decisions answers decide calls and reports the offers' results.
type Decisions interface {
	// Decide appends the JSON answer to r to dst; a problem with the
	// request is a *decide.RequestError.
	Decide(dst []byte, r *decide.Request) ([]byte, error)
	// SignUser returns the userHash of userID under the identity secret
	// ("" without one).
	SignUser(userID string) string
	Report() decide.Report
}

// maxDecideBody bounds a decide request body.
const maxDecideBody = 32 << 10

// decideScratch is the memory one decide request reuses.
type decideScratch struct {
	json fastjson.Parser
	out  []byte
}

// decide serves POST and GET /v1/decide.
func (s *Server) decide(ctx *fasthttp.RequestCtx) {
	if s.cors(ctx, decideCORS) {
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return
	}
	if !ctx.IsGet() && !ctx.IsPost() {
		writeError(ctx, fasthttp.StatusMethodNotAllowed, "", "use POST (or GET for simple clients)")
		return
	}
	user, ok, refused := s.decideKey(ctx)
	if refused {
		return
	}
	if _, ok = checkKey(ctx, user, ok, s.decideKeys, "read or decide key", "the Basic auth user name, a Bearer token or (a decide key) the key query parameter"); !ok {
		return
	}
	// A read key never leaves the site's servers: its calls need no
	// userHash and are not rate limited. A decide key ships in pages.
	_, trusted := validKey(user, s.cfg.ReadKeys)
	if !trusted && (!s.limits.allowAddress(ctx, "decide", s.limits.decideAddress) ||
		!s.limits.allowKey(ctx, "decide", s.limits.decideKey, user)) {
		return
	}
	if s.decisions == nil {
		writeError(ctx, fasthttp.StatusNotFound, "", "no placements are configured")
		return
	}
	sc := s.decideScratch.Get().(*decideScratch)
	defer s.decideScratch.Put(sc)
	var req decide.Request
	var err error
	if ctx.IsPost() {
		body, release, rerr := s.readBody(ctx, maxDecideBody)
		if rerr != nil {
			bodyError(ctx, rerr)
			return
		}
		defer release()
		req, err = decide.ParseRequest(&sc.json, body)
	} else {
		args := ctx.QueryArgs()
		req, err = decide.QueryRequest(&sc.json, args.Peek, args.PeekMulti)
	}
	req.Trusted = trusted
	if err == nil && s.forward(ctx, req.Key()) {
		return
	}
	if err == nil {
		sc.out, err = s.decisions.Decide(sc.out[:0], &req)
	}
	var merged *state.MergedError
	if errors.As(err, &merged) {
		// The visitor's profile was merged into one another instance
		// holds: ask it, by the key it was merged into, else answer as
		// for an unknown visitor.
		// The caller could read the merged profile: so may the request
		// made for it, signed (identity verification).
		asked := decide.Request{UserID: merged.Into, UserHash: s.decisions.SignUser(merged.Into), Trusted: trusted,
			Placements: req.Placements, Context: req.Context}
		if s.forwardMerged(ctx, merged.Into, func(r *fasthttp.Request) {
			r.Header.SetMethod(fasthttp.MethodPost)
			r.SetRequestURI("/v1/decide")
			r.Header.SetContentType("application/json")
			r.Header.Del("Content-Encoding")
			r.SetBody(asked.AppendJSON(nil))
		}) {
			return
		}
		sc.out, err = s.decisions.Decide(sc.out[:0], &asked)
	}
	var rerr *decide.RequestError
	switch {
	case errors.As(err, &rerr):
		writeError(ctx, fasthttp.StatusBadRequest, rerr.Field, rerr.Problem)
	case errors.Is(err, state.ErrUnavailable): // the profile's partition is fenced
		writeError(ctx, fasthttp.StatusServiceUnavailable, "", err.Error())
	case err != nil:
		writeError(ctx, fasthttp.StatusInternalServerError, "", err.Error())
	default:
		s.markRead(ctx, req.Key())
		// An answer is for one visitor now: no cache keeps it.
		ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetContentType("application/json")
		ctx.SetBody(sc.out)
	}
}

// decideKey returns the key of a decide call and whether it carried one:
// from the Authorization header, else, for a decide key, from the key
// query parameter, which lets a browser call decide as a simple request,
// without a CORS preflight (tailor.js does). A read key in the query is
// refused (answered 401: refused is true): it would be written into logs
// and browser histories, and it must never reach a page.
func (s *Server) decideKey(ctx *fasthttp.RequestCtx) (key string, present, refused bool) {
	if user, ok := basicUser(ctx); ok {
		return user, true, false
	}
	q := ctx.QueryArgs().Peek("key")
	if len(q) == 0 {
		return "", false, false
	}
	if _, read := validKey(string(q), s.cfg.ReadKeys); read {
		writeError(ctx, fasthttp.StatusUnauthorized, "key", "a read key must not be sent in the URL: send it as the Basic auth user name or a Bearer token, from your servers only")
		return "", false, true
	}
	return string(q), true, false
}

// offers serves GET /v1/offers: each offer's results.
func (s *Server) offers(ctx *fasthttp.RequestCtx) {
	if !s.readAllowed(ctx) {
		return
	}
	if s.decisions == nil {
		writeJSON(ctx, fasthttp.StatusOK, decide.Report{Offers: []decide.OfferReport{}, Placements: []decide.PlacementReport{}})
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, s.decisions.Report())
}
