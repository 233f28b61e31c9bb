package serve

import (
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/valyala/fastjson"
)

const shop = "https://shop.example"

// browserRequest is a request as a browser sends it to tailor.
type browserRequest struct {
	method, path, origin, body string
	header                     map[string]string
}

func (r browserRequest) do(t *testing.T, addr string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(r.method, "http://"+addr+r.path, strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	if r.origin != "" {
		req.Header.Set("Origin", r.origin)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// basicKey is the Authorization analytics.js 1.84 adds: btoa(writeKey + ':').
func basicKey(key string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(key+":"))
}

// TestBrowserCollect sends events over loopback the ways browsers do:
// analytics.js's short paths and batch path with text/plain bodies and
// writeKey in the body (with or without its Authorization header),
// beacons with no header at all, RudderStack's beacon path with the key
// in the URL. Every answer carries CORS headers for the allowed origin,
// errors too, so that a browser client reads the status.
func TestBrowserCollect(t *testing.T) {
	rec := &recorder{}
	addr, _ := startServer(t, Config{CORSOrigins: []string{shop}}, rec, noProfiles{})
	textPlain := map[string]string{"Content-Type": "text/plain"}
	tests := []struct {
		name   string
		req    browserRequest
		status int
		types  []string // types of the records stored
	}{
		{"track, key in body and Authorization", browserRequest{"POST", "/v1/t", shop,
			`{"type":"track","event":"Signed Up","anonymousId":"a1","userId":null,"writeKey":"w"}`,
			map[string]string{"Content-Type": "text/plain", "Authorization": basicKey("w"), "X-Retry-Count": "1"}}, 200, []string{"track"}},
		{"page, key in body only", browserRequest{"POST", "/v1/p", shop, `{"type":"page","anonymousId":"a1","writeKey":"w"}`, textPlain}, 200, []string{"page"}},
		{"identify", browserRequest{"POST", "/v1/i", shop, `{"type":"identify","userId":"u1","traits":{"plan":"pro"},"writeKey":"w"}`, textPlain}, 200, []string{"identify"}},
		{"group", browserRequest{"POST", "/v1/g", shop, `{"type":"group","userId":"u1","groupId":"g1","writeKey":"w"}`, textPlain}, 200, []string{"group"}},
		{"alias", browserRequest{"POST", "/v1/a", shop, `{"type":"alias","userId":"u1","previousId":"a1","writeKey":"w"}`, textPlain}, 200, []string{"alias"}},
		{"screen", browserRequest{"POST", "/v1/s", shop, `{"type":"screen","userId":"u1","writeKey":"w"}`, textPlain}, 200, []string{"screen"}},
		{"batch path", browserRequest{"POST", "/v1/b", shop,
			`{"writeKey":"w","batch":[{"type":"page","anonymousId":"a1","writeKey":"w"},{"type":"track","event":"E","anonymousId":"a1","writeKey":"w"}],"sentAt":"2026-05-01T12:00:00.000Z"}`,
			map[string]string{"Content-Type": "text/plain", "Authorization": basicKey("w")}}, 200, []string{"page", "track"}},
		{"beacon, text/plain;charset=UTF-8, no auth header", browserRequest{"POST", "/v1/b", shop,
			`{"writeKey":"w","batch":[{"type":"track","event":"Left","anonymousId":"a1"}]}`,
			map[string]string{"Content-Type": "text/plain;charset=UTF-8"}}, 200, []string{"track"}},
		{"beacon Blob without a type", browserRequest{"POST", "/v1/t", shop, `{"type":"track","event":"Left","anonymousId":"a1","writeKey":"w"}`, nil}, 200, []string{"track"}},
		{"RudderStack beacon, key in the URL", browserRequest{"POST", "/beacon/v1/batch?writeKey=w", shop,
			`{"batch":[{"type":"track","event":"E","anonymousId":"a1","channel":"web"}],"sentAt":"2026-05-01T12:00:00.000Z"}`, textPlain}, 200, []string{"track"}},
		{"JSON body", browserRequest{"POST", "/v1/t", shop, `{"type":"track","event":"E","anonymousId":"a1","writeKey":"w"}`,
			map[string]string{"Content-Type": "application/json"}}, 200, []string{"track"}},
		{"wrong key in body", browserRequest{"POST", "/v1/t", shop, `{"type":"track","event":"E","anonymousId":"a1","writeKey":"nope"}`, textPlain}, 401, nil},
		{"no key", browserRequest{"POST", "/v1/t", shop, `{"type":"track","event":"E","anonymousId":"a1"}`, textPlain}, 401, nil},
		{"type against the path", browserRequest{"POST", "/v1/t", shop, `{"type":"page","anonymousId":"a1","writeKey":"w"}`, textPlain}, 400, nil},
		{"GET", browserRequest{"GET", "/v1/t", shop, "", nil}, 405, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(rec.records)
			resp, body := tc.req.do(t, addr)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if h := resp.Header; h.Get("Access-Control-Allow-Origin") != shop || h.Get("Access-Control-Allow-Credentials") != "true" ||
				!strings.Contains(h.Get("Vary"), "Origin") || h.Get("Access-Control-Expose-Headers") != "Retry-After" {
				t.Errorf("CORS headers %v", resp.Header)
			}
			rec.mu.Lock()
			got := rec.records[before:]
			rec.mu.Unlock()
			if len(got) != len(tc.types) {
				t.Fatalf("%d records, want %d", len(got), len(tc.types))
			}
			for i, r := range got {
				if typ := fastjson.GetString(r.Value, "type"); typ != tc.types[i] {
					t.Errorf("record %d is a %s, want %s: %s", i, typ, tc.types[i], r.Value)
				}
				if fastjson.Exists(r.Value, "writeKey") {
					t.Errorf("record %d keeps the write key: %s", i, r.Value)
				}
			}
		})
	}
	for _, path := range []string{"/v1/x", "/v1/", "/t", "/beacon/v1/track"} {
		if resp, body := (browserRequest{"POST", path, shop, `{"writeKey":"w"}`, nil}).do(t, addr); resp.StatusCode != 404 {
			t.Errorf("%s: %d %s, want 404", path, resp.StatusCode, body)
		}
	}
}

// TestPreflight checks the answers to browsers' CORS preflights on the
// collect and decide paths, for allowed and other origins.
func TestPreflight(t *testing.T) {
	listed, _ := startServer(t, Config{CORSOrigins: []string{shop}}, &recorder{}, noProfiles{})
	anyOrigin, _ := startServer(t, Config{CORSOrigins: []string{"*"}}, &recorder{}, noProfiles{})
	none, _ := startServer(t, Config{}, &recorder{}, noProfiles{})
	// What analytics.js 1.84 asks before its POST with Authorization
	// (fetch-dispatcher.ts, batched-dispatcher.ts); what rudder-sdk-js's
	// XHR asks (xhrQueue/utilities.ts, HttpClient/xhr/xhrRequestHandler.ts).
	const ajs = "authorization,content-type,x-retry-count"
	const rudder = "anonymousid,authorization,content-type,rsa-retry-attempt,sentat"
	tests := []struct {
		name, addr, path, origin, asked string
		// allowOrigin is the Access-Control-Allow-Origin wanted ("": none),
		// methods and headers what the preflight allows.
		allowOrigin, credentials, methods, headers string
	}{
		{"analytics.js track", listed, "/v1/t", shop, ajs, shop, "true", "POST, OPTIONS", ajs},
		{"analytics.js batch", listed, "/v1/b", shop, ajs, shop, "true", "POST, OPTIONS", ajs},
		{"rudder-sdk-js identify", listed, "/v1/identify", shop, rudder, shop, "true", "POST, OPTIONS", rudder},
		{"rudder-sdk-js batch", listed, "/v1/batch", shop, rudder, shop, "true", "POST, OPTIONS", rudder},
		{"no headers asked", listed, "/v1/track", shop, "", shop, "true", "POST, OPTIONS", corsDefaultHeaders},
		{"headers that are no list", listed, "/v1/track", shop, "content-type, x(y), \"z\"", shop, "true", "POST, OPTIONS", corsDefaultHeaders},
		{"other origin", listed, "/v1/t", "https://evil.example", ajs, "", "", "", ""},
		{"no origins configured", none, "/v1/t", shop, ajs, "", "", "", ""},
		{"any origin, collect: the origin itself", anyOrigin, "/v1/p", "https://other.example", ajs, "https://other.example", "true", "POST, OPTIONS", ajs},
		{"any origin, decide", anyOrigin, "/v1/decide", "https://other.example", "authorization", "*", "", "GET, POST, OPTIONS", "authorization"},
		{"decide", listed, "/v1/decide", shop, "", shop, "", "GET, POST, OPTIONS", corsDefaultHeaders},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{"Access-Control-Request-Method": "POST"}
			if tc.asked != "" {
				h["Access-Control-Request-Headers"] = tc.asked
			}
			resp, body := (browserRequest{"OPTIONS", tc.path, tc.origin, "", h}).do(t, tc.addr)
			if resp.StatusCode != http.StatusNoContent || body != "" {
				t.Fatalf("status %d %q, want 204 and no body", resp.StatusCode, body)
			}
			got := resp.Header
			if got.Get("Access-Control-Allow-Origin") != tc.allowOrigin || got.Get("Access-Control-Allow-Credentials") != tc.credentials ||
				got.Get("Access-Control-Allow-Methods") != tc.methods || got.Get("Access-Control-Allow-Headers") != tc.headers {
				t.Errorf("headers %v", got)
			}
			if tc.allowOrigin != "" && got.Get("Access-Control-Max-Age") == "" {
				t.Errorf("no Access-Control-Max-Age: %v", got)
			}
		})
	}
}

// FuzzHeaderList: what headerList accepts is safe to write back as a
// header value.
func FuzzHeaderList(f *testing.F) {
	for _, s := range []string{"authorization,content-type", "a, b\tc", "x\r\ny", "é", "", "a:b", "!#$%&'*+-.^_`|~"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !headerList([]byte(s)) {
			return
		}
		for _, c := range []byte(s) {
			if c < ' ' && c != '\t' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 && c != ',' {
				t.Fatalf("accepted %q with %q", s, c)
			}
		}
	})
}
