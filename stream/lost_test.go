package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/state"
)

// TestHealthAcrossLostSession: what Health, Stale and Profile say while
// the broker is away (the embedded one, closed and started again on its
// data): the partitions move from applied to stale and back, their
// profiles readable throughout.
func TestHealthAcrossLostSession(t *testing.T) {
	const partitions = 3
	dir, port := t.TempDir(), freePort(t)
	broker, err := StartEmbedded(dir, port, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { broker.Close() }()
	client := ClientConfig{Brokers: broker.Addrs()}
	topics := NewTopics("t.")
	prod, err := NewProducer(client)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if _, err := EnsureTopics(context.Background(), prod.Client(), topics, partitions, 1); err != nil {
		t.Fatal(err)
	}
	opts := state.DefaultOptions()
	opts.MemTableSize, opts.BlockCacheSize = 4<<20, 1<<20
	p, err := NewProcessor(ProcessorConfig{Client: client, Group: "g", Topics: topics, DataDir: t.TempDir(),
		Partitions: partitions, Store: opts, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	run := make(chan error, 1)
	go func() { run <- p.Run(ctx) }()
	defer func() {
		cancel()
		<-run
		p.Close()
	}()
	if h := p.Reads().Health(); h.Connected {
		t.Errorf("connected before any assignment: %+v", h)
	}

	keys := []string{"a", "b", "c", "d", "e", "f"}
	for _, key := range keys {
		r := &kgo.Record{Topic: topics.Events, Key: []byte(key), Value: fmt.Appendf(nil, `{"type": "track", "userId": %q, "event": "E"}`, key)}
		if err := prod.Produce(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	all := []int32{0, 1, 2}
	readable := func() bool {
		for _, key := range keys {
			if prof, err := p.Reads().Profile(key); err != nil || prof.EventCounts["E"] != 1 {
				return false
			}
		}
		return true
	}
	eventually(t, "the profiles applied", func() bool { return readable() && p.Reads().Ready() })
	if h := p.Reads().Health(); !h.Connected || !slices.Equal(h.Applying, all) || len(h.Stale) != 0 || !h.LostAt.IsZero() {
		t.Errorf("health while applying: %+v", h)
	}

	broker.Close()
	eventually(t, "the group session lost", func() bool { return !p.Reads().Health().Connected })
	h := p.Reads().Health()
	if !slices.Equal(h.Stale, all) || len(h.Applying) != 0 || h.LostAt.IsZero() {
		t.Errorf("health with the broker away: %+v", h)
	}
	if since, stale := p.Reads().Stale("a"); !stale || !since.Equal(h.LostAt) {
		t.Errorf("Stale(a) = %v, %v; want since %v", since, stale, h.LostAt)
	}
	if !readable() {
		t.Error("profiles not readable from the stale stores")
	}
	if _, local := p.Reads().Owner("a"); !local {
		t.Error("a stale partition's key is not answered here")
	}

	if broker, err = StartEmbedded(dir, port, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the partitions applied again", func() bool {
		h := p.Reads().Health()
		return h.Connected && slices.Equal(h.Applying, all)
	})
	if h := p.Reads().Health(); len(h.Stale) != 0 || !h.LostAt.IsZero() {
		t.Errorf("health after the broker is back: %+v", h)
	}
	if _, stale := p.Reads().Stale("a"); stale {
		t.Error("a read is still stale after the broker is back")
	}
	r := &kgo.Record{Topic: topics.Events, Key: []byte("a"), Value: []byte(`{"type": "track", "userId": "a", "event": "F"}`)}
	if err := prod.Produce(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	eventually(t, "an event applied after the outage", func() bool {
		prof, err := p.Reads().Profile("a")
		return err == nil && prof.EventCounts["F"] == 1 && prof.EventCounts["E"] == 1
	})
	select {
	case err := <-run:
		t.Fatalf("Run returned: %v", err)
	default:
	}
	if _, err := p.Reads().Profile("never-seen"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("a key never seen: %v", err)
	}
}

// eventually polls cond until it holds, failing the test after a minute.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
