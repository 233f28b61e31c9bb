package deliver

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Config configures a Deliverer.
type Config struct {
	// Client is the Kafka connection (brokers, TLS, SASL).
	Client []kgo.Opt
	// Group prefixes the delivery consumer groups: each destination has
	// its own, "<Group>.<destination>" ("<kafka.group>-deliver.crm").
	Group string
	// InstanceID, when set, makes the members static
	// ("<id>-deliver.<destination>"), so that a restarted instance takes
	// its partitions back at once.
	InstanceID     string
	SessionTimeout time.Duration
	// Topic is the segments topic; DeadLetterTopic where changes past
	// their destination's bounds go; EventsTopic the events topic, whose
	// offsets in a change's tailor.source header say when its profile is
	// committed.
	Topic, DeadLetterTopic, EventsTopic string
	Profiles                            Profiles
	Logger                              *slog.Logger
	// Registerer takes the metrics (nil: none).
	Registerer prometheus.Registerer
	// HTTPClient sends the requests (nil: a client with keep-alives).
	HTTPClient *http.Client
	// Backoff spaces retries (zero: DefaultBackoff).
	Backoff Backoff
	// MaxPollRecords bounds the changes read at once (0: 10000).
	MaxPollRecords int
	// Breaker configures the circuit breakers (zero: DefaultBreaker).
	Breaker Breaker
}

// Deliverer runs a delivery consumer per destination, each in its own
// consumer group: a destination that is down holds back none of the
// others.
type Deliverer struct {
	cfg     Config
	send    sender
	metrics *metrics

	mu      sync.Mutex
	ctx     context.Context // Run's; nil before Run and after it ends
	byName  map[string]*consumer
	running sync.WaitGroup
}

// New returns a deliverer for ds; Run starts it.
func New(cfg Config, ds []Destination) (*Deliverer, error) {
	if cfg.Backoff == (Backoff{}) {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.Breaker == (Breaker{}) {
		cfg.Breaker = DefaultBreaker
	}
	if cfg.MaxPollRecords <= 0 {
		cfg.MaxPollRecords = 10000
	}
	if cfg.HTTPClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = maxInFlight
		cfg.HTTPClient = &http.Client{Transport: tr}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Deliverer{cfg: cfg, send: sender{client: cfg.HTTPClient, backoff: cfg.Backoff, now: time.Now}, byName: map[string]*consumer{}}
	d.metrics = newMetrics(cfg.Registerer, d)
	d.SetDestinations(ds)
	return d, nil
}

// SetDestinations puts ds in force (a reload): a destination kept by name
// keeps its consumer, figures, limiter and breaker; a new one gets a
// consumer; a removed one receives nothing more (its requests in flight
// are given up) and its consumer leaves its group.
func (d *Deliverer) SetDestinations(ds []Destination) {
	d.mu.Lock()
	defer d.mu.Unlock()
	keep := map[string]bool{}
	for _, ds := range ds {
		keep[ds.Name] = true
		if c, ok := d.byName[ds.Name]; ok {
			c.x.set(ds)
			continue
		}
		c := newConsumer(d, ds)
		d.byName[ds.Name] = c
		if d.ctx != nil {
			d.start(c)
		}
	}
	for name, c := range d.byName {
		if !keep[name] {
			c.x.removed.Store(true)
			delete(d.byName, name)
			go c.stop()
		}
	}
}

// start runs c until it is stopped or Run's context ends; d.mu is held.
func (d *Deliverer) start(c *consumer) {
	ctx, cancel := context.WithCancel(d.ctx)
	c.cancel = cancel
	d.running.Add(1)
	go func() {
		defer d.running.Done()
		c.run(ctx)
		close(c.stopped)
	}()
}

// Run delivers until ctx ends.
func (d *Deliverer) Run(ctx context.Context) error {
	d.mu.Lock()
	d.ctx = ctx
	for _, c := range d.byName {
		d.start(c)
	}
	d.mu.Unlock()
	<-ctx.Done()
	d.running.Wait()
	d.mu.Lock()
	d.ctx = nil
	d.mu.Unlock()
	return nil
}

// Close leaves the groups and closes the connections.
func (d *Deliverer) Close() {
	d.mu.Lock()
	cs := make([]*consumer, 0, len(d.byName))
	for _, c := range d.byName {
		cs = append(cs, c)
	}
	d.mu.Unlock()
	for _, c := range cs {
		c.stop()
	}
}

// consumers returns the destinations' consumers in force.
func (d *Deliverer) consumers() []*consumer {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*consumer, 0, len(d.byName))
	for _, c := range d.byName {
		out = append(out, c)
	}
	return out
}
