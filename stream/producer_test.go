package stream_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tailorcdp/tailor/stream"
)

// TestProduceReturnsAtDeadline: a produce request the broker has received
// but does not answer cannot be failed by an idempotent producer, so
// franz-go keeps its records; Produce still returns when its context ends,
// and Health says so until a produce succeeds again.
func TestProduceReturnsAtDeadline(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	release := make(chan struct{})
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.SleepControl(func() { <-release })
		return nil, nil, false // then answered as usual
	})
	p, err := stream.NewProducer(stream.ClientConfig{Brokers: c.ListenAddrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	const timeout = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	start := time.Now()
	err = p.Produce(ctx, &kgo.Record{Topic: "t", Value: []byte("a")})
	cancel()
	// A liveness bound of the contract, with generous slack.
	if took := time.Since(start); took > timeout+2*time.Second {
		t.Errorf("Produce returned after %s, its context ended after %s", took, timeout)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Produce: %v, want a deadline error", err)
	}
	if ok, _, herr := p.Health(); ok || herr == nil {
		t.Errorf("Health after a timeout: %v %v", ok, herr)
	}

	close(release)
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Produce(ctx, &kgo.Record{Topic: "t", Value: []byte("b")}); err != nil {
		t.Fatalf("Produce once the broker answers: %v", err)
	}
	if ok, _, herr := p.Health(); !ok || herr != nil {
		t.Errorf("Health after a success: %v %v", ok, herr)
	}
}
