package serve

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tailorcdp/tailor/web"
)

// TestTailorJSRoute fetches /v1/tailor.js over loopback as browsers and
// caches do: without a key, plain or gzipped, and again with the entity
// tag it was given (304).
func TestTailorJSRoute(t *testing.T) {
	addr, _ := startServer(t, Config{}, &recorder{}, noProfiles{})
	script, err := web.TailorJS()
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	for _, tc := range []struct {
		name, method string
		header       map[string]string
		status       int
		etag         string // "" for none
		encoding     string
		body         []byte // as it comes, before any gunzipping
	}{
		{"plain", "GET", nil, 200, script.ETag, "", script.Body},
		{"gzip", "GET", map[string]string{"Accept-Encoding": "gzip, deflate, br"}, 200, script.GzipETag, "gzip", script.Gzip},
		{"head", "HEAD", nil, 200, script.ETag, "", nil},
		{"not modified", "GET", map[string]string{"If-None-Match": script.ETag}, 304, script.ETag, "", nil},
		{"not modified, gzip", "GET", map[string]string{"If-None-Match": script.GzipETag, "Accept-Encoding": "gzip"}, 304, script.GzipETag, "", nil},
		{"not modified, weak, in a list", "GET", map[string]string{"If-None-Match": `"old", W/` + script.ETag}, 304, script.ETag, "", nil},
		{"modified", "GET", map[string]string{"If-None-Match": `"old"`}, 200, script.ETag, "", script.Body},
		{"post", "POST", nil, 405, "", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, "http://"+addr+"/v1/tailor.js", nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			h := resp.Header
			if resp.StatusCode != tc.status || h.Get("ETag") != tc.etag || h.Get("Content-Encoding") != tc.encoding {
				t.Fatalf("%d, ETag %q, Content-Encoding %q; want %d, %q, %q", resp.StatusCode, h.Get("ETag"), h.Get("Content-Encoding"), tc.status, tc.etag, tc.encoding)
			}
			if tc.status == 405 {
				return
			}
			if h.Get("Cache-Control") != "public, max-age=300" || h.Get("Vary") != "Accept-Encoding" || h.Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("headers %v", h)
			}
			if tc.status == 200 && h.Get("Content-Type") != "application/javascript; charset=utf-8" {
				t.Errorf("Content-Type %q", h.Get("Content-Type"))
			}
			if !bytes.Equal(body, tc.body) {
				t.Errorf("body of %d bytes, want %d", len(body), len(tc.body))
			}
		})
	}
	// The gzipped body is the plain one, and that is the script.
	z, err := gzip.NewReader(bytes.NewReader(script.Gzip))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(z)
	if !bytes.Equal(plain, script.Body) || !strings.HasPrefix(string(plain), "/*! tailor.js") || !strings.Contains(string(plain), "data-tailor-placement") {
		t.Errorf("gzipped body differs, or is not tailor.js: %.100s", plain)
	}
}
