package serve

import (
	"bytes"
	"net/url"

	"github.com/valyala/fasthttp"

	"github.com/tailorcdp/tailor/event"
)

// route is one path the server answers: the table below is what the
// router dispatches on, and what TestOpenAPICoversRoutes holds the OpenAPI
// description (openapi.yaml) to. A new endpoint is a new entry here and a
// new path there.
type route struct {
	// path is the request path, or for the profile route its template as
	// the description writes it.
	path string
	// label is the route's label in the latency metrics.
	label string
	// methods are the methods it serves (OPTIONS: the CORS preflight).
	// GET routes answer HEAD too, as HTTP defines it.
	methods []string
	serve   func(*Server, *fasthttp.RequestCtx)
}

// profileRoute is the profile route's path template.
const profileRoute = profilesPrefix + "{key}"

// profilesPrefix starts the path of a profile; the key follows,
// percent-encoded.
const profilesPrefix = "/v1/profiles/"

// routes returns every route the server answers.
func routes() []*route {
	get := []string{fasthttp.MethodGet}
	rs := []*route{
		{profileRoute, profileRoute, []string{fasthttp.MethodGet, fasthttp.MethodDelete}, nil}, // dispatched by prefix: see route
		{exportRoute, exportRoute, get, nil},                                                   // dispatched by prefix and suffix: see route
		{erasureRoute, erasureRoute, get, nil},
		{"/v1/segments", "/v1/segments", get, (*Server).segments},
		{"/v1/decide", "/v1/decide", []string{fasthttp.MethodGet, fasthttp.MethodPost, fasthttp.MethodOptions}, (*Server).decide},
		{"/v1/offers", "/v1/offers", get, (*Server).offers},
		{"/v1/cluster", "/v1/cluster", get, (*Server).cluster},
		{"/v1/destinations", "/v1/destinations", get, (*Server).destinations},
		{"/v1/admin/config", "/v1/admin/config", []string{fasthttp.MethodPut}, (*Server).adminConfig},
		{"/healthz", "/healthz", get, func(_ *Server, ctx *fasthttp.RequestCtx) {
			writeJSON(ctx, fasthttp.StatusOK, map[string]any{"status": "ok"})
		}},
		{"/readyz", "/readyz", get, (*Server).readyz},
		{"/metrics", "/metrics", get, func(s *Server, ctx *fasthttp.RequestCtx) { s.metrics(ctx) }},
		{"/openapi.json", "/openapi.json", get, (*Server).openapi},
		{"/v1/tailor.js", "/v1/tailor.js", get, (*Server).tailorJS},
	}
	return append(rs, collectRoutes()...)
}

// collectRoutes are the collect endpoints: Segment's tracking API paths
// (/v1/batch, /v1/import, /v1/track, ...), analytics.js's short paths
// (/v1/b, and /v1/t, /v1/p, /v1/i, /v1/g, /v1/a, /v1/s: the type's first
// letter, under apiHost "<host>/v1") and RudderStack's beacon path
// (/beacon/v1/batch).
func collectRoutes() []*route {
	methods := []string{fasthttp.MethodPost, fasthttp.MethodOptions}
	batch := func(s *Server, ctx *fasthttp.RequestCtx) { s.collect(ctx, 0, true) }
	rs := []*route{
		{"/v1/batch", "/v1/batch", methods, batch},
		{"/v1/import", "/v1/batch", methods, batch},
		{"/v1/b", "/v1/b", methods, batch},
		{"/beacon/v1/batch", "/beacon/v1/batch", methods, batch},
	}
	for _, typ := range event.Types {
		one := func(s *Server, ctx *fasthttp.RequestCtx) { s.collect(ctx, typ, false) }
		name := "/v1/" + typ.String()
		short := name[:len("/v1/")+1]
		rs = append(rs, &route{name, name, methods, one}, &route{short, short, methods, one})
	}
	return rs
}

// route dispatches a request and returns its route label.
func (s *Server) route(ctx *fasthttp.RequestCtx) string {
	// A profile key is opaque: it is read from the path as sent, before
	// fasthttp's normalising (which decodes %2F and resolves "..", so
	// that /v1/profiles/c%2F..%2Fd would read profile d).
	if raw := ctx.URI().PathOriginal(); bytes.HasPrefix(raw, []byte(profilesPrefix)) {
		if rest, ok := bytes.CutSuffix(raw[len(profilesPrefix):], []byte(exportSuffix)); ok {
			s.export(ctx, string(rest))
			return exportRoute
		}
		key, err := url.PathUnescape(string(raw[len(profilesPrefix):]))
		switch {
		case err != nil:
			writeError(ctx, fasthttp.StatusBadRequest, "key", "profile key is not percent-encoded properly: "+err.Error())
		case ctx.IsDelete():
			s.erase(ctx, key)
		case ctx.IsGet() || ctx.IsHead():
			s.profile(ctx, key)
		default:
			ctx.Response.Header.Set(fasthttp.HeaderAllow, "GET, HEAD, DELETE")
			writeError(ctx, fasthttp.StatusMethodNotAllowed, "", "use GET to read a profile, DELETE to erase it")
		}
		return profileRoute
	}
	if raw := ctx.URI().PathOriginal(); bytes.HasPrefix(raw, []byte(erasuresPrefix)) {
		id, err := url.PathUnescape(string(raw[len(erasuresPrefix):]))
		if err != nil {
			writeError(ctx, fasthttp.StatusBadRequest, "id", "erasure id is not percent-encoded properly: "+err.Error())
		} else {
			s.erasure(ctx, id)
		}
		return erasureRoute
	}
	path := ctx.Path()
	if r := s.routes[string(path)]; r != nil {
		r.serve(s, ctx)
		return r.label
	}
	if bytes.HasPrefix(path, []byte(profilesPrefix)) {
		// Only a path that normalising turned into a profile's: the key
		// would not be the one sent.
		writeError(ctx, fasthttp.StatusNotFound, "", "no such endpoint: "+string(ctx.URI().PathOriginal())+
			": send the profile key right after "+profilesPrefix+", percent-encoded")
		return "other"
	}
	writeError(ctx, fasthttp.StatusNotFound, "", "no such endpoint: "+string(path))
	return "other"
}
