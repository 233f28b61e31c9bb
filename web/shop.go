package web

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// shopFiles are the demo shop's templates, stylesheet and script.
//
//go:embed shop
var shopFiles embed.FS

// ShopConfig says where the demo shop's pages find the engine.
type ShopConfig struct {
	// Engine is the engine's base URL as browsers reach it
	// (http://127.0.0.1:8080).
	Engine string
	// WriteKey and DecideKey go into the pages; ReadKey stays on the
	// shop's server, which reads the visitor's segments with it ("": the
	// pages show none).
	WriteKey, DecideKey, ReadKey string
	// AnalyticsJS is the directory of @segment/analytics-next's browser
	// bundle (its dist/umd): the pages load it and send their events
	// through it. "": they send them with tailor.js's own tailor.track.
	AnalyticsJS string
	// Client reads profiles from the engine (nil: a client with a 5 s
	// timeout).
	Client *http.Client
}

// Product is one product of the demo shop.
type Product struct {
	ID       string  `json:"id"`
	Name     string  `json:"name"`
	Category string  `json:"category"`
	Price    float64 `json:"price"`
	Color    string  `json:"color"`
}

// catalogue is the demo shop's stock.
func catalogue() []Product {
	return []Product{
		{"runner-2", "Runner 2", "shoes", 89, "#3d5af1"},
		{"trail-pro", "Trail Pro", "shoes", 129, "#22a06b"},
		{"city-loafer", "City Loafer", "shoes", 99, "#8f5a3c"},
		{"day-pack", "Day Pack", "bags", 59, "#e2543e"},
		{"weekender", "Weekender", "bags", 149, "#5b4bc4"},
		{"wool-socks", "Wool Socks", "accessories", 15, "#f0a500"},
		{"shoe-care-kit", "Shoe Care Kit", "accessories", 25, "#6b7387"},
	}
}

// shop serves the demo shop.
type shop struct {
	cfg      ShopConfig
	pages    map[string]*template.Template
	products []Product
	byID     map[string]Product
	apiHost  string // the engine's host and /v1, analytics.js's apiHost
	protocol string
}

// page is what a page's template reads.
type page struct {
	Title, Engine, WriteKey, DecideKey, APIHost, Protocol string
	AnalyticsJS                                           bool
	Product                                               *Product
	Products                                              []Product
	// Event and Props are the track call the page sends on load ("":
	// only the page call).
	Event string
	Props map[string]any
}

// NewShop returns the demo shop: a home page with the home_hero and
// trending placements, product pages (Product Viewed, product_side,
// also_bought, add to cart), the cart (cart_banner), checkout and order
// pages, each loading tailor.js from the engine (and analytics.js, with
// AnalyticsJS). It reads the sample configuration's placement names.
func NewShop(cfg ShopConfig) (http.Handler, error) {
	u, err := url.Parse(cfg.Engine)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("demo shop: engine address %q: want http://host:port", cfg.Engine)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 5 * time.Second}
	}
	s := &shop{cfg: cfg, pages: map[string]*template.Template{}, products: catalogue(), byID: map[string]Product{},
		apiHost: u.Host + strings.TrimSuffix(u.Path, "/") + "/v1", protocol: u.Scheme}
	for _, p := range s.products {
		s.byID[p.ID] = p
	}
	for _, name := range []string{"home", "product", "cart", "checkout", "order"} {
		t, err := template.ParseFS(shopFiles, "shop/layout.html", "shop/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("demo shop: page %s: %w", name, err)
		}
		s.pages[name] = t
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		s.render(w, "home", page{Title: "Home", Products: s.products})
	})
	mux.HandleFunc("GET /p/{id}", s.product)
	for _, name := range []string{"cart", "checkout", "order"} {
		title := strings.ToUpper(name[:1]) + name[1:]
		mux.HandleFunc("GET /"+name, func(w http.ResponseWriter, r *http.Request) { s.render(w, name, page{Title: title}) })
	}
	mux.HandleFunc("GET /me", s.me)
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	for _, name := range []string{"shop.css", "shop.js"} {
		mux.HandleFunc("GET /"+name, func(w http.ResponseWriter, r *http.Request) { http.ServeFileFS(w, r, shopFiles, "shop/"+name) })
	}
	if cfg.AnalyticsJS != "" {
		files := http.FileServer(http.Dir(cfg.AnalyticsJS))
		mux.Handle("GET /ajs/", http.StripPrefix("/ajs/", files))
		// analytics.js loads its lazy chunks from <cdnURL>/analytics-next/bundles/.
		mux.Handle("GET /analytics-next/bundles/", http.StripPrefix("/analytics-next/bundles/", files))
	}
	return mux, nil
}

func (s *shop) product(w http.ResponseWriter, r *http.Request) {
	p, ok := s.byID[r.PathValue("id")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	s.render(w, "product", page{Title: p.Name, Product: &p, Event: "Product Viewed", Props: map[string]any{
		"product_id": p.ID, "name": p.Name, "category": p.Category, "price": p.Price, "url": "/p/" + p.ID,
	}})
}

func (s *shop) render(w http.ResponseWriter, name string, p page) {
	p.Engine, p.WriteKey, p.DecideKey = s.cfg.Engine, s.cfg.WriteKey, s.cfg.DecideKey
	p.APIHost, p.Protocol, p.AnalyticsJS = s.apiHost, s.protocol, s.cfg.AnalyticsJS != ""
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := s.pages[name].ExecuteTemplate(w, "layout", p); err != nil {
		http.Error(w, "demo shop: "+err.Error(), http.StatusInternalServerError)
	}
}

// me serves GET /me?anonymousId=: the visitor's segments, read from the
// engine's profile API with the read key, which never reaches the page.
func (s *shop) me(w http.ResponseWriter, r *http.Request) {
	segments, err := s.segments(r.Context(), r.URL.Query().Get("anonymousId"))
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusBadGateway)
		json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return
	}
	json.NewEncoder(w).Encode(map[string][]string{"segments": segments})
}

// segments returns the segments of the profile of key, sorted.
func (s *shop) segments(ctx context.Context, key string) ([]string, error) {
	if s.cfg.ReadKey == "" || key == "" {
		return []string{}, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.Engine+"/v1/profiles/"+url.PathEscape(key), nil)
	if err != nil {
		return nil, fmt.Errorf("profile %q: %w", key, err)
	}
	req.SetBasicAuth(s.cfg.ReadKey, "")
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("profile %q: %w", key, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound: // a visitor whose events have not landed yet
		return []string{}, nil
	case resp.StatusCode != http.StatusOK:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("profile %q: %s: %s", key, resp.Status, b)
	}
	var v struct {
		Segments map[string]json.RawMessage `json:"segments"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return nil, fmt.Errorf("profile %q: %w", key, err)
	}
	names := make([]string, 0, len(v.Segments))
	for name := range v.Segments {
		names = append(names, name)
	}
	sort.Strings(names)
	return names, nil
}
