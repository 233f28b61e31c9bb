package engine_test

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/stream"
)

// TestFailoverPause measures, for BENCHMARKS.md, how long the partitions
// of an instance that stops take to serve again on the other, with and
// without a standby replica: two instances share TAILOR_FAILOVER_PROFILES
// customers (a product view and an order each) over 4 partitions; the
// first stops without leaving the group (a static member, as after a
// crash), and once the session timeout passes the second is assigned its
// partitions. The second's log gives each partition's time from its
// assignment to serving (restored whole from the changelog, or caught up
// from its replica). Skipped unless TAILOR_FAILOVER_PROFILES is set.
func TestFailoverPause(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("TAILOR_FAILOVER_PROFILES"))
	if n <= 0 {
		t.Skip("TAILOR_FAILOVER_PROFILES not set")
	}
	events := viewsAndOrders(n)
	for _, standbys := range []int{0, 1} {
		t.Run("standbys="+strconv.Itoa(standbys), func(t *testing.T) {
			brokers, prefix := testkafka.Brokers(t), testkafka.Prefix(t)
			var logs [2]syncBuffer
			var engines [2]*running
			for i, id := range []string{"a", "b"} {
				cfg := testConfig(t, brokers, prefix, t.TempDir())
				cfg.Kafka.InstanceID = id
				cfg.Kafka.Partitions = 4
				cfg.Kafka.StandbyReplicas = standbys
				cfg.Kafka.SessionTimeout = config.Duration(6 * time.Second)
				cfg.Store.MemTableSize = 64 << 20
				engines[i] = startEngineLogging(t, cfg, &logs[i])
			}
			p, err := stream.NewProducer(stream.ClientConfig{Brokers: brokers})
			if err != nil {
				t.Fatal(err)
			}
			stats, err := stream.Import(context.Background(), bytes.NewReader(events.Bytes()), stream.ImportOptions{Producer: p, Topic: engines[0].Topics().Events, Limits: testLimits()})
			p.Close()
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, "every event applied", 5*time.Minute, func() bool {
				return consumed(t, engines[0].url)+consumed(t, engines[1].url) >= stats.Accepted
			})
			if standbys > 0 {
				waitFor(t, "the standby replicas caught up", 2*time.Minute, func() bool {
					return standbyLag(t, engines[1].url) == 0
				})
			}
			before := len(logs[1].String())
			stopped := time.Now()
			engines[0].stop()
			waitFor(t, "b to hold every partition", 2*time.Minute, func() bool {
				return strings.Count(logs[1].String()[before:], `msg="partition assigned"`) > 0 &&
					len(engines[1].Applied()) == 4
			})
			took := time.Since(stopped)
			var pauses []string
			for _, m := range regexp.MustCompile(`msg="partition assigned" partition=(\d+) .*"serving after"=(\S+)`).FindAllStringSubmatch(logs[1].String()[before:], -1) {
				pauses = append(pauses, "partition "+m[1]+": "+m[2])
			}
			restores := regexp.MustCompile(`msg="(restored store from the changelog|caught the store up from the changelog)".*`).FindAllString(logs[1].String()[before:], -1)
			t.Logf("%d profiles over 4 partitions, %d standby replicas: every partition held by b %s after a stopped (session timeout 6 s); assignment to serving: %s; %s",
				n, standbys, took.Round(time.Millisecond), strings.Join(pauses, ", "), strings.Join(restores, "; "))
		})
	}
}

// standbyLag sums an engine's tailor_standby_lag_records gauges; -1 when
// there are none yet.
func standbyLag(t *testing.T, url string) float64 {
	t.Helper()
	resp := do(t, "GET", url+"/metrics", "", nil, nil)
	lag, seen := 0.0, false
	for _, line := range strings.Split(string(resp.Body), "\n") {
		if v, ok := strings.CutPrefix(line, "tailor_standby_lag_records{"); ok {
			f, err := strconv.ParseFloat(v[strings.LastIndexByte(v, ' ')+1:], 64)
			if err != nil {
				t.Fatalf("metrics line %q: %v", line, err)
			}
			lag, seen = lag+f, true
		}
	}
	if !seen {
		return -1
	}
	return lag
}
