package bench

import (
	"context"
	"fmt"

	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"
)

// LoadConfig configures an open-loop HTTP load: requests are scheduled at
// a fixed rate whatever the server does. A pacer hands each request to an
// idle sender at its scheduled time, and its latency is measured from that
// time (like wrk2): when every sender is still waiting for an answer, the
// request waits, so a stall shows as the latency of every request it
// delayed instead of hiding as fewer requests (coordinated omission). The
// one lateness not counted is the pacer's own: a sleep overshoots by up to
// a millisecond on common kernels, and the schedule is shifted by the last
// sleep's overshoot.
type LoadConfig struct {
	// Addr is host:port; Path the request path.
	Addr string
	Path string
	// Authorization is the Authorization header value ("" : none).
	Authorization string
	// Body returns the i-th request's body (POST); nil sends GETs.
	Body func(i uint64) []byte
	// Connections is the number of connections (and senders).
	Connections int
	// Rate is requests per second; Duration how long to send.
	Rate     float64
	Duration time.Duration
	// Timeout bounds one request.
	Timeout time.Duration
	// Progress, when set, is called every second with the counts so far.
	Progress func(LoadProgress)
}

// LoadProgress is how far a load step has come.
type LoadProgress struct {
	Elapsed      time.Duration
	Sent, Errors int64
}

// LoadResult is the outcome of one load step.
type LoadResult struct {
	Rate       float64 `json:"target_per_s"`
	Sent       int64   `json:"sent"`
	Errors     int64   `json:"errors"`
	Throughput float64 `json:"ok_per_s"`
	// Latencies in microseconds, from the scheduled send time.
	P50  float64 `json:"p50_us"`
	P90  float64 `json:"p90_us"`
	P99  float64 `json:"p99_us"`
	P999 float64 `json:"p99_9_us"`
	Max  float64 `json:"max_us"`
	// Timeline holds the successful requests of each second of the step.
	Timeline []float64 `json:"ok_per_s_timeline"`
}

// Load runs one open-loop step.
func Load(ctx context.Context, c LoadConfig) (LoadResult, error) {
	if c.Connections <= 0 {
		c.Connections = 64
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Rate <= 0 || c.Duration <= 0 {
		return LoadResult{}, fmt.Errorf("load: rate %v and duration %s must be positive", c.Rate, c.Duration)
	}
	client := newClient(c.Addr, c.Connections, c.Timeout)
	total := int64(c.Rate * c.Duration.Seconds())
	interval := time.Duration(float64(time.Second) / c.Rate)
	start := time.Now().Add(10 * time.Millisecond)
	type job struct {
		i    int64
		from time.Time // latency is measured from here
	}
	jobs := make(chan job) // unbuffered: a send succeeds when a sender is idle
	go func() {
		defer close(jobs)
		// shift is how late the pacer's last sleep ended: the schedule
		// is shifted by it, so that the sleep's overshoot is not counted,
		// while a wait for busy senders (the server's doing) is.
		var shift time.Duration
		for i := int64(0); i < total && ctx.Err() == nil; i++ {
			due := start.Add(time.Duration(i) * interval)
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
				shift = max(time.Since(due), 0)
			}
			from := due.Add(shift)
			if now := time.Now(); from.After(now) {
				from = now
			}
			select {
			case jobs <- job{i, from}:
			default:
				// Every sender waits on the server: this request waits
				// too, and the wait counts.
				select {
				case jobs <- job{i, from}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	var sent, errs, ok atomic.Int64
	seconds := make([]atomic.Int64, int(c.Duration/time.Second)+2)
	hists := make([]*hdrhistogram.Histogram, c.Connections)
	var wg sync.WaitGroup
	for w := range c.Connections {
		hists[w] = hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
		wg.Add(1)
		go func(h *hdrhistogram.Histogram) {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			for j := range jobs {
				c.request(req, uint64(j.i))
				err := client.DoTimeout(req, resp, c.Timeout)
				lat := time.Since(j.from)
				sent.Add(1)
				if err != nil || resp.StatusCode() != fasthttp.StatusOK {
					errs.Add(1)
				} else {
					ok.Add(1)
					if s := int(time.Since(start) / time.Second); s >= 0 && s < len(seconds) {
						seconds[s].Add(1)
					}
				}
				_ = h.RecordValue(max(1, lat.Microseconds()))
			}
		}(hists[w])
	}
	if c.Progress != nil {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					c.Progress(LoadProgress{Elapsed: time.Since(start), Sent: sent.Load(), Errors: errs.Load()})
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	for _, h := range hists {
		all.Merge(h)
	}
	r := LoadResult{Rate: c.Rate, Sent: sent.Load(), Errors: errs.Load(), Throughput: float64(ok.Load()) / elapsed.Seconds(),
		P50: float64(all.ValueAtQuantile(50)), P90: float64(all.ValueAtQuantile(90)), P99: float64(all.ValueAtQuantile(99)),
		P999: float64(all.ValueAtQuantile(99.9)), Max: float64(all.Max())}
	for s := range min(len(seconds), int(elapsed.Seconds())) { // whole seconds only
		r.Timeline = append(r.Timeline, float64(seconds[s].Load()))
	}
	return r, ctx.Err()
}

// request sets req to the i-th request of the load.
func (c LoadConfig) request(req *fasthttp.Request, i uint64) {
	req.Reset()
	req.SetRequestURI("http://" + c.Addr + c.Path)
	if c.Authorization != "" {
		req.Header.Set(fasthttp.HeaderAuthorization, c.Authorization)
	}
	if c.Body != nil {
		req.Header.SetMethod(fasthttp.MethodPost)
		req.Header.SetContentType("application/json")
		req.SetBody(c.Body(i))
	}
}

// Once sends the load's first request and returns the answer's body,
// which must have status 200.
func Once(c LoadConfig) ([]byte, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	c.request(req, 0)
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if err := fasthttp.DoTimeout(req, resp, timeout); err != nil {
		return nil, err
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode(), resp.Body())
	}
	return append([]byte(nil), resp.Body()...), nil
}

// Saturate finds the highest rate the target sustains: it sends as fast as
// the connections allow (closed loop) for d and returns the successful
// requests per second.
func Saturate(ctx context.Context, c LoadConfig, d time.Duration) (float64, error) {
	c.Rate, c.Duration = 10_000_000, d // a schedule no server keeps up with
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	r, err := Load(ctx, c)
	if err != nil && ctx.Err() == nil {
		return 0, err
	}
	return r.Throughput, nil
}

// Baseline serves a fixed JSON body on ln with fasthttp: what a decide
// call costs on this machine with no work behind it.
func Baseline(ln net.Listener, body []byte) *fasthttp.Server {
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBody(body)
	}}
	go func() { _ = srv.Serve(ln) }()
	return srv
}
