package engine_test

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/state"
)

// The requests below are what the SDKs send, written from their sources:
//
//   - @segment/analytics-next 1.84.1 (github.com/segmentio/analytics-next,
//     packages/browser/src/plugins/segmentio/): index.ts posts each call to
//     <apiHost>/<first letter of its type>; fetch-dispatcher.ts sends it
//     with Content-Type text/plain and Authorization Basic
//     btoa(writeKey + ':'); normalize.ts adds writeKey, sentAt, userId
//     (null when not identified), anonymousId and _metadata;
//     batched-dispatcher.ts posts {writeKey, batch, sentAt} to
//     <apiHost>/b, the events without their sentAt. The event's own
//     members come from packages/core/src/events/index.ts.
//   - rudder-sdk-js 3.x (github.com/rudderlabs/rudder-sdk-js,
//     packages/analytics-js/src/components/eventManager/): identify's
//     traits go to context.traits only (RudderEventFactory.ts), every
//     call carries context.traits (the stored user traits), channel
//     "web", originalTimestamp and no timestamp, event and properties
//     null when unused (utilities.ts getEnrichedEvent); it posts to
//     <dataPlaneUrl>/v1/<type> with Content-Type
//     application/json;charset=UTF-8, Basic auth of the write key and
//     AnonymousId and SentAt headers (packages/analytics-js-plugins/src/
//     xhrQueue/), and beacons a text/plain Blob {batch, sentAt} to
//     <dataPlaneUrl>/beacon/v1/batch?writeKey=<key>
//     (packages/analytics-js-plugins/src/beaconQueue/utilities.ts).
//   - rudder-sdk-python 2.1.4 (github.com/rudderlabs/rudder-sdk-python,
//     rudderstack/analytics/): client.py puts identify's traits in
//     context.traits only, adds channel "server", integrations
//     {"All": true} and an isoformat timestamp; request.py posts
//     {"batch": [...], "sentAt": ...} to <host>/v1/batch, gzipped
//     (the default), with Basic auth of the write key.
const (
	ajsPage  = `{"timestamp":"$T1","integrations":{},"type":"page","properties":{"path":"/p/p1","referrer":"","search":"","title":"Runner 2","url":"https://shop.example/p/p1"},"category":null,"name":null,"context":{"page":{"path":"/p/p1","referrer":"","search":"","title":"Runner 2","url":"https://shop.example/p/p1"},"userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36","userAgentData":{"brands":[{"brand":"Chromium","version":"131"}],"mobile":false,"platform":"Linux"},"locale":"en-US","library":{"name":"analytics.js","version":"npm:next-1.84.1"},"timezone":"Europe/Paris"},"messageId":"ajs-next-1764870000000-2d0b2c6e-9d0c-4d6e-8f7e-0e6f3c7c1a11","anonymousId":"8d4c4c0e-8a3e-4b53-9a8f-5f7d2b1e0c3a","writeKey":"test-write","userId":null,"sentAt":"$S1","_metadata":{"bundled":["Segment.io"],"unbundled":[],"bundledIds":[]}}`
	ajsTrack = `{"timestamp":"$T2","integrations":{},"type":"track","event":"Product Viewed","properties":{"product_id":"p1","category":"shoes","price":90},"context":{"page":{"path":"/p/p1","referrer":"","search":"","title":"Runner 2","url":"https://shop.example/p/p1"},"userAgent":"Mozilla/5.0","locale":"en-US","library":{"name":"analytics.js","version":"npm:next-1.84.1"},"timezone":"Europe/Paris"},"messageId":"ajs-next-1764870000100-6c1f8a52-1b7e-4d0f-9a55-3e2f1c0d9b22","anonymousId":"8d4c4c0e-8a3e-4b53-9a8f-5f7d2b1e0c3a","writeKey":"test-write","userId":null,"sentAt":"$S2","_metadata":{"bundled":["Segment.io"],"unbundled":[],"bundledIds":[]}}`
	// Batched: no sentAt in the events; sent as sendBeacon or a keepalive
	// fetch would on page hide, without the Authorization header.
	ajsBatch = `{"writeKey":"test-write","batch":[{"timestamp":"$T3","integrations":{},"type":"identify","traits":{"email":"ada@example.com","plan":"pro"},"userId":"u-ajs","context":{"page":{"path":"/account","url":"https://shop.example/account"},"library":{"name":"analytics.js","version":"npm:next-1.84.1"}},"messageId":"ajs-next-1764870000200-0a9e4f1d-77c3-4a8b-b1d2-8c5e6f7a8b33","anonymousId":"8d4c4c0e-8a3e-4b53-9a8f-5f7d2b1e0c3a","writeKey":"test-write","_metadata":{"bundled":["Segment.io"],"unbundled":[],"bundledIds":[]}},{"timestamp":"$T4","integrations":{},"type":"track","event":"Product Added","properties":{"product_id":"p1"},"context":{"library":{"name":"analytics.js","version":"npm:next-1.84.1"}},"messageId":"ajs-next-1764870000300-4e2d9c1b-3f6a-4e7d-8c9b-1a2b3c4d5e44","anonymousId":"8d4c4c0e-8a3e-4b53-9a8f-5f7d2b1e0c3a","writeKey":"test-write","userId":"u-ajs","_metadata":{"bundled":["Segment.io"],"unbundled":[],"bundledIds":[]}}],"sentAt":"$S4"}`

	rsContext  = `"sessionId":1764870000000,"ua-ch":{},"app":{"name":"RudderLabs JavaScript SDK","namespace":"com.rudderlabs.javascript","version":"3.31.6","installType":"npm"},"library":{"name":"RudderLabs JavaScript SDK","version":"3.31.6"},"userAgent":"Mozilla/5.0","os":{"name":"","version":""},"locale":"en-US","screen":{"width":1920,"height":1080,"density":1,"innerWidth":1280,"innerHeight":720},"campaign":{},"page":{"path":"/","referrer":"$direct","referring_domain":"","search":"","title":"Shop","url":"https://shop.example/","tab_url":"https://shop.example/","initial_referrer":"$direct","initial_referring_domain":""},"timezone":"GMT+0100"`
	rsIdentify = `{"channel":"web","context":{"traits":{"email":"grace@example.com","plan":"gold"},"sessionStart":true,` + rsContext + `},"type":"identify","originalTimestamp":"$T1","integrations":{"All":true},"messageId":"4f6b8a0e-2c1d-4e3f-9a8b-7c6d5e4f3a21","userId":"u-rs","anonymousId":"b1e2c3d4-5f6a-4b7c-8d9e-0f1a2b3c4d5e","event":null,"properties":null,"sentAt":"$S1"}`
	// A later track whose context.traits are the page's stale copy: the
	// profile keeps the identify call's plan.
	rsTrack  = `{"channel":"web","context":{"traits":{"email":"grace@example.com","plan":"free"},` + rsContext + `},"type":"track","originalTimestamp":"$T2","integrations":{"All":true},"messageId":"9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c62","userId":"u-rs","anonymousId":"b1e2c3d4-5f6a-4b7c-8d9e-0f1a2b3c4d5e","event":"Product Viewed","properties":{"product_id":"p2"},"sentAt":"$S2"}`
	rsBeacon = `{"batch":[{"channel":"web","context":{"traits":{"email":"grace@example.com","plan":"gold"},` + rsContext + `},"type":"page","originalTimestamp":"$T3","integrations":{"All":true},"messageId":"0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e43","userId":"u-rs","anonymousId":"b1e2c3d4-5f6a-4b7c-8d9e-0f1a2b3c4d5e","event":null,"properties":{"path":"/","title":"Shop","url":"https://shop.example/"},"name":null,"category":null,"sentAt":"$S3"}],"sentAt":"$S3"}`

	pyBatch = `{"batch": [{"integrations": {"All": true}, "anonymousId": null, "timestamp": "$P1", "context": {"traits": {"email": "linus@example.com", "plan": "team"}, "library": {"name": "analytics-python", "version": "2.1.4"}}, "type": "identify", "userId": "u-py", "messageId": "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d64", "channel": "server"}, {"integrations": {"All": true}, "anonymousId": null, "properties": {"order_id": "o-1", "revenue": 42.5}, "timestamp": "$P2", "context": {"library": {"name": "analytics-python", "version": "2.1.4"}}, "userId": "u-py", "type": "track", "event": "Order Completed", "messageId": "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e75", "channel": "server"}], "sentAt": "$P3"}`
)

// sdkTimes fills a payload's times: $Tn (event times) and $Sn (send
// times) as JavaScript's toISOString writes them, $Pn as Python's
// isoformat. Event n happens n minutes after base; it is sent a minute
// later.
func sdkTimes(s string, base time.Time) string {
	var pairs []string
	for n := 1; n <= 4; n++ {
		at := base.Add(time.Duration(n) * time.Minute)
		d := string(rune('0' + n))
		pairs = append(pairs,
			"$T"+d, at.Format("2006-01-02T15:04:05.000Z"),
			"$S"+d, at.Add(time.Minute).Format("2006-01-02T15:04:05.000Z"),
			"$P"+d, at.Format("2006-01-02T15:04:05.000000-07:00"))
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

func basicAuth(key string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(key+":"))
}

// TestSDKPayloads sends what analytics.js and RudderStack's SDKs send, as
// they send it, to a live engine over loopback: analytics.js's short
// paths and batch path with text/plain bodies and writeKey in the body,
// from an allowed origin; rudder-sdk-js's calls and beacon;
// rudder-sdk-python's gzipped batch. Identify traits from context.traits
// land in the profile; other calls' context.traits do not change it;
// originalTimestamp is the event time.
func TestSDKPayloads(t *testing.T) {
	cfg := testConfig(t, testkafka.Brokers(t), testkafka.Prefix(t), t.TempDir())
	cfg.HTTP.CORSOrigins = []string{"https://shop.example"}
	e := startEngine(t, cfg)
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)

	ajsHeader := map[string]string{"Content-Type": "text/plain", "Authorization": basicAuth(writeKey), "Origin": "https://shop.example"}
	rsHeader := map[string]string{"Content-Type": "application/json;charset=UTF-8", "Authorization": basicAuth(writeKey),
		"AnonymousId": base64.StdEncoding.EncodeToString([]byte("b1e2c3d4-5f6a-4b7c-8d9e-0f1a2b3c4d5e")), "Origin": "https://shop.example"}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(sdkTimes(pyBatch, base)))
	zw.Close()
	for _, r := range []struct {
		name, path string
		body       []byte
		header     map[string]string
	}{
		{"analytics.js page", "/v1/p", []byte(sdkTimes(ajsPage, base)), ajsHeader},
		{"analytics.js track", "/v1/t", []byte(sdkTimes(ajsTrack, base)), ajsHeader},
		{"analytics.js batch, beacon-style", "/v1/b", []byte(sdkTimes(ajsBatch, base)), map[string]string{"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://shop.example"}},
		{"rudder-sdk-js identify", "/v1/identify", []byte(sdkTimes(rsIdentify, base)), rsHeader},
		{"rudder-sdk-js track", "/v1/track", []byte(sdkTimes(rsTrack, base)), rsHeader},
		{"rudder-sdk-js beacon", "/beacon/v1/batch?writeKey=" + writeKey, []byte(sdkTimes(rsBeacon, base)), map[string]string{"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://shop.example"}},
		{"rudder-sdk-python batch", "/v1/batch", gz.Bytes(), map[string]string{"Content-Type": "application/json", "Content-Encoding": "gzip", "User-Agent": "analytics-python/2.1.4", "Authorization": basicAuth(writeKey)}},
	} {
		resp := do(t, "POST", e.url+r.path, "", r.body, r.header)
		if resp.Status != http.StatusOK || string(resp.Body) != `{"success":true}` {
			t.Fatalf("%s: %d %s", r.name, resp.Status, resp.Body)
		}
	}

	trait := func(v state.View, name string) string {
		var s string
		json.Unmarshal(v.Traits[name], &s)
		return s
	}
	// analytics.js: the anonymous page and track are merged into u-ajs.
	v := e.waitProfile(t, "u-ajs", func(v state.View) bool {
		return trait(v, "plan") == "pro" && v.Events["Product Viewed"] == 1 && v.Events["Product Added"] == 1 && v.Calls["page"] == 1
	})
	if trait(v, "email") != "ada@example.com" || v.TraitSources["email"].Source != "analytics.js" {
		t.Errorf("u-ajs traits %s from %+v", v.Traits, v.TraitSources)
	}
	// rudder-sdk-js: traits from the identify's context.traits only; the
	// time of the track is its originalTimestamp, not its sentAt.
	v = e.waitProfile(t, "u-rs", func(v state.View) bool { return v.Calls["page"] == 1 && v.Events["Product Viewed"] == 1 })
	if trait(v, "plan") != "gold" || trait(v, "email") != "grace@example.com" {
		t.Errorf("u-rs traits %s, want the identify call's context.traits (plan gold)", v.Traits)
	}
	if src := v.TraitSources["plan"].Source; src != "RudderLabs JavaScript SDK" {
		t.Errorf("u-rs plan from %q, want the SDK's context.library.name", src)
	}
	if want := base.Add(3 * time.Minute); !v.LastSeen.Equal(want) || !v.FirstSeen.Equal(base.Add(time.Minute)) {
		t.Errorf("u-rs seen %v to %v, want the originalTimestamps %v to %v", v.FirstSeen, v.LastSeen, base.Add(time.Minute), want)
	}
	// rudder-sdk-python: gzipped, traits in context.traits.
	v = e.waitProfile(t, "u-py", func(v state.View) bool { return v.Orders.Count == 1 })
	if trait(v, "plan") != "team" || trait(v, "email") != "linus@example.com" {
		t.Errorf("u-py traits %s", v.Traits)
	}
	if src := v.TraitSources["email"].Source; src != "analytics-python" {
		t.Errorf("u-py email from %q, want analytics-python", src)
	}

	// The preflight analytics.js's Authorization header causes, from the
	// allowed origin and from another.
	for _, tc := range []struct {
		origin, allow string
	}{{"https://shop.example", "https://shop.example"}, {"https://evil.example", ""}} {
		resp, err := http.DefaultClient.Do(func() *http.Request {
			req, _ := http.NewRequest("OPTIONS", e.url+"/v1/t", nil)
			req.Header.Set("Origin", tc.origin)
			req.Header.Set("Access-Control-Request-Method", "POST")
			req.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
			return req
		}())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != tc.allow {
			t.Errorf("preflight from %s: %d %v", tc.origin, resp.StatusCode, resp.Header)
		}
		if tc.allow != "" && (resp.Header.Get("Access-Control-Allow-Headers") != "authorization,content-type" || resp.Header.Get("Access-Control-Allow-Methods") != "POST, OPTIONS") {
			t.Errorf("preflight from %s allows %v", tc.origin, resp.Header)
		}
	}
}
