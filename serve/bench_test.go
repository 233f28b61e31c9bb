package serve

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/tailorcdp/tailor/decide"
	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/internal/workload"
)

// BenchmarkCollect sends the standard workload's events (about 400 bytes
// each) to the collect API over an in-memory connection, to Events that
// keep nothing: the HTTP side's cost per request, client included. track:
// one event per request; batch20: twenty; both as JSON with the key in
// Authorization (server-side SDKs). track_browser and batch20_browser
// are the same events as browsers send them (analytics.js, tailor.js,
// beacons): text/plain bodies on /v1/t and /v1/b with writeKey in the
// body and no Authorization.
func BenchmarkCollect(b *testing.B) {
	cfg := workload.DefaultConfig()
	cfg.EndingNow(100_000)
	gen := workload.New(cfg)
	var tracks [][]byte
	var batches [][]byte
	var batch bytes.Buffer
	for n := 0; len(tracks) < 1024 || len(batches) < 256; n++ {
		_, v := gen.Next()
		if bytes.Contains(v, []byte(`"type":"track"`)) && len(tracks) < 1024 {
			tracks = append(tracks, v)
		}
		if batch.Len() == 0 {
			batch.WriteString(`{"batch":[`)
		} else {
			batch.WriteByte(',')
		}
		batch.Write(v)
		if n%20 == 19 {
			batch.WriteString(`]}`)
			batches = append(batches, bytes.Clone(batch.Bytes()))
			batch.Reset()
		}
	}
	browser := func(body []byte) []byte { return append([]byte(`{"writeKey":"w",`), body[1:]...) }
	var browserTracks, browserBatches [][]byte
	for _, t := range tracks {
		browserTracks = append(browserTracks, browser(t))
	}
	for _, bt := range batches {
		browserBatches = append(browserBatches, browser(bt))
	}
	for _, limited := range []bool{false, true} {
		cfg := Config{WriteKeys: keys("w"), ReadKeys: keys("r"), EventsTopic: "events",
			Limits: event.DefaultLimits(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		suffix := ""
		if limited {
			cfg.RateLimits, suffix = benchLimits, "_ratelimited"
		}
		client := benchServer(b, cfg, discard{}, noProfiles{})
		for _, bc := range []struct {
			name, path, key string
			bodies          [][]byte
		}{
			{"track", "/v1/track", "w", tracks}, {"batch20", "/v1/batch", "w", batches},
			{"track_browser", "/v1/t", "", browserTracks}, {"batch20_browser", "/v1/b", "", browserBatches},
		} {
			if limited && bc.key == "" {
				continue
			}
			b.Run(bc.name+suffix, func(b *testing.B) {
				size := 0
				for _, body := range bc.bodies {
					size += len(body)
				}
				b.SetBytes(int64(size / len(bc.bodies)))
				benchPost(b, client, bc.path, bc.key, bc.bodies)
			})
		}
	}
}

// benchLimits are rate limits on every client address and key that a
// benchmark never reaches: their whole cost, with no 429.
var benchLimits = RateLimits{
	CollectAddress: RateLimit{PerSecond: 1e9, Burst: 1e9}, DecideAddress: RateLimit{PerSecond: 1e9, Burst: 1e9},
	CollectKey: RateLimit{PerSecond: 1e9, Burst: 1e9}, DecideKey: RateLimit{PerSecond: 1e9, Burst: 1e9},
}

// benchServer serves cfg over an in-memory connection and returns a
// client of it.
func benchServer(b *testing.B, cfg Config, events Events, profiles Profiles) *fasthttp.HostClient {
	s, err := New(cfg, events, profiles, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	ln := fasthttputil.NewInmemoryListener()
	go s.Serve(ln)
	b.Cleanup(func() { ln.Close() })
	return &fasthttp.HostClient{Addr: "tailor", Dial: func(string) (net.Conn, error) { return ln.Dial() }}
}

// benchPost posts the bodies in turn, each answered 200: as JSON with
// key in Authorization, or with no key ("": it is in the body) as
// text/plain, as browsers send them.
func benchPost(b *testing.B, client *fasthttp.HostClient, path, key string, bodies [][]byte) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	req.Header.SetMethod("POST")
	req.SetRequestURI("http://tailor" + path)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.SetContentType("application/json")
	} else {
		req.Header.SetContentType("text/plain;charset=UTF-8")
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		req.SetBody(bodies[i%len(bodies)])
		if err := client.Do(req, resp); err != nil || resp.StatusCode() != fasthttp.StatusOK {
			b.Fatalf("%v %d %s", err, resp.StatusCode(), resp.Body())
		}
		i++
	}
}

// BenchmarkDecideHTTP is a decide call over an in-memory connection with
// a decide key, to a decider over no profiles (every visitor unknown):
// the HTTP side's cost. anonymous: by anonymousId; verified: a userId
// with its userHash (identity verification on); unverified: a userId
// without one (on); ratelimited: anonymous with rate limits that are
// never reached.
func BenchmarkDecideHTTP(b *testing.B) {
	const secret = "bench-secret"
	var bodies [][]byte
	for i := range 1024 {
		bodies = append(bodies, fmt.Appendf(nil, `{"userId": "u%d", "userHash": %q, "anonymousId": "a%d", "placements": ["hero"]}`,
			i, decide.UserHash(secret, fmt.Sprint("u", i)), i))
	}
	anonymous := make([][]byte, len(bodies))
	unverified := make([][]byte, len(bodies))
	for i := range bodies {
		anonymous[i] = fmt.Appendf(nil, `{"anonymousId": "a%d", "placements": ["hero"]}`, i)
		unverified[i] = fmt.Appendf(nil, `{"userId": "u%d", "placements": ["hero"]}`, i)
	}
	for _, bc := range []struct {
		name   string
		secret string
		limits RateLimits
		bodies [][]byte
	}{
		{"anonymous", "", RateLimits{}, anonymous},
		{"verified", secret, RateLimits{}, bodies},
		{"unverified", secret, RateLimits{}, unverified},
		{"ratelimited", "", benchLimits, anonymous},
	} {
		b.Run(bc.name, func(b *testing.B) {
			client := benchServer(b, Config{WriteKeys: keys("w"), ReadKeys: keys("r"), DecideKeys: keys("d"),
				Decisions: newDecider(b, bc.secret), RateLimits: bc.limits, Limits: event.DefaultLimits(),
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, discard{}, noProfiles{})
			benchPost(b, client, "/v1/decide", "d", bc.bodies)
		})
	}
}

// discard is an Events that acknowledges everything and keeps nothing.
type discard struct{}

func (discard) Produce(context.Context, ...*kgo.Record) error { return nil }
