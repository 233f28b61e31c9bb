package stream

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
)

// ClientConfig says how to reach a Kafka cluster.
type ClientConfig struct {
	Brokers  []string
	ClientID string
	TLS      *tls.Config    // nil for plaintext
	SASL     sasl.Mechanism // nil for none
}

// Opts returns the franz-go options for the connection.
func (c ClientConfig) Opts() []kgo.Opt {
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...)}
	if c.ClientID != "" {
		opts = append(opts, kgo.ClientID(c.ClientID))
	}
	if c.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(c.TLS))
	}
	if c.SASL != nil {
		opts = append(opts, kgo.SASL(c.SASL))
	}
	return opts
}

// Producer writes records and waits for the brokers to acknowledge them.
// It is idempotent (franz-go's default), so its own retries never duplicate
// a record.
type Producer struct {
	cl *kgo.Client

	mu     sync.Mutex
	ok     bool      // the last Produce had every record acknowledged
	since  time.Time // when ok last changed
	failed error     // the last Produce's error, while !ok
}

// maxBuffered bounds the bytes of records the producer holds while the
// brokers do not acknowledge them (an outage): once it is reached, Produce
// waits for room until its context ends.
const maxBuffered = 64 << 20

// NewProducer connects a producer. Records are acknowledged by all in-sync
// replicas before Produce returns.
func NewProducer(cfg ClientConfig, extra ...kgo.Opt) (*Producer, error) {
	opts := append(cfg.Opts(),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		kgo.ProducerBatchMaxBytes(1<<20),
		kgo.MaxBufferedBytes(maxBuffered),
	)
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka producer for %v: %w", cfg.Brokers, err)
	}
	return &Producer{cl: cl, ok: true, since: time.Now()}, nil
}

// Client returns the underlying client, for admin requests.
func (p *Producer) Client() *kgo.Client { return p.cl }

// Produce writes records and returns once every one of them is
// acknowledged, with the first error, or when ctx ends, whichever comes
// first: it never waits past ctx's deadline, even while the client keeps
// records it has sent and cannot fail (an idempotent producer retries
// those until the brokers answer). Records whose wait ended with ctx may
// still be written later: a caller that answers "not stored" must let its
// client send them again with the same identity (Segment's messageId), so
// that the copy is recognised. Records of one key keep their order.
func (p *Producer) Produce(ctx context.Context, records ...*kgo.Record) error {
	if len(records) == 0 {
		return nil
	}
	var (
		mu       sync.Mutex
		left     = len(records)
		firstErr error
		done     = make(chan struct{})
	)
	for _, r := range records {
		p.cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("produce to %s: %w", r.Topic, err)
			}
			if left--; left == 0 {
				close(done)
			}
		})
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
	mu.Lock()
	err := firstErr
	if left > 0 { // ctx ended first
		err = fmt.Errorf("%d of %d records to %s not acknowledged in time: %w", left, len(records), records[0].Topic, context.Cause(ctx))
	}
	mu.Unlock()
	p.outcome(err)
	return err
}

func (p *Producer) outcome(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ok := err == nil; ok != p.ok {
		p.ok, p.since = ok, time.Now()
	}
	p.failed = err
}

// Health reports the outcome of the most recent Produce (ok before the
// first), since when it has been so, and its error when it failed. It
// says nothing of the brokers between calls: after an outage it turns ok
// with the first Produce that succeeds.
func (p *Producer) Health() (ok bool, since time.Time, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ok, p.since, p.failed
}

// ProduceAsync writes a record and calls done with the outcome once the
// brokers answer; it blocks only while the producer's buffer is full.
func (p *Producer) ProduceAsync(ctx context.Context, r *kgo.Record, done func(*kgo.Record, error)) {
	p.cl.Produce(ctx, r, done)
}

// Flush waits until every buffered record is acknowledged or ctx is done.
func (p *Producer) Flush(ctx context.Context) error { return p.cl.Flush(ctx) }

// Close flushes nothing: call Flush first if records may be buffered.
func (p *Producer) Close() { p.cl.Close() }
