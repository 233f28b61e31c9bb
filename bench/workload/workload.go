// Package workload generates synthetic, reproducible e-commerce traffic as
// Segment events: customers with Zipf-distributed activity, anonymous
// visitors, page views, product views over a catalogue with categories,
// add-to-carts, orders and identify calls.
package workload

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"
)

// Config shapes the traffic.
type Config struct {
	Seed      uint64
	Customers int       // distinct known customers
	Products  int       // catalogue size
	Start     time.Time // event time of the first event
	// Step is the event-time gap between consecutive events.
	Step time.Duration
	// AnonymousShare is the share of events from visitors without a userId.
	AnonymousShare float64
}

// DefaultConfig is a mid-sized shop.
func DefaultConfig() Config {
	return Config{
		Seed:           1,
		Customers:      100_000,
		Products:       5_000,
		Start:          time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Step:           10 * time.Millisecond,
		AnonymousShare: 0.2,
	}
}

// Generator produces events. It is not safe for concurrent use.
type Generator struct {
	cfg  Config
	rng  *rand.Rand
	zipf *rand.Zipf
	n    uint64
	t    time.Time
}

// New returns a generator; the same Config gives the same events.
func New(cfg Config) *Generator {
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	return &Generator{
		cfg:  cfg,
		rng:  rng,
		zipf: rand.NewZipf(rng, 1.1, 1, uint64(cfg.Customers-1)),
		t:    cfg.Start,
	}
}

type product struct {
	ProductID string  `json:"product_id"`
	Category  string  `json:"category"`
	Name      string  `json:"name"`
	Price     float64 `json:"price"`
	Quantity  int     `json:"quantity,omitempty"`
}

type message struct {
	Type        string         `json:"type"`
	Event       string         `json:"event,omitempty"`
	Name        string         `json:"name,omitempty"`
	UserID      string         `json:"userId,omitempty"`
	AnonymousID string         `json:"anonymousId,omitempty"`
	MessageID   string         `json:"messageId"`
	Timestamp   string         `json:"timestamp"`
	Properties  map[string]any `json:"properties,omitempty"`
	Traits      map[string]any `json:"traits,omitempty"`
	Context     map[string]any `json:"context"`
}

func (g *Generator) product() product {
	categories := [...]string{"shoes", "dresses", "shirts", "bags", "jewellery", "home", "toys", "beauty", "sport", "books"}
	id := g.rng.IntN(g.cfg.Products)
	return product{
		ProductID: "sku-" + strconv.Itoa(id),
		Category:  categories[id%len(categories)],
		Name:      "Product " + strconv.Itoa(id),
		Price:     float64(5+id%200) - 0.01,
	}
}

// Next returns the next event as JSON and its profile key.
func (g *Generator) Next() (key string, value []byte) {
	g.n++
	g.t = g.t.Add(g.cfg.Step)
	m := message{
		MessageID: "gen-" + strconv.FormatUint(g.cfg.Seed, 36) + "-" + strconv.FormatUint(g.n, 36),
		Timestamp: g.t.Format(time.RFC3339Nano),
		Context: map[string]any{
			"ip":        "203.0.113." + strconv.Itoa(g.rng.IntN(250)),
			"userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0 Safari/537.36",
			"library":   map[string]any{"name": "analytics.js", "version": "5.2.0"},
		},
	}
	customer := int(g.zipf.Uint64())
	if g.rng.Float64() < g.cfg.AnonymousShare {
		m.AnonymousID = "anon-" + strconv.Itoa(customer) + "-" + strconv.Itoa(g.rng.IntN(3))
		key = m.AnonymousID
	} else {
		m.UserID = "user-" + strconv.Itoa(customer)
		key = m.UserID
	}
	switch r := g.rng.Float64(); {
	case r < 0.45:
		p := g.product()
		m.Type, m.Name = "page", "Category"
		m.Properties = map[string]any{"path": "/c/" + p.Category, "category": p.Category}
	case r < 0.75:
		m.Type, m.Event = "track", "Product Viewed"
		m.Properties = productProps(g.product())
	case r < 0.85:
		m.Type, m.Event = "track", "Product Added"
		p := g.product()
		p.Quantity = 1 + g.rng.IntN(3)
		m.Properties = productProps(p)
	case r < 0.90 && m.UserID != "":
		m.Type = "identify"
		m.Traits = map[string]any{
			"email":   fmt.Sprintf("%s@example.com", m.UserID),
			"country": []string{"GB", "FR", "DE", "US", "ES"}[customer%5],
			"age":     18 + customer%60,
		}
	case r < 0.93 && m.UserID != "":
		m.Type, m.Event = "track", "Order Completed"
		items := make([]product, 1+g.rng.IntN(4))
		total := 0.0
		for i := range items {
			items[i] = g.product()
			items[i].Quantity = 1 + g.rng.IntN(2)
			total += items[i].Price * float64(items[i].Quantity)
		}
		m.Properties = map[string]any{"order_id": "o-" + strconv.FormatUint(g.n, 36), "total": total, "currency": "EUR", "products": items}
	default:
		m.Type, m.Event = "track", "Checkout Started"
		m.Properties = map[string]any{"value": float64(g.rng.IntN(300))}
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err) // only plain maps and strings: cannot fail
	}
	return key, b
}

func productProps(p product) map[string]any {
	props := map[string]any{"product_id": p.ProductID, "category": p.Category, "name": p.Name, "price": p.Price}
	if p.Quantity > 0 {
		props["quantity"] = p.Quantity
	}
	return props
}
