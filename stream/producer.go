package stream

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"

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
}

// NewProducer connects a producer. Records are acknowledged by all in-sync
// replicas before Produce returns.
func NewProducer(cfg ClientConfig, extra ...kgo.Opt) (*Producer, error) {
	opts := append(cfg.Opts(),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		kgo.ProducerBatchMaxBytes(1<<20),
	)
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka producer for %v: %w", cfg.Brokers, err)
	}
	return &Producer{cl: cl}, nil
}

// Client returns the underlying client, for admin requests.
func (p *Producer) Client() *kgo.Client { return p.cl }

// Produce writes records and returns once every one of them is acknowledged,
// or with the first error. Records of one key keep their order.
func (p *Producer) Produce(ctx context.Context, records ...*kgo.Record) error {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	wg.Add(len(records))
	for _, r := range records {
		p.cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("produce to %s: %w", r.Topic, err)
				}
				mu.Unlock()
			}
			wg.Done()
		})
	}
	wg.Wait()
	return firstErr
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
