package serve

import (
	"slices"

	"github.com/valyala/fasthttp"
)

// corsRoute says what browsers on an allowed origin (Config.CORSOrigins)
// may do on a route.
type corsRoute struct {
	// methods are the methods a preflight allows ("POST, OPTIONS").
	methods string
	// credentials answers with the request's own origin and
	// Access-Control-Allow-Credentials, also when any origin is allowed,
	// so that requests sent with credentials (sendBeacon with a body that
	// is not text/plain, fetch with credentials: "include") are not
	// blocked. Only for routes that read no cookies: credentials then
	// grant nothing.
	credentials bool
}

var (
	// decideCORS: decide is called with fetch or XHR and a read or decide key.
	decideCORS = corsRoute{methods: "GET, POST, OPTIONS"}
	// collectCORS: analytics.js, RudderStack's SDKs and beacons.
	collectCORS = corsRoute{methods: "POST, OPTIONS", credentials: true}
)

// corsDefaultHeaders are the request headers a preflight allows when it
// names none that can be echoed.
const corsDefaultHeaders = "Authorization, Content-Type, Content-Encoding"

// maxCORSHeaders bounds the Access-Control-Request-Headers echoed back.
const maxCORSHeaders = 1024

// cors answers browsers' cross-origin checks on route for the allowed
// origins, on every answer (errors too, so that a browser client reads
// the status instead of a network error), and reports whether the
// request is a preflight, which the caller answers with 204 and nothing
// else. An origin that is not allowed gets no CORS headers: its browser
// then refuses to send or to read.
//
// A preflight allows the request headers it asks for (any SDK's own
// headers: analytics.js's Authorization and X-Retry-Count, rudder-sdk-js's
// AnonymousId, SentAt and Rsa-*), which tailor ignores unless it knows
// them. Retry-After is exposed to scripts (analytics.js reads it on 429).
func (s *Server) cors(ctx *fasthttp.RequestCtx, route corsRoute) (preflight bool) {
	preflight = ctx.IsOptions()
	origin := ctx.Request.Header.Peek("Origin")
	if len(origin) == 0 || len(s.cfg.CORSOrigins) == 0 {
		return preflight
	}
	h := &ctx.Response.Header
	anyOrigin := slices.Contains(s.cfg.CORSOrigins, "*")
	if anyOrigin && !route.credentials {
		h.Set("Access-Control-Allow-Origin", "*")
	} else {
		// The answer depends on the origin, allowed or not.
		h.Set("Vary", "Origin")
		if !anyOrigin && !slices.Contains(s.cfg.CORSOrigins, string(origin)) {
			return preflight
		}
		h.SetBytesV("Access-Control-Allow-Origin", origin)
		if route.credentials {
			h.Set("Access-Control-Allow-Credentials", "true")
		}
	}
	if !preflight {
		h.Set("Access-Control-Expose-Headers", "Retry-After")
		return false
	}
	h.Set("Access-Control-Allow-Methods", route.methods)
	if asked := ctx.Request.Header.Peek("Access-Control-Request-Headers"); len(asked) > 0 && len(asked) <= maxCORSHeaders && headerList(asked) {
		h.SetBytesV("Access-Control-Allow-Headers", asked)
	} else {
		h.Set("Access-Control-Allow-Headers", corsDefaultHeaders)
	}
	h.Set("Access-Control-Max-Age", "600")
	return true
}

// headerList says whether b is a comma-separated list of header names
// (RFC 9110 tokens), safe to write back as a header value.
func headerList(b []byte) bool {
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == ',' || c == ' ' || c == '\t':
		case tokenSymbol(c):
		default:
			return false
		}
	}
	return true
}

// tokenSymbol says whether c is one of the symbols a token may hold.
func tokenSymbol(c byte) bool {
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}
