package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/tailorcdp/tailor/config"
)

// probeCommand asks a running engine's /readyz (or /healthz), for
// container health checks in images that have no HTTP client but tailor.
func probeCommand() *command {
	var live bool
	var timeout time.Duration
	return &command{
		name:    "probe",
		summary: "ask the engine at --http-addr for /readyz (--live: /healthz); exit 0 on 200, 1 otherwise (container health checks)",
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&live, "live", false, "ask /healthz (the process is up) rather than /readyz")
			fs.DurationVar(&timeout, "timeout", 3*time.Second, "how long to wait for the answer")
		},
		run: func(ctx context.Context, cfg *config.Config, _ *flag.FlagSet, stdout, _ io.Writer) error {
			url, err := probeURL(cfg.HTTP.Addr, live)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("GET %s: %w", url, err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET %s: %s %s", url, resp.Status, body)
			}
			fmt.Fprintf(stdout, "%s\n", body)
			return nil
		},
	}
}

// probeURL returns the URL of the probe on the engine listening on addr:
// an address on every interface is asked on loopback.
func probeURL(addr string, live bool) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("http.addr %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	path := "/readyz"
	if live {
		path = "/healthz"
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}
