package serve

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/tailorcdp/tailor/bench/workload"
	"github.com/tailorcdp/tailor/event"
)

// BenchmarkCollect sends the standard workload's events (about 400 bytes
// each) to the collect API over an in-memory connection, to Events that
// keep nothing: the HTTP side's cost per request, client included. track:
// one event per request; batch20: twenty.
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
	s, err := New(Config{WriteKeys: []string{"w"}, ReadKeys: []string{"r"}, EventsTopic: "events",
		Limits: event.DefaultLimits(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		discard{}, noProfiles{}, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	ln := fasthttputil.NewInmemoryListener()
	go s.Serve(ln)
	defer ln.Close()
	client := &fasthttp.HostClient{Addr: "collect", Dial: func(string) (net.Conn, error) { return ln.Dial() }}
	for _, bc := range []struct {
		name, path string
		bodies     [][]byte
	}{{"track", "/v1/track", tracks}, {"batch20", "/v1/batch", batches}} {
		b.Run(bc.name, func(b *testing.B) {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			req.Header.SetMethod("POST")
			req.SetRequestURI("http://collect" + bc.path)
			req.Header.Set("Authorization", "Bearer w")
			size := 0
			for _, body := range bc.bodies {
				size += len(body)
			}
			b.SetBytes(int64(size / len(bc.bodies)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				req.SetBody(bc.bodies[i%len(bc.bodies)])
				if err := client.Do(req, resp); err != nil || resp.StatusCode() != fasthttp.StatusOK {
					b.Fatalf("%v %d %s", err, resp.StatusCode(), resp.Body())
				}
				i++
			}
		})
	}
}

// discard is an Events that acknowledges everything and keeps nothing.
type discard struct{}

func (discard) Produce(context.Context, ...*kgo.Record) error { return nil }
