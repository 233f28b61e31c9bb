package serve

import (
	"bytes"
	"compress/gzip"
	"io"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/tailorcdp/tailor/event"
)

func gzipped(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// padded is a track event of exactly n bytes.
func padded(n int) string {
	ev := `{"type": "track", "userId": "u", "event": "E"}`
	return ev[:len(ev)-1] + strings.Repeat(" ", n-len(ev)) + "}"
}

// TestBodyLimits: an endpoint's limit holds for the body as sent and as
// gunzipped, Content-Encoding is gzip or none, and the answers say which
// limit was met.
func TestBodyLimits(t *testing.T) {
	const limit = 1000
	limits := event.DefaultLimits()
	limits.MaxEventBytes = limit
	s := handlerServer(t, Config{Limits: limits}, &recorder{}, noProfiles{})
	bomb := gzipped(t, padded(100*limit))
	for _, tc := range []struct {
		name   string
		body   string
		header map[string]string
		status int
		want   string // in the body
	}{
		{"at the limit", padded(limit), nil, 200, "success"},
		{"over the limit", padded(limit + 1), nil, 413, "over 1000 bytes"},
		{"declared over the limit", padded(limit + 1), map[string]string{"Content-Length": strconv.Itoa(limit + 1)}, 413, "Content-Length 1001"},
		{"identity", padded(100), map[string]string{"Content-Encoding": "identity"}, 200, "success"},
		{"gzip at the limit", gzipped(t, padded(limit)), map[string]string{"Content-Encoding": "gzip"}, 200, "success"},
		{"gzip over the limit", gzipped(t, padded(limit+1)), map[string]string{"Content-Encoding": "GZIP"}, 413, "over 1000 bytes"},
		{"gzip bomb", bomb, map[string]string{"Content-Encoding": "gzip"}, 413, "over 1000 bytes"},
		{"not gzip", padded(100), map[string]string{"Content-Encoding": "gzip"}, 400, "not valid gzip"},
		{"brotli", padded(100), map[string]string{"Content-Encoding": "br"}, 400, `unsupported Content-Encoding \"br\"`},
	} {
		a := serveOnce(s, request{method: "POST", uri: "/v1/track", auth: basic("w"), body: tc.body, header: tc.header})
		if a.status != tc.status || !strings.Contains(a.body, tc.want) {
			t.Errorf("%s: %d %s, want %d with %q", tc.name, a.status, a.body, tc.status, tc.want)
		}
		if tc.status == 413 {
			if e := errorOf(t, a); e.Code != "too_large" {
				t.Errorf("%s: code %q, want too_large", tc.name, e.Code)
			}
		}
	}
}

// TestReadAtMost: one byte past the limit tells "at" from "over", however
// the reader splits its data.
func TestReadAtMost(t *testing.T) {
	for _, n := range []int{0, 1, 99, 100, 101, 5000} {
		data := bytes.Repeat([]byte("x"), n)
		for name, rd := range map[string]io.Reader{
			"whole":         bytes.NewReader(data),
			"bytewise":      iotest.OneByteReader(bytes.NewReader(data)),
			"data with EOF": iotest.DataErrReader(bytes.NewReader(data)),
		} {
			got, err := readAtMost(nil, rd, 100)
			if want := min(n, 101); err != nil || len(got) != want {
				t.Errorf("%d bytes %s: read %d, %v; want %d", n, name, len(got), err, want)
			}
		}
	}
}

// TestWireLimit: a gzipped body at the limit fits the wire limit, even of
// text gzip cannot shrink.
func TestWireLimit(t *testing.T) {
	for _, limit := range []int{1, 1000, 64 << 10, 512_000} {
		incompressible := make([]byte, limit)
		x := uint32(2463534242)
		for i := range incompressible {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			incompressible[i] = byte(x)
		}
		if z := gzipped(t, string(incompressible)); len(z) > wireLimit(limit) {
			t.Errorf("limit %d: gzipped %d bytes, over the wire limit %d", limit, len(z), wireLimit(limit))
		}
	}
}
