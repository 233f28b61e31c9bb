package deploy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/engine"
	"github.com/tailorcdp/tailor/internal/testkafka"
)

// startEngine starts an engine of group prefix on brokers with its own
// data directory; t's end stops it.
func startEngine(t *testing.T, brokers []string, prefix string) *engine.Engine {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.HTTP.WriteKeys = config.NewKeys("w")
	cfg.HTTP.ReadKeys = config.NewKeys("r")
	cfg.Kafka.Brokers = brokers
	cfg.Kafka.TopicPrefix = prefix
	cfg.Kafka.Group = prefix + "engine"
	cfg.Kafka.Partitions = 4
	cfg.Store.MemTableSize = 4 << 20
	cfg.Store.BlockCacheSize = 4 << 20
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e, err := engine.Start(ctx, &cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		t.Fatalf("start engine: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

func get(t *testing.T, url, key string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.SetBasicAuth(key, "")
	}
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(90 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// scrapeSeries returns the series (name and labels as written) of an
// engine's /metrics.
func scrapeSeries(t *testing.T, e *engine.Engine) []string {
	t.Helper()
	code, body := get(t, "http://"+e.HTTPAddr()+"/metrics", "")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	var out []string
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if line := sc.Text(); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line[:strings.LastIndexByte(line, ' ')])
		}
	}
	return out
}

// dashboardQueries returns every PromQL expression of a Grafana dashboard.
func dashboardQueries(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var exprs []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && k == "expr" {
					exprs = append(exprs, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(v)
	return exprs
}

// metricRef is a metric name in a query (PromQL functions and label names
// are lower case words too, but not of these prefixes).
var metricRef = regexp.MustCompile(`\b(?:tailor|go|process)_[a-z0-9_]+\b`)

// TestDashboardMetrics: every metric the Grafana dashboard queries is one
// live engines export. Two engines share a group so that the second
// restores partitions from the changelog, and events, profile reads and
// decide calls have gone through: the series that appear only once
// something happened are there.
func TestDashboardMetrics(t *testing.T) {
	exprs := dashboardQueries(t, filepath.Join("grafana", "dashboards", "tailor.json"))
	if len(exprs) < 10 {
		t.Fatalf("%d queries in the dashboard; want its panels", len(exprs))
	}
	brokers, prefix := testkafka.Brokers(t), testkafka.Prefix(t)
	a := startEngine(t, brokers, prefix)
	url := "http://" + a.HTTPAddr()
	waitFor(t, "the first engine to be ready", func() bool { c, _ := get(t, url+"/readyz", ""); return c == http.StatusOK })
	for i := range 40 {
		body := fmt.Sprintf(`{"type": "track", "userId": "d%d", "event": "Viewed"}`, i)
		req, _ := http.NewRequest(http.MethodPost, url+"/v1/track", strings.NewReader(body))
		req.SetBasicAuth("w", "")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	waitFor(t, "the events to be applied", func() bool { c, _ := get(t, url+"/v1/profiles/d39", "r"); return c == http.StatusOK })
	get(t, url+"/v1/decide?placement=none", "r")
	b := startEngine(t, brokers, prefix)
	waitFor(t, "the partitions to be shared", func() bool {
		return len(b.Applied()) > 0 && len(a.Applied()) > 0 && a.Ready() && b.Ready()
	})

	// Lag is read every 2 s (stream's LagInterval).
	waitFor(t, "the consumer lag to be read", func() bool {
		for _, s := range scrapeSeries(t, b) {
			if strings.HasPrefix(s, "tailor_consumer_lag{") {
				return true
			}
		}
		return false
	})
	names, series := map[string]bool{}, map[string]bool{}
	for _, e := range []*engine.Engine{a, b} {
		for _, s := range scrapeSeries(t, e) {
			series[s] = true
			name, _, _ := strings.Cut(s, "{")
			names[name] = true
		}
	}
	var missing []string
	for _, expr := range exprs {
		for _, name := range metricRef.FindAllString(expr, -1) {
			if !names[name] {
				missing = append(missing, name)
			}
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		t.Errorf("the dashboard queries metrics the engines do not export: %v", missing)
	}
	// The label values the dashboard selects on exist.
	for _, want := range []string{`route="/v1/decide"`} {
		found := false
		for s := range series {
			found = found || strings.Contains(s, want)
		}
		if !found {
			t.Errorf("no series has %s", want)
		}
	}
}
