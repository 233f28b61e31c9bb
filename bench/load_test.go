package bench

import (
	"context"
	"net"
	"testing"
	"time"
)

func TestLoadAgainstBaseline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := Baseline(ln, []byte(`{"ok":true}`))
	defer srv.Shutdown()
	c := LoadConfig{Addr: ln.Addr().String(), Path: "/v1/decide", Connections: 8, Rate: 2000, Duration: 500 * time.Millisecond,
		Body: func(i uint64) []byte { return []byte(`{"userId":"u"}`) }}
	r, err := Load(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent != 1000 || r.Errors != 0 {
		t.Errorf("sent %d with %d errors, want 1000 and none", r.Sent, r.Errors)
	}
	if !(r.P50 > 0 && r.P50 <= r.P90 && r.P90 <= r.P99 && r.P99 <= r.P999 && r.P999 <= r.Max) {
		t.Errorf("percentiles out of order: %+v", r)
	}
	if body, err := Once(c); err != nil || string(body) != `{"ok":true}` {
		t.Errorf("one request: %s, %v", body, err)
	}
	sat, err := Saturate(context.Background(), c, 300*time.Millisecond)
	if err != nil || sat <= 0 {
		t.Errorf("saturating rate %v, %v", sat, err)
	}
	// Errors are counted: nothing listens there.
	c.Addr, c.Rate, c.Duration, c.Timeout = "127.0.0.1:1", 100, 100*time.Millisecond, time.Second
	if r, _ := Load(context.Background(), c); r.Errors != r.Sent || r.Sent != 10 {
		t.Errorf("against a closed port: %+v", r)
	}
}

func TestParseAppliedOffsets(t *testing.T) {
	body := []byte(`# HELP tailor_applied_offset Offset of the next record to apply
# TYPE tailor_applied_offset gauge
tailor_applied_offset{partition="0"} 1234
tailor_applied_offset{partition="11"} 5.6789e+06
tailor_events_total{outcome="applied"} 99
`)
	got, err := parseAppliedOffsets(body)
	if err != nil || len(got) != 2 || got[0] != 1234 || got[11] != 5678900 {
		t.Errorf("%v, %v", got, err)
	}
	if _, err := parseAppliedOffsets([]byte(`tailor_applied_offset{partition="x"} 1`)); err == nil {
		t.Error("a bad line was accepted")
	}
}
