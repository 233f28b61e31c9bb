package workload

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"time"
)

// Config shapes the traffic. The same Config gives the same events.
type Config struct {
	Seed      uint64
	Customers int // distinct known customers
	Products  int // catalogue size
	// Start is the event time of the first session; Step is the time
	// between the starts of consecutive sessions, and events within a
	// session are seconds apart.
	Start time.Time
	Step  time.Duration
	// CustomerSkew is the Zipf exponent of customer activity (> 1).
	CustomerSkew float64
	// AnonymousShare is the share of sessions by visitors who are not
	// logged in (each with a fresh anonymousId); IdentifyShare of those
	// identify during the session.
	AnonymousShare float64
	IdentifyShare  float64
	// Devices is how many devices a customer uses when logged in: their
	// sessions carry the anonymousId that device's SDK keeps (the first
	// device in about half of the sessions, the next in half of the rest,
	// ...). 0 gives every session its own anonymousId.
	Devices int
	// The funnel: the chance that a product view leads to an add-to-cart,
	// that a session with a cart starts a checkout, and that a checkout
	// completes an order.
	AddToCartRate float64
	CheckoutRate  float64
	OrderRate     float64
}

// EndingNow sets Start so that the sessions of about n events start in
// the last minutes and end about now, as a live stream's do (the default
// funnel gives about six events a session).
func (c *Config) EndingNow(n int) {
	const eventsPerSession = 6
	c.Start = time.Now().Add(-time.Duration(n/eventsPerSession) * c.Step)
}

// DefaultConfig is a mid-sized shop with typical funnel rates.
func DefaultConfig() Config {
	return Config{
		Seed:           1,
		Customers:      100_000,
		Products:       5_000,
		Start:          time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Step:           10 * time.Millisecond,
		CustomerSkew:   1.1,
		AnonymousShare: 0.3,
		IdentifyShare:  0.2,
		Devices:        3,
		AddToCartRate:  0.12,
		CheckoutRate:   0.5,
		OrderRate:      0.6,
	}
}

// Categories are the catalogue's categories; product i is in category
// i mod len(Categories).
func Categories() []string {
	return []string{"shoes", "dresses", "shirts", "bags", "jewellery", "home", "toys", "beauty", "sport", "books"}
}

// Generator produces events. It is not safe for concurrent use.
type Generator struct {
	cfg        Config
	rng        *rand.Rand
	customers  *rand.Zipf
	products   *rand.Zipf
	categories []string
	sessions   uint64
	messages   uint64
	queue      []Event
}

// Event is one generated event: its profile key (the userId when it has
// one, else the anonymousId) and its JSON.
type Event struct {
	Key   string
	Value []byte
}

// New returns a generator.
func New(cfg Config) *Generator {
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	return &Generator{
		cfg:        cfg,
		rng:        rng,
		customers:  rand.NewZipf(rng, cfg.CustomerSkew, 1, uint64(max(cfg.Customers, 2)-1)),
		products:   rand.NewZipf(rng, 1.2, 4, uint64(max(cfg.Products, 2)-1)),
		categories: Categories(),
	}
}

// Next returns the next event.
func (g *Generator) Next() (key string, value []byte) {
	for len(g.queue) == 0 {
		g.session()
	}
	ev := g.queue[0]
	g.queue = g.queue[1:]
	return ev.Key, ev.Value
}

type product struct {
	ProductID string  `json:"product_id"`
	Category  string  `json:"category"`
	Name      string  `json:"name"`
	Price     float64 `json:"price"`
	Quantity  int     `json:"quantity,omitempty"`
}

// Product returns catalogue item i.
func (g *Generator) product(i int) product {
	return product{
		ProductID: "sku-" + strconv.Itoa(i),
		Category:  g.categories[i%len(g.categories)],
		Name:      "Product " + strconv.Itoa(i),
		Price:     float64(5+(i*37)%200) - 0.01,
	}
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

// session queues the events of one visit.
func (g *Generator) session() {
	g.sessions++
	start := g.cfg.Start.Add(time.Duration(g.sessions) * g.cfg.Step)
	t := start
	customer := int(g.customers.Uint64())
	userID := "user-" + strconv.Itoa(customer)
	anonymousID := "anon-" + strconv.FormatUint(g.cfg.Seed, 36) + "-" + strconv.FormatUint(g.sessions, 36)
	identifyAt := -1
	loggedIn := true
	if g.cfg.Devices > 0 {
		device := min(g.geometric(0.5), g.cfg.Devices-1)
		anonymousID = "anon-" + strconv.FormatUint(g.cfg.Seed, 36) + "-c" + strconv.Itoa(customer) + "-" + strconv.Itoa(device)
	}
	if g.rng.Float64() < g.cfg.AnonymousShare {
		anonymousID = "anon-" + strconv.FormatUint(g.cfg.Seed, 36) + "-" + strconv.FormatUint(g.sessions, 36)
		loggedIn = false
		if g.rng.Float64() < g.cfg.IdentifyShare {
			identifyAt = 1 + g.rng.IntN(3) // after a few events
		}
	}
	ctx := map[string]any{
		"ip":        "203.0.113." + strconv.Itoa(g.rng.IntN(250)),
		"userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0 Safari/537.36",
		"library":   map[string]any{"name": "analytics.js", "version": "5.2.0"},
	}
	emit := func(m message) {
		g.messages++
		t = t.Add(time.Duration(1+g.rng.IntN(20)) * time.Second)
		m.MessageID = "gen-" + strconv.FormatUint(g.cfg.Seed, 36) + "-" + strconv.FormatUint(g.messages, 36)
		m.Timestamp = t.Format(time.RFC3339Nano)
		m.Context = ctx
		m.AnonymousID = anonymousID
		key := anonymousID
		if loggedIn {
			m.UserID, key = userID, userID
		}
		b, err := json.Marshal(m)
		if err != nil {
			panic(err) // plain maps, strings and numbers: cannot fail
		}
		g.queue = append(g.queue, Event{Key: key, Value: b})
	}
	identify := func() {
		loggedIn = true
		emit(message{Type: "identify", Traits: map[string]any{
			"email":   userID + "@example.com",
			"country": []string{"GB", "FR", "DE", "US", "ES"}[customer%5],
			"age":     18 + customer%60,
		}})
	}
	if loggedIn && g.rng.Float64() < 0.1 {
		identify() // now and then a logged-in visit refreshes traits
	}

	var cart []product
	pages := 1 + g.geometric(0.25)
	for i := 0; i < pages; i++ {
		if i == identifyAt {
			identify()
		}
		p := g.product(int(g.products.Uint64()))
		if g.rng.Float64() < 0.4 {
			emit(message{Type: "page", Name: "Category", Properties: map[string]any{"path": "/c/" + p.Category, "category": p.Category}})
			continue
		}
		emit(message{Type: "track", Event: "Product Viewed", Properties: productProps(p)})
		if g.rng.Float64() < g.cfg.AddToCartRate {
			p.Quantity = 1 + g.rng.IntN(3)
			cart = append(cart, p)
			emit(message{Type: "track", Event: "Product Added", Properties: productProps(p)})
		}
	}
	if len(cart) == 0 || g.rng.Float64() >= g.cfg.CheckoutRate {
		return
	}
	total := 0.0
	for _, p := range cart {
		total += p.Price * float64(p.Quantity)
	}
	emit(message{Type: "track", Event: "Checkout Started", Properties: map[string]any{"value": total, "currency": "EUR", "products": cart}})
	if g.rng.Float64() >= g.cfg.OrderRate {
		return
	}
	if !loggedIn {
		identify() // checking out means logging in
	}
	emit(message{Type: "track", Event: "Order Completed", Properties: map[string]any{
		"order_id": "o-" + strconv.FormatUint(g.cfg.Seed, 36) + "-" + strconv.FormatUint(g.sessions, 36),
		"total":    total, "currency": "EUR", "products": cart,
	}})
}

// geometric returns the number of failures before a success of chance p.
func (g *Generator) geometric(p float64) int {
	n := 0
	for g.rng.Float64() >= p && n < 100 {
		n++
	}
	return n
}

func productProps(p product) map[string]any {
	props := map[string]any{"product_id": p.ProductID, "category": p.Category, "name": p.Name, "price": p.Price}
	if p.Quantity > 0 {
		props["quantity"] = p.Quantity
	}
	return props
}
