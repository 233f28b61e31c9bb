package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/engine"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/state"
)

const (
	writeKey = "test-write"
	readKey  = "test-read"
)

// testConfig returns a config for an engine on brokers with its own topics.
func testConfig(t testing.TB, brokers []string, prefix, dataDir string) *config.Config {
	cfg := config.Default()
	cfg.DataDir = dataDir
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.HTTP.WriteKeys = config.NewKeys(writeKey)
	cfg.HTTP.ReadKeys = config.NewKeys(readKey)
	cfg.Kafka.Brokers = brokers
	cfg.Kafka.TopicPrefix = prefix
	cfg.Kafka.Group = prefix + "engine"
	cfg.Kafka.Partitions = 6
	cfg.Embedded.Port = 0
	cfg.Store.MemTableSize = 4 << 20
	cfg.Store.BlockCacheSize = 4 << 20
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return &cfg
}

// running is an engine started for a test.
type running struct {
	*engine.Engine
	url    string
	cancel context.CancelFunc
	done   chan error
}

func startEngine(t testing.TB, cfg *config.Config) *running {
	t.Helper()
	return startEngineLoggingTo(t, cfg, io.Discard)
}

// startEngineLoggingTo starts an engine for t that writes its log to w,
// and waits until it is ready; t's end stops it.
func startEngineLoggingTo(t testing.TB, cfg *config.Config, w io.Writer) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e, err := engine.Start(ctx, cfg, slog.New(slog.NewTextHandler(w, nil)))
	if err != nil {
		cancel()
		t.Fatalf("start engine: %v", err)
	}
	r := &running{Engine: e, url: "http://" + e.HTTPAddr(), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- e.Run(ctx) }()
	t.Cleanup(r.stop)
	waitFor(t, "the engine to be ready", 60*time.Second, func() bool {
		return do(t, "GET", r.url+"/readyz", "", nil, nil).Status == http.StatusOK
	})
	return r
}

func (r *running) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	<-r.done
	r.cancel = nil
}

// newEngine starts an engine on the test brokers with fresh topics.
func newEngine(t testing.TB) *running {
	return startEngine(t, testConfig(t, testkafka.Brokers(t), testkafka.Prefix(t), t.TempDir()))
}

type response struct {
	Status int
	Body   []byte
	Header http.Header
}

func (r response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

func do(t testing.TB, method, url, key string, body []byte, header map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.SetBasicAuth(key, "")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req) // a hung server fails the test
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, b, resp.Header}
}

func (r *running) post(t testing.TB, path, body string) response {
	t.Helper()
	return do(t, "POST", r.url+path, writeKey, []byte(body), map[string]string{"Content-Type": "application/json"})
}

// profile reads a profile; ok is false on 404. A 503 (the partition is
// moving between owners in a rebalance) is retried for a while, as a
// client would.
func (r *running) profile(t testing.TB, key string) (state.View, bool) {
	t.Helper()
	resp := do(t, "GET", r.url+"/v1/profiles/"+key, readKey, nil, nil)
	for deadline := time.Now().Add(30 * time.Second); resp.Status == http.StatusServiceUnavailable && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		resp = do(t, "GET", r.url+"/v1/profiles/"+key, readKey, nil, nil)
	}
	if resp.Status == http.StatusNotFound {
		return state.View{}, false
	}
	if resp.Status != http.StatusOK {
		t.Fatalf("GET profile %s: %d %s", key, resp.Status, resp.Body)
	}
	var v state.View
	resp.json(t, &v)
	return v, true
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitProfile waits until key's profile satisfies cond.
func (r *running) waitProfile(t testing.TB, key string, cond func(state.View) bool) state.View {
	t.Helper()
	var v state.View
	waitFor(t, "profile "+key, 30*time.Second, func() bool {
		var ok bool
		v, ok = r.profile(t, key)
		return ok && cond(v)
	})
	return v
}
