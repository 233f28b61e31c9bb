package engine_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tailorcdp/tailor/state"
)

// scrape returns the samples of /metrics: each series (name and labels,
// as written) with its value.
func scrape(t testing.TB, url string) map[string]string {
	t.Helper()
	resp := do(t, "GET", url+"/metrics", "", nil, nil)
	if resp.Status != http.StatusOK {
		t.Fatalf("GET /metrics: %d", resp.Status)
	}
	out := make(map[string]string)
	sc := bufio.NewScanner(bytes.NewReader(resp.Body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		out[line[:i]] = line[i+1:]
	}
	return out
}

// TestOperationalMetrics: /metrics carries tailor_build_info, franz-go's
// client metrics for the producer and the group consumer (kprom), and the
// Badger sizes of each partition store held.
func TestOperationalMetrics(t *testing.T) {
	e := newEngine(t)
	for i := range 20 {
		e.post(t, "/v1/track", fmt.Sprintf(`{"type": "track", "userId": "m%d", "event": "Viewed"}`, i))
	}
	e.waitProfile(t, "m19", func(v state.View) bool { return v.Calls["track"] == 1 })
	samples := scrape(t, e.url)
	has := func(prefix string) bool {
		for series := range samples {
			if strings.HasPrefix(series, prefix) {
				return true
			}
		}
		return false
	}
	for _, want := range []string{
		`tailor_build_info{goversion="go`,
		`tailor_kafka_connects_total{client="producer"`,
		`tailor_kafka_connects_total{client="consumer"`,
		`tailor_kafka_produce_bytes_total{client="producer"`,
		`tailor_kafka_fetch_bytes_total{client="consumer"`,
		`tailor_kafka_request_duration_e2e_seconds_bucket{client="producer"`,
		`tailor_store_lsm_bytes{partition="0"}`,
		`tailor_store_vlog_bytes{partition="5"}`,
	} {
		if !has(want) {
			t.Errorf("/metrics has no series starting %s", want)
		}
	}
	// The value log holds what was written: not empty.
	var vlog float64
	for p := range 6 {
		var v float64
		fmt.Sscan(samples[fmt.Sprintf(`tailor_store_vlog_bytes{partition="%d"}`, p)], &v)
		vlog += v
	}
	if vlog == 0 {
		t.Errorf("tailor_store_vlog_bytes is 0 for every partition after 20 events")
	}
}
