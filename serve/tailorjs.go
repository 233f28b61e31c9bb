package serve

import (
	"github.com/valyala/fasthttp"
)

// tailorJSMaxAge is how long browsers and caches may keep tailor.js
// without asking again (then an If-None-Match costs a 304): short, so
// that an upgraded engine's script reaches pages within minutes.
const tailorJSMaxAge = "public, max-age=300"

// tailorJS serves GET /v1/tailor.js, the script web pages include to
// show offers (package web): no key, minified, gzipped when the client
// accepts it, with an entity tag for conditional requests. Any origin may
// read it (Access-Control-Allow-Origin: *), so that pages can load it
// with crossorigin and Subresource Integrity.
func (s *Server) tailorJS(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		writeError(ctx, fasthttp.StatusMethodNotAllowed, "", "use GET")
		return
	}
	a := s.script
	gz := ctx.Request.Header.HasAcceptEncoding("gzip")
	etag, body := a.ETag, a.Body
	if gz {
		etag, body = a.GzipETag, a.Gzip
	}
	h := &ctx.Response.Header
	h.Set(fasthttp.HeaderCacheControl, tailorJSMaxAge)
	h.Set(fasthttp.HeaderVary, "Accept-Encoding")
	h.Set(fasthttp.HeaderETag, etag)
	h.Set("Access-Control-Allow-Origin", "*")
	if inm := ctx.Request.Header.Peek(fasthttp.HeaderIfNoneMatch); len(inm) > 0 && a.Matches(string(inm)) {
		ctx.SetStatusCode(fasthttp.StatusNotModified)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType(a.ContentType)
	if gz {
		h.Set(fasthttp.HeaderContentEncoding, "gzip")
	}
	ctx.SetBody(body)
}
