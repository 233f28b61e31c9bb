package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/engine"
	"github.com/tailorcdp/tailor/web"
)

// ajsCache is where scripts/test.sh puts @segment/analytics-next's browser
// bundle (from npm), relative to the repository: the demo's default
// --analytics-js when it is there.
const ajsCache = ".cache/npm/analytics-next-1.84.1/package/dist/umd"

// demoDecideKey is the decide key the demo adds when the configuration
// has none.
const demoDecideKey = "dev-decide-key"

func demoCommand() *command {
	var shopAddr, ajs *string
	return &command{
		name:    "demo",
		summary: "run the engine and a demo shop whose pages show tailor.js at work (open the address it prints)",
		flags: func(fs *flag.FlagSet) {
			shopAddr = fs.String("shop-addr", "127.0.0.1:8081", "address of the demo shop")
			ajs = fs.String("analytics-js", defaultAnalyticsJS(), "directory of @segment/analytics-next's browser bundle (dist/umd) for the shop's pages; empty: they send events with tailor.js's tailor.track")
		},
		run: func(ctx context.Context, cfg *config.Config, _ *flag.FlagSet, stdout, _ io.Writer) error {
			return runDemo(ctx, cfg, *shopAddr, *ajs, stdout)
		},
	}
}

// defaultAnalyticsJS returns ajsCache when it holds the bundle, else "".
func defaultAnalyticsJS() string {
	if _, err := os.Stat(filepath.Join(ajsCache, "index.js")); err == nil {
		return ajsCache
	}
	return ""
}

// runDemo runs the engine of cfg with the demo shop beside it on
// shopAddr, until ctx ends. The shop's origin is added to the CORS
// origins, and a decide key when cfg has none; the shop uses cfg's first
// write and read keys.
func runDemo(ctx context.Context, cfg *config.Config, shopAddr, ajs string, stdout io.Writer) error {
	if len(cfg.HTTP.WriteKeys) == 0 || len(cfg.HTTP.ReadKeys) == 0 {
		return errors.New("the demo needs a write key and a read key (--write-keys, --read-keys)")
	}
	if ajs != "" {
		if _, err := os.Stat(filepath.Join(ajs, "index.js")); err != nil {
			return fmt.Errorf("--analytics-js %s: no index.js there (want analytics-next's dist/umd): %w", ajs, err)
		}
	}
	ln, err := net.Listen("tcp", shopAddr)
	if err != nil {
		return fmt.Errorf("demo shop: listen on %s: %w", shopAddr, err)
	}
	defer ln.Close()
	shopURL := browserURL(ln.Addr())
	cfg.HTTP.CORSOrigins = append(cfg.HTTP.CORSOrigins, shopURL)
	if a, ok := ln.Addr().(*net.TCPAddr); ok && a.IP.IsLoopback() {
		cfg.HTTP.CORSOrigins = append(cfg.HTTP.CORSOrigins, fmt.Sprintf("http://localhost:%d", a.Port))
	}
	if len(cfg.HTTP.DecideKeys) == 0 {
		cfg.HTTP.DecideKeys = config.NewKeys(demoDecideKey)
	}
	log := engine.NewLogger(cfg)
	e, err := engine.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	tcp, err := net.ResolveTCPAddr("tcp", e.HTTPAddr())
	if err != nil {
		e.Close()
		return fmt.Errorf("engine address %s: %w", e.HTTPAddr(), err)
	}
	shop, err := web.NewShop(web.ShopConfig{Engine: browserURL(tcp), WriteKey: cfg.HTTP.WriteKeys[0].Secret,
		DecideKey: cfg.HTTP.DecideKeys[0].Secret, ReadKey: cfg.HTTP.ReadKeys[0].Secret, AnalyticsJS: ajs})
	if err != nil {
		e.Close()
		return err
	}
	srv := &http.Server{Handler: shop, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	events := "analytics.js from " + ajs
	if ajs == "" {
		events = "tailor.js's tailor.track (no analytics.js: see --analytics-js)"
	}
	// The address line is for people and for tests that start on port 0.
	fmt.Fprintf(stdout, "demo shop: %s (engine %s; events sent with %s)\n", shopURL, browserURL(tcp), events)
	runErr := e.Run(ctx)
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		log.Warn("demo shop shutdown", "err", err)
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return errors.Join(runErr, fmt.Errorf("demo shop: %w", err))
	}
	return runErr
}

// browserURL is the http URL a browser on this machine reaches addr at:
// an unspecified address (0.0.0.0, ::) as 127.0.0.1.
func browserURL(addr net.Addr) string {
	a, ok := addr.(*net.TCPAddr)
	if !ok {
		return "http://" + addr.String()
	}
	host := a.IP.String()
	if a.IP == nil || a.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, fmt.Sprint(a.Port))
}
