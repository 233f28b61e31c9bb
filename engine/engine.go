package engine

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/decide"
	"github.com/tailorcdp/tailor/deliver"
	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/serve"
	"github.com/tailorcdp/tailor/state"
	"github.com/tailorcdp/tailor/stream"
)

// Engine is a running tailor instance.
type Engine struct {
	cfg       *config.Config // replaced by reloads, under reloadMu
	log       *slog.Logger
	embedded  *stream.Embedded
	brokers   []string
	producer  *stream.Producer
	processor *stream.Processor
	deliverer *deliver.Deliverer
	decider   *decide.Decider
	server    *serve.Server
	ln        net.Listener
	topics    stream.Topics
	shutdown  shutdownBounds // shutdown.go
	closer    closer

	reloadMu   sync.Mutex
	configFile string   // watched and rewritten by reloads; "" for none
	configSum  [32]byte // of the document in force
	reloads    *prometheus.CounterVec
	audit      *auditor
	// pending is the config file's content not yet recorded (the audit
	// topic was away) and its audit id, kept while it is tried again.
	pending struct {
		sum [32]byte
		id  string
	}
}

// Start starts every part of the engine; Run then serves until its
// context ends.
func Start(ctx context.Context, cfg *config.Config, log *slog.Logger) (_ *Engine, err error) {
	e := &Engine{cfg: cfg, log: log, topics: stream.NewTopics(cfg.Kafka.TopicPrefix), shutdown: bounds(cfg.Shutdown)}
	defer func() {
		if err != nil {
			e.Close() // what was started before the failure
		}
	}()
	client, err := ClientConfig(cfg)
	if err != nil {
		return nil, err
	}
	compiled, err := Compile(cfg) // fail on a bad rule before starting anything
	if err != nil {
		return nil, err
	}
	storeOpts := compiled.Store
	if len(client.Brokers) == 0 {
		dir := filepath.Join(cfg.DataDir, "broker")
		if e.embedded, err = stream.StartEmbedded(dir, cfg.Embedded.Port, log); err != nil {
			return nil, err
		}
		client.Brokers = e.embedded.Addrs()
		log.Info("embedded broker started", "addr", strings.Join(client.Brokers, ","), "data", dir)
	}
	e.brokers = client.Brokers

	reg := prometheus.NewRegistry()
	if e.producer, err = stream.NewProducer(client, kafkaMetrics(reg, "producer")); err != nil {
		return nil, err
	}
	partitions, err := stream.EnsureTopics(ctx, e.producer.Client(), e.topics, int32(cfg.Kafka.Partitions), int16(cfg.Kafka.Replication),
		stream.EventsRetention(time.Duration(cfg.Kafka.EventsRetention)))
	if err != nil {
		return nil, err
	}
	if int(partitions) != cfg.Kafka.Partitions {
		log.Warn("events topic exists with another partition count; using it", "topic", e.topics.Events, "partitions", partitions, "configured", cfg.Kafka.Partitions)
	}

	// Listen first: the address is what the other instances are told.
	if e.ln, err = net.Listen("tcp", cfg.HTTP.Addr); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.HTTP.Addr, err)
	}
	advertise, err := advertiseAddr(cfg.HTTP.Advertise, e.ln.Addr())
	if err != nil {
		return nil, err
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerBuildInfo(reg)
	limits := Limits(cfg)
	e.processor, err = stream.NewProcessor(stream.ProcessorConfig{
		Client:         client,
		ConsumerOpts:   []kgo.Opt{kafkaMetrics(reg, "consumer")},
		Group:          cfg.Kafka.Group,
		InstanceID:     cfg.Kafka.InstanceID,
		SessionTimeout: time.Duration(cfg.Kafka.SessionTimeout),
		MaxPollRecords: cfg.Kafka.MaxPollRecords,
		Topics:         e.topics,
		DataDir:        cfg.DataDir,
		Partitions:     int(partitions),
		Store:          storeOpts,
		Limits:         limits,
		Logger:         log,
		Metrics:        stream.NewMetrics(reg),
		Advertise:      advertise,

		StandbyReplicas: cfg.Kafka.StandbyReplicas,
		Erased:          func(key string) { e.decider.Forget(key) },
	})
	if err != nil {
		return nil, err
	}
	reg.MustRegister(newStoreSizes(cfg.DataDir, e.topics, e.processor.Reads().Applied))
	e.decider = decide.New(e.decideConfig(cfg, compiled), e.processor.Reads())
	if err := e.startDeliverer(cfg, compiled.Destinations, reg); err != nil {
		return nil, err
	}
	if cfg.Source != "" && cfg.Source != "sample" {
		if doc, err := os.ReadFile(cfg.Source); err == nil {
			e.configFile, e.configSum = cfg.Source, sha256.Sum256(doc)
		}
	}
	e.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailor_config_reloads_total",
		Help: "Configuration reloads (config file changed, or PUT /v1/admin/config), by result: applied, rejected (the config file's content was invalid), or unrecorded (not applied: its audit record could not be written).",
	}, []string{"result"})
	now := time.Now
	if cfg.Clock != nil {
		now = cfg.Clock
	}
	e.audit = &auditor{producer: e.producer, topic: e.topics.Audit, log: log, now: now}
	reg.MustRegister(e.reloads, prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "tailor_decide_unverified_total",
		Help: "Decide calls naming a userId without a valid userHash while identity verification is on: answered as for an unknown visitor.",
	}, func() float64 { return float64(e.decider.Unverified()) }))
	rl, err := rateLimits(cfg.HTTP)
	if err != nil {
		return nil, err
	}
	e.server, err = serve.New(serve.Config{
		RateLimits:   rl,
		Decisions:    e.decider,
		Admin:        e,
		Erasures:     e,
		Suppressed:   suppressed(cfg, e.processor.Reads()),
		Auditor:      e.audit,
		WriteKeys:    serveKeys(cfg.HTTP.WriteKeys),
		ReadKeys:     serveKeys(cfg.HTTP.ReadKeys),
		DecideKeys:   serveKeys(cfg.HTTP.DecideKeys),
		AdminKeys:    serveKeys(cfg.HTTP.AdminKeys),
		CORSOrigins:  cfg.HTTP.CORSOrigins,
		EventsTopic:  e.topics.Events,
		Limits:       limits,
		Logger:       log,
		Cluster:      func(ctx context.Context) (any, error) { return e.processor.Reads().Cluster(ctx) },
		Destinations: e.destinationStats,
	}, e.producer, e.processor.Reads(), reg)
	if err != nil {
		return nil, err
	}
	log.Info("tailor started", "http", e.ln.Addr().String(), "brokers", strings.Join(e.brokers, ","),
		"partitions", partitions, "config", cfg.Source, "data", cfg.DataDir)
	return e, nil
}

// Run serves HTTP and applies events until ctx ends or a part fails, then
// shuts down in order, within the bounds of shutdown.go.
func (e *Engine) Run(ctx context.Context) error {
	// The consumer goes on applying while the instance drains: its
	// context is not the caller's.
	procCtx, stopProc := context.WithCancel(context.WithoutCancel(ctx))
	defer stopProc()
	procDone := make(chan error, 1)
	httpDone := make(chan error, 1)
	go func() { procDone <- e.processor.Run(procCtx) }()
	deliverDone := make(chan struct{})
	go func() { _ = e.deliverer.Run(procCtx); close(deliverDone) }()
	go func() { httpDone <- e.server.Serve(e.ln) }()
	if e.configFile != "" {
		go e.watchConfig(ctx)
	}
	var err error
	select {
	case <-ctx.Done():
		err = e.drain(procDone, httpDone)
	case err = <-procDone:
		procDone <- err // for the wait below
	case err = <-httpDone:
		err = fmt.Errorf("http server: %w", err)
	}
	e.server.Drain() // when a part failed too: /readyz answers 503 from here on
	deadline := time.Now().Add(e.shutdown.Timeout)
	stopProc()
	// The stores must not close under an apply in flight, nor under a
	// delivery reading a profile.
	wait := time.NewTimer(time.Until(deadline))
	defer wait.Stop()
	select {
	case perr := <-procDone:
		if err == nil {
			err = perr
		}
	case <-wait.C:
		return errors.Join(err, e.incomplete("the consumer's poll loop"))
	}
	select {
	case <-deliverDone:
	case <-wait.C:
		return errors.Join(err, e.incomplete("the destinations' delivery"))
	}
	return errors.Join(err, e.closeWithin(deadline))
}

// serveKeys returns the HTTP server's keys of a configured list.
func serveKeys(ks config.Keys) []serve.Key {
	out := make([]serve.Key, len(ks))
	for i, k := range ks {
		out[i] = serve.Key{Label: k.Label, Secret: k.Secret}
	}
	return out
}

// rateLimits returns the HTTP server's rate limits of a configuration.
func rateLimits(h config.HTTP) (serve.RateLimits, error) {
	r := h.RateLimits
	out := serve.RateLimits{
		CollectAddress: serve.RateLimit(r.Collect), DecideAddress: serve.RateLimit(r.Decide),
		CollectKey: serve.RateLimit(r.CollectKey), DecideKey: serve.RateLimit(r.DecideKey),
		ProxyHeader: h.ProxyHeader, ProxyHops: h.ProxyHops,
	}
	for _, p := range r.Exempt {
		if p == "private" {
			out.Exempt = append(out.Exempt, serve.PrivatePrefixes()...)
			continue
		}
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			return out, fmt.Errorf("http.rate_limits.exempt %q: %w", p, err)
		}
		out.Exempt = append(out.Exempt, prefix)
	}
	return out, nil
}

// HTTPAddr returns the address the HTTP API listens on.
func (e *Engine) HTTPAddr() string { return e.ln.Addr().String() }

// Brokers returns the brokers the engine uses (the embedded one's address
// when embedded).
func (e *Engine) Brokers() []string { return e.brokers }

// Applied returns, for each partition this instance holds, the offset of
// the next event to apply: on a fresh topic, the events applied so far.
func (e *Engine) Applied() map[int32]int64 { return e.processor.Reads().Applied() }

// Topics returns the engine's topic names.
func (e *Engine) Topics() stream.Topics { return e.topics }

// Ready reports whether every assigned partition has caught up.
func (e *Engine) Ready() bool { return e.processor != nil && e.processor.Reads().Ready() }

// Close stops everything that was started, within shutdown.timeout
// (shutdown.go); it is safe to call twice.
func (e *Engine) Close() error {
	return e.closeWithin(time.Now().Add(e.shutdown.Timeout))
}

// advertiseAddr returns the HTTP address other instances reach this one
// at: the configured one, else the listener's, with the host name when it
// listens on every interface.
func advertiseAddr(configured string, ln net.Addr) (string, error) {
	if configured != "" {
		return configured, nil
	}
	host, port, err := net.SplitHostPort(ln.String())
	if err != nil {
		return "", fmt.Errorf("listener address %s: %w", ln, err)
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		if host, err = os.Hostname(); err != nil {
			return "", fmt.Errorf("http.advertise is empty and the host name is unknown: %w", err)
		}
	}
	return net.JoinHostPort(host, port), nil
}

// Limits returns the event limits of a configuration.
func Limits(cfg *config.Config) event.Limits {
	l := event.DefaultLimits()
	l.MaxFuture = time.Duration(cfg.Events.MaxFuture)
	l.Oldest = time.Time(cfg.Events.Oldest)
	return l
}

// Compiled is what a configuration's rules compile to: the partition
// store options (aggregates, segments, interests, products, the offers
// whose feedback counts) and the placements and offers decisions use.
type Compiled struct {
	Store        state.Options
	Catalog      *decide.Catalog
	Destinations []deliver.Destination
}

// Compile compiles a configuration's aggregates, segments, placements and
// offers; the error lists every problem found.
func Compile(cfg *config.Config) (Compiled, error) {
	o, err := storeOptions(cfg)
	if err != nil {
		return Compiled{}, err
	}
	placements := make([]decide.PlacementConfig, 0, len(cfg.Placements))
	for name, p := range cfg.Placements {
		placements = append(placements, decide.PlacementConfig{Name: name, Kind: p.Kind, Arbitration: p.Arbitration,
			Count: p.Count, Fallback: p.Fallback, Control: p.Control, Reward: p.Reward, ExcludeBought: p.ExcludeBought, ByInterest: p.ByInterest})
	}
	offers := make([]decide.OfferConfig, 0, len(cfg.Offers))
	for _, of := range cfg.Offers {
		offers = append(offers, decide.OfferConfig{ID: of.ID, Placements: of.Placements, When: of.When, Priority: of.Priority,
			Score: of.Score, Content: json.RawMessage(of.Content), Trusted: of.Trusted, Start: of.Start, End: of.End,
			CapImpressions: of.Cap.Impressions, CapPer: time.Duration(of.Cap.Per),
			Cooldown: time.Duration(of.Cooldown.For), CooldownAfter: of.Cooldown.After})
	}
	cat, err := decide.Compile(placements, offers, o.Segments.Schema())
	if err != nil {
		return Compiled{}, fmt.Errorf("config %s: %w", cfg.Source, err)
	}
	o.Offers = cat.FeedbackIDs()
	dests, err := Destinations(cfg, o.Segments)
	if err != nil {
		return Compiled{}, err
	}
	return Compiled{Store: o, Catalog: cat, Destinations: dests}, nil
}

func storeOptions(cfg *config.Config) (state.Options, error) {
	o := state.DefaultOptions()
	o.MemTableSize = int64(cfg.Store.MemTableSize)
	o.BlockCacheSize = int64(cfg.Store.BlockCacheSize)
	o.CacheProfiles = cfg.Store.CacheProfiles
	o.SyncWrites = cfg.Store.SyncWrites
	o.Changelog = cfg.Store.Changelog
	o.RestoreMemory = int64(cfg.Store.RestoreMemory)
	o.VerifyChecksums = cfg.Store.VerifyChecksums
	o.Dedup = state.Dedup{Horizon: time.Duration(cfg.Store.DedupHorizon), MaxIDs: cfg.Store.DedupIDs}
	o.Retention = time.Duration(cfg.Store.Retention)
	decls := make([]state.AggregateConfig, 0, len(cfg.Aggregates))
	for name, a := range cfg.Aggregates {
		decls = append(decls, state.AggregateConfig{Name: name, Event: a.Event, Where: a.Where, Func: a.Fn, Property: a.Property, Window: time.Duration(a.Window)})
	}
	aggs, err := state.CompileAggregates(decls)
	if err != nil {
		return o, fmt.Errorf("config %s: %w", cfg.Source, err)
	}
	o.Aggregates = aggs
	segs := make([]state.SegmentConfig, 0, len(cfg.Segments))
	for name, rule := range cfg.Segments {
		segs = append(segs, state.SegmentConfig{Name: name, Rule: rule})
	}
	if cfg.RFMSegments {
		segs = append(segs, state.RFMSegments()...)
	}
	o.RFMHorizon, o.RFMRefresh = time.Duration(cfg.RFMHorizon), time.Duration(cfg.RFMRefresh)
	if o.Segments, err = state.CompileSegments(segs, aggs, o.RFMHorizon); err != nil {
		return o, fmt.Errorf("config %s: %w", cfg.Source, err)
	}
	o.Now = cfg.Clock
	o.Traits = state.TraitRules{PhoneRegion: cfg.Traits.PhoneRegion}
	o.Outputs = state.Outputs{Segments: state.Purpose(cfg.Outputs.Segments.Purpose)}
	o.Interests = state.DefaultInterests()
	if i := cfg.Interests; i != nil {
		if len(i.Weights) > 0 {
			o.Interests.Weights = i.Weights
		}
		if i.Property != "" {
			o.Interests.Property = i.Property
		}
		if i.HalfLife > 0 {
			o.Interests.HalfLife = time.Duration(i.HalfLife)
		}
		if i.Max > 0 {
			o.Interests.Max = i.Max
		}
	}
	o.Products = state.DefaultProducts()
	if p := cfg.Products; p != nil {
		if len(p.Weights) > 0 {
			o.Products.Weights = p.Weights
		}
		if p.HalfLife > 0 {
			o.Products.HalfLife = time.Duration(p.HalfLife)
		}
		if p.Max > 0 {
			o.Products.Max = p.Max
		}
	}
	return o, nil
}

// ClientConfig returns the Kafka connection of a configuration, with TLS
// and SASL set up.
func ClientConfig(cfg *config.Config) (stream.ClientConfig, error) {
	c := stream.ClientConfig{Brokers: cfg.Kafka.Brokers, ClientID: cfg.Kafka.ClientID}
	k := cfg.Kafka
	if k.TLS.Enabled || k.TLS.CAFile != "" || k.TLS.CertFile != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: k.TLS.ServerName}
		if k.TLS.CAFile != "" {
			pem, err := os.ReadFile(k.TLS.CAFile)
			if err != nil {
				return c, fmt.Errorf("kafka.tls.ca_file: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return c, fmt.Errorf("kafka.tls.ca_file %s: no PEM certificates in it", k.TLS.CAFile)
			}
		}
		if k.TLS.CertFile != "" || k.TLS.KeyFile != "" {
			cert, err := tls.LoadX509KeyPair(k.TLS.CertFile, k.TLS.KeyFile)
			if err != nil {
				return c, fmt.Errorf("kafka.tls.cert_file/key_file: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		c.TLS = tc
	}
	auth := scram.Auth{User: k.SASL.Username, Pass: k.SASL.Password}
	switch strings.ToUpper(k.SASL.Mechanism) {
	case "":
	case "PLAIN":
		c.SASL = plain.Auth{User: k.SASL.Username, Pass: k.SASL.Password}.AsMechanism()
	case "SCRAM-SHA-256":
		c.SASL = auth.AsSha256Mechanism()
	case "SCRAM-SHA-512":
		c.SASL = auth.AsSha512Mechanism()
	default:
		return c, fmt.Errorf("kafka.sasl.mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", k.SASL.Mechanism)
	}
	return c, nil
}

// NewLogger returns the logger a configuration asks for.
func NewLogger(cfg *config.Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// ErrNoBroker is wrapped when a command that needs a running broker finds none.
var ErrNoBroker = errors.New("no Kafka broker reachable")

// Ping checks that the brokers answer, for commands that produce or
// consume without starting the engine.
func Ping(ctx context.Context, c stream.ClientConfig) error {
	cl, err := kgo.NewClient(c.Opts()...)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.Ping(ctx); err != nil {
		return fmt.Errorf("%w at %s (start tailor first, or pass --brokers): %v", ErrNoBroker, strings.Join(c.Brokers, ","), err)
	}
	return nil
}
