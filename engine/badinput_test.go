package engine_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/state"
)

func testLimits() event.Limits { return event.DefaultLimits() }

func gzipped(s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(s))
	zw.Close()
	return b.Bytes()
}

// TestBadInput sends every kind of bad request and checks the documented
// status and JSON error, that the engine keeps serving, and that nothing
// from a rejected request reaches a profile.
func TestBadInput(t *testing.T) {
	e := newEngine(t)
	future := time.Now().Add(72 * time.Hour).UTC().Format(time.RFC3339)
	big := strings.Repeat("x", 33<<10)
	var bigBatch strings.Builder
	bigBatch.WriteString(`{"batch": [`)
	for i := range 20 {
		if i > 0 {
			bigBatch.WriteString(",")
		}
		fmt.Fprintf(&bigBatch, `{"type": "track", "userId": "bad-big-batch", "event": "E", "properties": {"pad": "%s"}}`, strings.Repeat("y", 30<<10))
	}
	bigBatch.WriteString("]}")

	tests := []struct {
		name   string
		method string
		path   string
		key    string
		body   []byte
		header map[string]string
		status int
		field  string
		error  string // substring of the error message
	}{
		{name: "malformed JSON", path: "/v1/track", body: []byte(`{"userId": "bad-1", "event": "E"`), status: 400, error: "malformed JSON"},
		{name: "trailing garbage", path: "/v1/track", body: []byte(`{"userId": "bad-1", "event": "E"} x`), status: 400, error: "malformed JSON"},
		{name: "lenient number", path: "/v1/track", body: []byte(`{"userId": "bad-1", "event": "E", "properties": {"n": 1.2.3}}`), status: 400, error: "malformed JSON"},
		{name: "array body", path: "/v1/track", body: []byte(`[{"userId": "bad-1"}]`), status: 400, error: "must be a JSON object"},
		{name: "empty body", path: "/v1/track", body: nil, status: 400, error: "body is empty"},
		{name: "userId number", path: "/v1/track", body: []byte(`{"userId": 42, "event": "E"}`), status: 400, field: "userId", error: "must be a string"},
		{name: "properties string", path: "/v1/track", body: []byte(`{"userId": "bad-2", "event": "E", "properties": "x"}`), status: 400, field: "properties", error: "must be an object"},
		{name: "traits array", path: "/v1/identify", body: []byte(`{"userId": "bad-3", "traits": [1]}`), status: 400, field: "traits", error: "must be an object"},
		{name: "timestamp number", path: "/v1/track", body: []byte(`{"userId": "bad-4", "event": "E", "timestamp": 1700000000}`), status: 400, field: "timestamp", error: "ISO-8601"},
		{name: "timestamp no zone", path: "/v1/track", body: []byte(`{"userId": "bad-4", "event": "E", "timestamp": "2026-01-01 10:00"}`), status: 400, field: "timestamp", error: "ISO-8601"},
		{name: "revenue string", path: "/v1/track", body: []byte(`{"userId": "bad-5", "event": "Order Completed", "properties": {"revenue": "twelve"}}`), status: 400, field: "properties.revenue", error: `must be a number, not string "twelve"`},
		{name: "total 1e400", path: "/v1/track", body: []byte(`{"userId": "bad-5", "event": "Order Completed", "properties": {"order_id": "o1", "total": 1e400}}`), status: 400, field: "properties.total", error: "number 1e400 is out of range"},
		{name: "trait -1e400", path: "/v1/identify", body: []byte(`{"userId": "bad-5", "traits": {"score": -1e400}}`), status: 400, field: "traits.score", error: "out of range"},
		{name: "numeric string out of range", path: "/v1/track", body: []byte(`{"userId": "bad-5", "event": "Order Completed", "properties": {"revenue": "1e400"}}`), status: 400, field: "properties.revenue", error: "out of range"},
		{name: "zero timestamp", path: "/v1/track", body: []byte(`{"userId": "bad-9", "event": "E", "timestamp": "0001-01-01T00:00:00Z"}`), status: 400, field: "timestamp", error: "0001-01-01T00:00:00Z is before 2000-01-01"},
		{name: "products object", path: "/v1/track", body: []byte(`{"userId": "bad-5", "event": "Order Completed", "properties": {"products": {}}}`), status: 400, field: "properties.products", error: "must be an array"},
		{name: "product price string", path: "/v1/track", body: []byte(`{"userId": "bad-5", "event": "Order Completed", "properties": {"products": [{"price": "1 EUR"}]}}`), status: 400, field: "properties.products[0].price", error: "must be a number"},
		{name: "missing ids", path: "/v1/track", body: []byte(`{"event": "E"}`), status: 400, field: "userId", error: "userId or anonymousId is required"},
		{name: "empty ids", path: "/v1/page", body: []byte(`{"userId": "", "anonymousId": null}`), status: 400, field: "userId", error: "userId or anonymousId is required"},
		{name: "missing event name", path: "/v1/track", body: []byte(`{"userId": "bad-6"}`), status: 400, field: "event", error: "is required"},
		{name: "group without groupId", path: "/v1/group", body: []byte(`{"userId": "bad-6"}`), status: 400, field: "groupId", error: "is required"},
		{name: "alias without previousId", path: "/v1/alias", body: []byte(`{"userId": "bad-6"}`), status: 400, field: "previousId", error: "is required"},
		{name: "type mismatch", path: "/v1/track", body: []byte(`{"type": "identify", "userId": "bad-6", "event": "E"}`), status: 400, field: "type", error: `this endpoint takes "track"`},
		{name: "every batch event invalid", path: "/v1/batch", body: []byte(`{"batch": [{"type": "purchase", "userId": "bad-7"}, {"type": "track", "event": "E"}]}`), status: 400, field: "batch[0].type", error: `none of the 2 events was stored; the first refused: batch[0].type: unknown event type "purchase"`},
		{name: "batch not JSON", path: "/v1/batch", body: []byte(`{"batch": [{"type": "track", "userId": "bad-7", "event": "E"}`), status: 400, error: "malformed JSON"},
		{name: "batch not an object", path: "/v1/batch", body: []byte(`[{"type": "track", "userId": "bad-7", "event": "E"}]`), status: 400, error: "must be a JSON object"},
		{name: "batch not array", path: "/v1/batch", body: []byte(`{"batch": {}}`), status: 400, field: "batch", error: "must be an array"},
		{name: "empty batch", path: "/v1/batch", body: []byte(`{"batch": []}`), status: 400, field: "batch", error: "must not be empty"},
		{name: "invalid UTF-8", path: "/v1/track", body: []byte("{\"userId\": \"bad-8\", \"event\": \"E\xff\"}"), status: 400, error: "not valid UTF-8"},
		{name: "future timestamp", path: "/v1/track", body: []byte(`{"userId": "bad-9", "event": "E", "timestamp": "` + future + `"}`), status: 400, field: "timestamp", error: "after the receive time"},
		{name: "ancient timestamp", path: "/v1/track", body: []byte(`{"userId": "bad-9", "event": "E", "timestamp": "1970-01-02T00:00:00Z"}`), status: 400, field: "timestamp", error: "before 2000-01-01"},
		{name: "oversized event", path: "/v1/track", body: []byte(`{"userId": "bad-10", "event": "E", "properties": {"pad": "` + big + `"}}`), status: 413, error: "limit"},
		{name: "oversized batch item", path: "/v1/batch", body: []byte(`{"batch": [{"type": "track", "userId": "bad-10", "event": "E", "properties": {"pad": "` + big + `"}}]}`), status: 400, field: "batch[0]", error: "the limit is 32768"},
		{name: "oversized batch", path: "/v1/batch", body: []byte(bigBatch.String()), status: 413, error: "limit"},
		{name: "gzip bomb", path: "/v1/batch", body: gzipped(`{"batch": [{"type": "track", "userId": "bad-11", "event": "E", "properties": {"pad": "` + strings.Repeat("z", 600<<10) + `"}}]}`), header: map[string]string{"Content-Encoding": "gzip"}, status: 413, error: "over 512000 bytes"},
		{name: "profile path trick", method: "GET", path: "/v1/x/../profiles/ada", key: readKey, status: 404, error: "send the profile key right after /v1/profiles/"},
		{name: "broken gzip", path: "/v1/track", body: []byte("not gzip"), header: map[string]string{"Content-Encoding": "gzip"}, status: 400, error: "not valid gzip"},
		{name: "unknown encoding", path: "/v1/track", body: []byte(`{}`), header: map[string]string{"Content-Encoding": "br"}, status: 400, error: "unsupported Content-Encoding"},
		{name: "wrong write key", path: "/v1/track", key: "nope", body: []byte(`{"userId": "bad-12", "event": "E"}`), status: 401, error: "invalid write key"},
		{name: "read key on collect", path: "/v1/track", key: readKey, body: []byte(`{"userId": "bad-12", "event": "E"}`), status: 401, error: "invalid write key"},
		{name: "missing write key", path: "/v1/track", key: "-", body: []byte(`{"userId": "bad-12", "event": "E"}`), status: 401, error: "missing write key"},
		{name: "wrong writeKey in body", path: "/v1/track", key: "-", body: []byte(`{"writeKey": "nope", "userId": "bad-12", "event": "E"}`), status: 401, error: "invalid write key"},
		{name: "write key on profiles", method: "GET", path: "/v1/profiles/ada", key: writeKey, status: 401, error: "invalid read key"},
		{name: "missing read key", method: "GET", path: "/v1/profiles/ada", key: "-", status: 401, error: "missing read key"},
		{name: "GET on collect", method: "GET", path: "/v1/track", status: 405, error: "use POST"},
		{name: "unknown endpoint", path: "/v1/purchase", body: []byte(`{}`), status: 404, error: "no such endpoint"},
		{name: "unknown profile", method: "GET", path: "/v1/profiles/nobody", key: readKey, status: 404, error: `no profile with key "nobody"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method, key := tc.method, tc.key
			if method == "" {
				method = "POST"
			}
			switch key {
			case "":
				key = writeKey
			case "-":
				key = ""
			}
			resp := do(t, method, e.url+tc.path, key, tc.body, tc.header)
			if resp.Status != tc.status {
				t.Fatalf("status %d, want %d; body %s", resp.Status, tc.status, resp.Body)
			}
			var body struct {
				Success *bool  `json:"success"`
				Code    string `json:"code"`
				Message string `json:"message"`
				Error   string `json:"error"`
				Field   string `json:"field"`
			}
			if err := json.Unmarshal(resp.Body, &body); err != nil {
				t.Fatalf("body is not JSON: %q", resp.Body)
			}
			if body.Success == nil || *body.Success || body.Field != tc.field || !strings.Contains(body.Error, tc.error) {
				t.Errorf("body %s: want success false, field %q, error containing %q", resp.Body, tc.field, tc.error)
			}
			// What Segment's SDKs log.
			if body.Code == "" || body.Message != body.Error {
				t.Errorf("body %s: want a code, and the message as the error", resp.Body)
			}
		})
	}

	// A body over the endpoint's limit is refused on its Content-Length,
	// before it is sent (a raw request: HTTP clients race the refusal).
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	// The server reads the first 8 KiB with the headers (no more: unread
	// bytes would make its close reset the connection).
	fmt.Fprintf(conn, "POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", 5<<20, strings.Repeat(" ", 8<<10))
	huge, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(huge.Body)
	conn.Close()
	if huge.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), `"error":"body is over 512000 bytes, the limit of this endpoint (Content-Length 5242880)`) {
		t.Errorf("huge body: %d %s", huge.StatusCode, body)
	}

	// The engine still serves, and a valid event sent after all that is the
	// only thing applied.
	if resp := e.post(t, "/v1/track", `{"userId": "good", "event": "After"}`); resp.Status != http.StatusOK {
		t.Fatalf("valid event after bad ones: %d %s", resp.Status, resp.Body)
	}
	e.waitProfile(t, "good", func(v state.View) bool { return v.Events["After"] == 1 })
	for _, key := range []string{"bad-1", "bad-2", "bad-3", "bad-4", "bad-5", "bad-6", "bad-7", "bad-8", "bad-9", "bad-10", "bad-11", "bad-12", "bad-big-batch"} {
		if _, ok := e.profile(t, key); ok {
			t.Errorf("profile %s exists: a rejected request reached the state", key)
		}
	}
	if n := consumed(t, e.url); n != 1 {
		t.Errorf("%d records consumed, want only the valid one", n)
	}
}
