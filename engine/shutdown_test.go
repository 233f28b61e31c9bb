package engine_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/engine"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/serve"
	"github.com/tailorcdp/tailor/state"
	"github.com/tailorcdp/tailor/stream"
)

// TestShutdownDataDirRemoved stops an engine whose data directory was
// removed under it: its stores cannot flush, and closing them would wait
// for ever (seen: SIGTERM hung in the consumer's leave-group, whose revoke
// callback closes the stores). Run must return within shutdown.timeout
// with an error naming what did not finish.
func TestShutdownDataDirRemoved(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, testkafka.Brokers(t), testkafka.Prefix(t), dir)
	cfg.Kafka.Partitions = 2
	cfg.Shutdown.Timeout = config.Duration(3 * time.Second)
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e, err := engine.Start(ctx, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	url := "http://" + e.HTTPAddr()
	waitFor(t, "the engine to be ready", 60*time.Second, func() bool {
		return do(t, "GET", url+"/readyz", "", nil, nil).Status == http.StatusOK
	})
	r := &running{Engine: e, url: url}
	for i := range 50 {
		ev := fmt.Sprintf(`{"type": "track", "userId": "u%d", "event": "Viewed", "messageId": "m%d"}`, i, i)
		if resp := r.post(t, "/v1/track", ev); resp.Status != http.StatusOK {
			t.Fatalf("track: %d %s", resp.Status, resp.Body)
		}
	}
	r.waitProfile(t, "u49", func(v state.View) bool { return v.Calls["track"] == 1 })
	// More events, not yet flushed, then the directory goes.
	for i := range 50 {
		r.post(t, "/v1/track", fmt.Sprintf(`{"type": "track", "userId": "v%d", "event": "Viewed"}`, i))
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute): // far past the bound: hung
		t.Fatalf("Run did not return 2 minutes after its context ended, with shutdown.timeout 3s; log:\n%s", logs.String())
	}
	t.Logf("Run: %v", err)
	if !errors.Is(err, engine.ErrShutdownIncomplete) || !strings.Contains(err.Error(), "partition stores") {
		t.Errorf("Run: %v, want an error saying the partition stores did not finish", err)
	}
	if !strings.Contains(logs.String(), "shutdown did not finish") {
		t.Errorf("the log does not say what did not finish:\n%s", logs.String())
	}
}

// TestShutdownDrain: once a shutdown starts, /readyz answers 503 (status
// "shutting down") while the HTTP server still serves the other routes,
// for shutdown.drain; then the server stops and Run returns nil.
func TestShutdownDrain(t *testing.T) {
	cfg := testConfig(t, testkafka.Brokers(t), testkafka.Prefix(t), t.TempDir())
	cfg.Kafka.Partitions = 2
	cfg.Shutdown.Drain = config.Duration(5 * time.Second)
	e := startEngine(t, cfg)
	e.cancel()
	var body serve.Readiness
	waitFor(t, "/readyz to answer 503", 5*time.Second, func() bool {
		resp := do(t, "GET", e.url+"/readyz", "", nil, nil)
		resp.json(t, &body)
		return resp.Status == http.StatusServiceUnavailable
	})
	if body.Status != "shutting down" || body.Ready {
		t.Errorf("/readyz while draining: %+v, want status \"shutting down\", not ready", body)
	}
	// The other routes still serve while draining.
	if resp := do(t, "GET", e.url+"/v1/profiles/nobody", readKey, nil, nil); resp.Status != http.StatusNotFound {
		t.Errorf("profile read while draining: %d %s, want 404", resp.Status, resp.Body)
	}
	if err := <-e.done; err != nil {
		t.Errorf("Run: %v", err)
	}
	e.cancel = nil
	if _, err := http.Get(e.url + "/readyz"); err == nil {
		t.Errorf("/readyz still answers after Run returned")
	}
}

// TestShutdownBrokerGone stops an engine whose broker went away first: the
// group's leave call and the producer's flush have no one to talk to. Run
// must still return within shutdown.timeout: cleanly, or with an error
// saying what did not finish.
func TestShutdownBrokerGone(t *testing.T) {
	broker, err := stream.StartEmbedded(t.TempDir(), 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	cfg := testConfig(t, broker.Addrs(), testkafka.Prefix(t), t.TempDir())
	cfg.Kafka.Partitions = 2
	cfg.Shutdown.Timeout = config.Duration(3 * time.Second)
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e, err := engine.Start(ctx, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	r := &running{Engine: e, url: "http://" + e.HTTPAddr()}
	waitFor(t, "the engine to be ready", 60*time.Second, func() bool {
		return do(t, "GET", r.url+"/readyz", "", nil, nil).Status == http.StatusOK
	})
	r.post(t, "/v1/track", `{"type": "track", "userId": "gone", "event": "Viewed"}`)
	r.waitProfile(t, "gone", func(v state.View) bool { return v.Calls["track"] == 1 })
	broker.Close()
	cancel()
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("Run did not return 2 minutes after its context ended, with shutdown.timeout 3s; log:\n%s", logs.String())
	}
	t.Logf("Run: %v", err)
	if err != nil && !errors.Is(err, engine.ErrShutdownIncomplete) {
		t.Errorf("Run: %v, want nil or ErrShutdownIncomplete", err)
	}
}
