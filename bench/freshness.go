package bench

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"

	"github.com/tailorcdp/tailor/internal/workload"
)

// FreshnessConfig configures a freshness run: how soon an event sent to
// the collect API changes what the engine serves.
type FreshnessConfig struct {
	// Addr is the engine's HTTP host:port.
	Addr              string
	WriteKey, ReadKey string
	Samples           int
	// Segment is the segment the probe events move a profile into and out
	// of: identify calls with the traits In put it in, Out take it out.
	// The sample configuration's french_adult works with the defaults.
	Segment string
	In, Out json.RawMessage
	// Background is the rate (events/s) of workload events sent through
	// the collect API meanwhile, in batches of 100; 0 sends none.
	Background float64
	Workload   workload.Config
	// Timeout bounds one sample; a sample past it counts as a timeout.
	Timeout  time.Duration
	Progress func(string)
}

// DefaultFreshness returns the probe that fits the sample configuration.
func DefaultFreshness() FreshnessConfig {
	return FreshnessConfig{
		Samples:    200,
		Segment:    "french_adult",
		In:         json.RawMessage(`{"country": "FR", "age": 30}`),
		Out:        json.RawMessage(`{"country": "DE", "age": 30}`),
		Background: 2000,
		Workload:   workload.DefaultConfig(),
		Timeout:    10 * time.Second,
	}
}

// FreshnessResult is the outcome of a freshness run. Latencies are from
// sending the event to the profile API showing the change, in
// milliseconds.
type FreshnessResult struct {
	Samples    int     `json:"samples"`
	Timeouts   int     `json:"timeouts"`
	Background float64 `json:"background_events_per_s"`
	P50        float64 `json:"p50_ms"`
	P90        float64 `json:"p90_ms"`
	P99        float64 `json:"p99_ms"`
	Max        float64 `json:"max_ms"`
	// Latencies are the samples in order, for charts.
	Latencies []float64 `json:"latencies_ms"`
}

// Freshness sends probe events one at a time and, for each, polls the
// profile API until the probe profile's segment membership shows it,
// while workload events arrive in the background.
func Freshness(ctx context.Context, c FreshnessConfig) (FreshnessResult, error) {
	if c.Samples <= 0 || c.Segment == "" || len(c.In) == 0 || len(c.Out) == 0 {
		return FreshnessResult{}, fmt.Errorf("freshness: samples %d, segment %q and both probe trait sets are needed", c.Samples, c.Segment)
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	client := newClient(c.Addr, 8, c.Timeout)
	bgCtx, cancel := context.WithCancel(ctx)
	bgDone := make(chan float64, 1)
	go func() { bgDone <- background(bgCtx, client, c) }()
	var bgRate float64
	var once sync.Once
	stopBackground := func() { once.Do(func() { cancel(); bgRate = <-bgDone }) }
	defer stopBackground()

	res := FreshnessResult{Samples: c.Samples}
	hist := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	// Probe profiles take turns, each going in and out of the segment.
	const probes = 8
	in := make([]bool, probes)
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	for i := range c.Samples {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		p := i % probes
		key := "freshness-" + run + "-" + strconv.Itoa(p)
		want := !in[p]
		traits := c.Out
		if want {
			traits = c.In
		}
		body, _ := json.Marshal(map[string]any{"type": "identify", "userId": key, "traits": traits})
		start := time.Now()
		if err := post(client, c.Addr, "/v1/identify", c.WriteKey, body); err != nil {
			return res, fmt.Errorf("freshness probe %d: %w", i, err)
		}
		seen, err := waitMembership(ctx, client, c, key, want, start.Add(c.Timeout))
		if err != nil {
			return res, fmt.Errorf("freshness probe %d: %w", i, err)
		}
		in[p] = want
		if !seen {
			res.Timeouts++
			in[p] = !want // unknown; the next probe of this profile says
			continue
		}
		lat := time.Since(start)
		_ = hist.RecordValue(max(1, lat.Microseconds()))
		res.Latencies = append(res.Latencies, float64(lat.Microseconds())/1000)
		if c.Progress != nil && (i+1)%50 == 0 {
			c.Progress(fmt.Sprintf("freshness: %d/%d samples, p50 %.1f ms so far", i+1, c.Samples, float64(hist.ValueAtQuantile(50))/1000))
		}
		// Let the background load run between probes.
		time.Sleep(10 * time.Millisecond)
	}
	ms := func(q float64) float64 { return float64(hist.ValueAtQuantile(q)) / 1000 }
	res.P50, res.P90, res.P99, res.Max = ms(50), ms(90), ms(99), float64(hist.Max())/1000
	stopBackground()
	res.Background = bgRate
	return res, nil
}

// waitMembership polls key's profile until its membership of the segment
// is want, or until deadline (seen false).
func waitMembership(ctx context.Context, client *fasthttp.HostClient, c FreshnessConfig, key string, want bool, deadline time.Time) (seen bool, err error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		req.Reset()
		req.SetRequestURI("http://" + c.Addr + "/v1/profiles/" + key)
		req.Header.Set(fasthttp.HeaderAuthorization, BasicAuth(c.ReadKey))
		if err := client.DoTimeout(req, resp, c.Timeout); err != nil {
			return false, err
		}
		switch resp.StatusCode() {
		case fasthttp.StatusOK:
			var v struct {
				Segments map[string]json.RawMessage `json:"segments"`
			}
			if err := json.Unmarshal(resp.Body(), &v); err != nil {
				return false, fmt.Errorf("profile %s: %w", key, err)
			}
			if _, in := v.Segments[c.Segment]; in == want {
				return true, nil
			}
		case fasthttp.StatusNotFound, fasthttp.StatusServiceUnavailable:
		default:
			return false, fmt.Errorf("GET profile %s: status %d: %s", key, resp.StatusCode(), resp.Body())
		}
		time.Sleep(500 * time.Microsecond)
	}
	return false, nil
}

// background sends workload events in batches of 100 at c.Background
// events/s until ctx ends, and returns the rate it achieved.
func background(ctx context.Context, client *fasthttp.HostClient, c FreshnessConfig) float64 {
	if c.Background <= 0 {
		return 0
	}
	const batch = 100
	gen := workload.New(c.Workload)
	interval := time.Duration(float64(time.Second) * batch / c.Background)
	start := time.Now()
	var sent atomic.Int64
	var buf bytes.Buffer
	for i := 0; ctx.Err() == nil; i++ {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		buf.Reset()
		buf.WriteString(`{"batch": [`)
		for j := range batch {
			if j > 0 {
				buf.WriteByte(',')
			}
			_, v := gen.Next()
			buf.Write(v)
		}
		buf.WriteString(`]}`)
		if post(client, c.Addr, "/v1/batch", c.WriteKey, buf.Bytes()) == nil {
			sent.Add(batch)
		}
	}
	secs := time.Since(start).Seconds()
	if secs <= 0 {
		return 0
	}
	return math.Round(float64(sent.Load()) / secs)
}

// post sends a collect API request and checks for 200.
func post(client *fasthttp.HostClient, addr, path, key string, body []byte) error {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + addr + path)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.Header.Set(fasthttp.HeaderAuthorization, BasicAuth(key))
	req.SetBody(body)
	if err := client.DoTimeout(req, resp, 10*time.Second); err != nil {
		return err
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		return fmt.Errorf("POST %s: status %d: %s", path, resp.StatusCode(), resp.Body())
	}
	return nil
}

// BasicAuth returns the Authorization header value that carries a key
// the way tailor reads it (the Basic auth user name).
func BasicAuth(key string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(key+":"))
}

// newClient returns an HTTP client of conns connections to addr whose
// dials, reads and writes time out after timeout.
func newClient(addr string, conns int, timeout time.Duration) *fasthttp.HostClient {
	return &fasthttp.HostClient{Addr: addr, MaxConns: conns, ReadTimeout: timeout, WriteTimeout: timeout,
		Dial: func(a string) (net.Conn, error) { return net.DialTimeout("tcp", a, timeout) }}
}
