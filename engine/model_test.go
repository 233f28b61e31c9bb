package engine_test

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/money"
	"github.com/tailorcdp/tailor/rules"
	"github.com/tailorcdp/tailor/state"
)

// sampleConfig returns the sample configuration, with extra lines added
// after its "aggregates:" line, set up for a test engine as testConfig
// sets up the defaults.
func sampleConfig(t *testing.T, extraAggregates string) *config.Config {
	t.Helper()
	sample, err := os.ReadFile(filepath.Join("..", "config", "sample.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(string(sample), "\naggregates:\n", "\naggregates:\n"+extraAggregates, 1)
	file := filepath.Join(t.TempDir(), "tailor.yaml")
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	l := config.NewLoader(fs)
	if err := fs.Parse([]string{"--config", file}); err != nil {
		t.Fatal(err)
	}
	cfg, err := l.Load(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	base := testConfig(t, testkafka.Brokers(t), testkafka.Prefix(t), t.TempDir())
	cfg.DataDir, cfg.HTTP, cfg.Kafka, cfg.Embedded, cfg.Store = base.DataDir, base.HTTP, base.Kafka, base.Embedded, base.Store
	return cfg
}

// TestSampleConfigMoney: under the sample configuration, a spec-style
// Order Completed with revenue only counts spend, sums of money are exact
// in the profile API, and a window written in weeks is accepted.
func TestSampleConfigMoney(t *testing.T) {
	cfg := sampleConfig(t, "  orders_2w: {event: Order Completed, fn: count, window: 2w}\n")
	e := startEngine(t, cfg)
	now := time.Now().UTC().Truncate(time.Second)
	var batch []string
	for i := range 300 {
		for j, revenue := range []string{"0.1", "0.2"} {
			batch = append(batch, fmt.Sprintf(`{"type": "track", "userId": "spender", "event": "Order Completed", "timestamp": %q, "properties": {"order_id": "o%d-%d", "revenue": %s}}`,
				now.Add(-time.Duration(i)*time.Minute).Format(time.RFC3339), i, j, revenue))
		}
	}
	// One with total only: read when revenue is absent.
	batch = append(batch, fmt.Sprintf(`{"type": "track", "userId": "spender", "event": "Order Completed", "timestamp": %q, "properties": {"order_id": "t", "total": 5301.21}}`, now.Format(time.RFC3339)))
	if resp := e.post(t, "/v1/batch", `{"batch": [`+strings.Join(batch, ",")+`]}`); resp.Status != http.StatusOK {
		t.Fatalf("batch: %d %s", resp.Status, resp.Body)
	}
	p := e.waitProfile(t, "spender", func(v state.View) bool { return v.Orders.Count == 601 })
	want := money.MustParse("5391.21") // 300 × (0.1 + 0.2) + 5301.21
	if p.Orders.Revenue != want {
		t.Errorf("orders.revenue %s, want %s", p.Orders.Revenue, want)
	}
	if p.Aggregates["spend_365d"] != want.Float64() || p.Aggregates["largest_order"] != 5301.21 || p.Aggregates["orders_2w"] != 601.0 {
		t.Errorf("aggregates spend_365d %v, largest_order %v, orders_2w %v; want %s, 5301.21, 601", p.Aggregates["spend_365d"], p.Aggregates["largest_order"], p.Aggregates["orders_2w"], want)
	}
	if _, in := p.Segments["big_spender"]; !in {
		t.Errorf("segments %v, want big_spender (spend_365d >= 500)", p.Segments)
	}
	// The JSON itself carries the decimals, not float noise.
	resp := do(t, "GET", e.url+"/v1/profiles/spender", readKey, nil, nil)
	for _, field := range []string{`"revenue":5391.21,`, `"spend_365d":5391.21`} {
		if !strings.Contains(string(resp.Body), field) {
			t.Errorf("profile JSON lacks %s: %s", field, resp.Body)
		}
	}
}

// TestRFMScoresAgreeWithSegments: customers order one after the other into
// an empty store, under the standard RFM segments. The first ones, with
// too few customers for quintiles, show no scores and are in no RFM
// segment (they used to land in "lost"); from then on every customer's
// RFM segment is the one its shown scores give, right after its first
// orders, and stays so as the quintiles move (refresh: hourly, so not
// within the test).
func TestRFMScoresAgreeWithSegments(t *testing.T) {
	cfg := testConfig(t, testkafka.Brokers(t), testkafka.Prefix(t), t.TempDir())
	cfg.RFMSegments = true
	e := startEngine(t, cfg)
	now := time.Now().UTC().Truncate(time.Second)
	// Customers come until one shows all three scores: the quintiles the
	// engine evaluates on are recomputed at most once a second, as the
	// population grows.
	scored, customers := false, 0
	for i := 0; !scored; i++ {
		if i == 500 {
			t.Fatalf("%d customers, none shows all three scores", i)
		}
		user := fmt.Sprintf("c%03d", i)
		var batch []string
		// Customer i orders 1 + i%5 times, last i%7 days ago, 10 + 7i each.
		for j := range 1 + i%5 {
			at := now.Add(-time.Duration(i%7)*24*time.Hour - time.Duration(j)*time.Hour)
			batch = append(batch, fmt.Sprintf(`{"type": "track", "userId": %q, "event": "Order Completed", "timestamp": %q, "properties": {"order_id": "%s-%d", "revenue": %d}}`,
				user, at.Format(time.RFC3339), user, j, 10+7*i))
		}
		if resp := e.post(t, "/v1/batch", `{"batch": [`+strings.Join(batch, ",")+`]}`); resp.Status != http.StatusOK {
			t.Fatalf("batch: %d %s", resp.Status, resp.Body)
		}
		v := e.waitProfile(t, user, func(v state.View) bool { return v.Orders.Count == uint64(1+i%5) })
		checkRFMAgrees(t, user, v) // right after its first orders
		if i == 0 && (v.RFM.R != 0 || v.RFM.F != 0 || v.RFM.M != 0) {
			t.Errorf("the first customer, alone: RFM %+v, want no scores", v.RFM)
		}
		scored, customers = v.RFM.R != 0 && v.RFM.F != 0 && v.RFM.M != 0, i+1
	}
	t.Logf("customer %d is the first to show all three scores", customers)
	// Read again later: still in agreement, the first still without
	// scores (nothing of its own happened, and no refresh yet).
	for i := range customers {
		user := fmt.Sprintf("c%03d", i)
		v, _ := e.profile(t, user)
		checkRFMAgrees(t, user, v)
		if i == 0 && (v.RFM.R != 0 || len(v.Segments) != 0) {
			t.Errorf("the first customer, read again: RFM %+v, segments %v; want no scores, no segment", v.RFM, v.Segments)
		}
	}
}

// checkRFMAgrees checks that a profile's RFM segments are those that the
// standard RFM segment rules give on the scores the profile shows.
func checkRFMAgrees(t *testing.T, user string, v state.View) {
	t.Helper()
	if v.RFM == nil {
		t.Fatalf("%s: no RFM after its orders", user)
	}
	want := rfmSegmentsOf([3]float64{v.RFM.R, v.RFM.F, v.RFM.M})
	var got []string
	for _, seg := range state.RFMSegments() {
		if _, in := v.Segments[seg.Name]; in {
			got = append(got, seg.Name)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s shows r %v f %v m %v and is in %v; those scores give %v", user, v.RFM.R, v.RFM.F, v.RFM.M, got, want)
	}
}

// rfmSegmentsOf evaluates the standard RFM segment rules on scores (0:
// absent), in their order.
func rfmSegmentsOf(scores [3]float64) []string {
	decls := state.RFMSegments()
	schema := &rules.Schema{}
	for _, d := range decls {
		schema.Segments = append(schema.Segments, d.Name)
	}
	env := &scoreEnv{scores: scores, in: make([]bool, len(decls))}
	var in []string
	for i, d := range decls { // each reads only segments listed before it
		r, err := rules.Compile(d.Name, d.Rule, schema, rules.TypeBool)
		if err != nil {
			panic(err)
		}
		if env.in[i] = r.Match(env); env.in[i] {
			in = append(in, d.Name)
		}
	}
	return in
}

// scoreEnv is a profile with RFM scores and segment memberships only.
type scoreEnv struct {
	scores [3]float64
	in     []bool
}

func (e *scoreEnv) Now() time.Time                     { return time.Time{} }
func (e *scoreEnv) Trait(string) rules.Value           { return rules.Value{} }
func (e *scoreEnv) Property([]string) rules.Value      { return rules.Value{} }
func (e *scoreEnv) Context([]string) rules.Value       { return rules.Value{} }
func (e *scoreEnv) Aggregate(int) (float64, bool)      { return 0, false }
func (e *scoreEnv) LastEvent(string) (time.Time, bool) { return time.Time{}, false }
func (e *scoreEnv) Interest(string) float64            { return 0 }
func (e *scoreEnv) Segment(i int) bool                 { return e.in[i] }
func (e *scoreEnv) Consent(string) bool                { return false }
func (e *scoreEnv) RFM(field int) (float64, bool) {
	if field < 3 {
		return e.scores[field], e.scores[field] != 0
	}
	return 0, false
}
