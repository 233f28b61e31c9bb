package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/deliver"
	"github.com/tailorcdp/tailor/state"
	"github.com/tailorcdp/tailor/stream"
)

// Destinations returns the delivery destinations of a configuration,
// checking that they name configured segments (segments: the compiled
// ones).
func Destinations(cfg *config.Config, segments *state.Segments) ([]deliver.Destination, error) {
	known := map[string]bool{}
	for _, s := range segments.List() {
		known[s.Name] = true
	}
	if err := config.ValidateDestinationSegments(cfg.Destinations, func(s string) bool { return known[s] }); err != nil {
		return nil, fmt.Errorf("config %s: %w", cfg.Source, err)
	}
	names := make([]string, 0, len(cfg.Destinations))
	for name := range cfg.Destinations {
		names = append(names, name)
	}
	sort.Strings(names)
	out := make([]deliver.Destination, 0, len(names))
	for _, name := range names {
		out = append(out, Destination(name, cfg.Destinations[name]))
	}
	return out, nil
}

// Destination returns one configured destination as package deliver
// takes it, with the defaults filled in.
func Destination(name string, c config.Destination) deliver.Destination {
	c = c.WithDefaults()
	w := c.Webhook
	d := deliver.Destination{
		Name: name, Segments: c.Segments, Purpose: state.Purpose(c.Purpose),
		MaxAttempts: c.MaxAttempts, MaxAge: time.Duration(c.MaxAge),
	}
	for _, f := range c.Fields {
		switch f {
		case "traits":
			d.Fields.Traits = true
		case "aggregates":
			d.Fields.Aggregates = true
		case "rfm":
			d.Fields.RFM = true
		}
	}
	if w != nil {
		d.URL, d.Secret, d.Headers = w.URL, []byte(w.Secret), w.Headers
		d.Timeout, d.BatchSize = time.Duration(w.Timeout), w.BatchSize
		d.Rate, d.Burst = w.RateLimit.PerSecond, w.RateLimit.Burst
	}
	return d
}

// startDeliverer creates the delivery consumer of the segments topic.
func (e *Engine) startDeliverer(cfg *config.Config, ds []deliver.Destination, reg prometheus.Registerer) error {
	c, err := ClientConfig(cfg)
	if err != nil {
		return err
	}
	c.Brokers = e.brokers
	e.deliverer, err = deliver.New(deliver.Config{
		Client:          c.Opts(),
		Group:           cfg.Kafka.Group + "-deliver",
		InstanceID:      cfg.Kafka.InstanceID,
		SessionTimeout:  time.Duration(cfg.Kafka.SessionTimeout),
		Topic:           e.topics.Segments,
		DeadLetterTopic: e.topics.DeliverDeadLetter,
		EventsTopic:     e.topics.Events,
		Profiles:        &deliverProfiles{reads: e.processor.Reads(), url: "http://" + e.ln.Addr().String(), readKey: cfg.HTTP.ReadKeys[0].Secret, client: &http.Client{Timeout: 10 * time.Second}},
		Logger:          e.log,
		Registerer:      reg,
	}, ds)
	return err
}

// deliverProfiles reads profiles for the destinations: from the stores
// here, else (a partition another instance holds, or a profile merged
// into one held there) through this instance's own profile API, which
// sends the read on to the holder.
type deliverProfiles struct {
	reads   stream.Reads
	url     string // this instance's HTTP API
	readKey string
	client  *http.Client
}

// Profile implements deliver.Profiles.
func (d *deliverProfiles) Profile(ctx context.Context, key string, view bool) (deliver.Profile, error) {
	p, err := d.reads.Profile(key)
	var merged *state.MergedError
	switch {
	case errors.Is(err, stream.ErrNotOwned), errors.As(err, &merged):
		return d.remote(ctx, key)
	case err != nil:
		return deliver.Profile{}, err
	}
	out := deliver.Profile{Allows: func(pu state.Purpose) bool { return pu.Allows(p) }}
	if view {
		if out.View, err = d.reads.ProfileView(key); err != nil {
			return deliver.Profile{}, err
		}
	}
	return out, nil
}

// remote reads key's profile through the profile API.
func (d *deliverProfiles) remote(ctx context.Context, key string) (deliver.Profile, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url+"/v1/profiles/"+url.PathEscape(key), nil)
	if err != nil {
		return deliver.Profile{}, err
	}
	req.SetBasicAuth(d.readKey, "")
	resp, err := d.client.Do(req)
	if err != nil {
		return deliver.Profile{}, fmt.Errorf("read profile %q from its holder: %w", key, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return deliver.Profile{}, state.ErrNotFound
	default:
		return deliver.Profile{}, fmt.Errorf("read profile %q from its holder: answered %s", key, resp.Status)
	}
	var v state.View
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return deliver.Profile{}, fmt.Errorf("read profile %q from its holder: %w", key, err)
	}
	// The view's consent is each purpose's latest choice, as
	// state.Purpose.Allows reads it.
	return deliver.Profile{View: v, Allows: func(pu state.Purpose) bool { return pu == "" || v.Consent[string(pu)] }}, nil
}

// Applied implements deliver.Profiles.
func (d *deliverProfiles) Applied() map[int32]int64 { return d.reads.Applied() }

// destinationStats serves GET /v1/destinations.
func (e *Engine) destinationStats(context.Context) (any, error) {
	stats := e.deliverer.Stats()
	if stats == nil {
		stats = []deliver.Stats{}
	}
	return map[string]any{"destinations": stats}, nil
}

// destinationChanges names the destinations a reload adds, changes and
// removes.
func destinationChanges(before, after map[string]config.Destination) Changes {
	fp := func(m map[string]config.Destination) map[string]string {
		out := make(map[string]string, len(m))
		for name, d := range m {
			out[name] = fmt.Sprintf("%+v %+v", d, d.Webhook)
		}
		return out
	}
	return diff(fp(before), fp(after))
}
