package engine_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/state"
	"github.com/tailorcdp/tailor/stream"
)

// TestConsentOnOutputs: with outputs.segments.purpose set, the segments
// topic carries the changes of the profiles whose latest choice grants
// the purpose as each change is made: not those who refused, never chose,
// granted another purpose, or withdrew (the change made by the event that
// withdraws is withheld too); each withheld change is counted, and the
// segment sizes still count everyone. A reload without the purpose
// writes every profile's changes again.
func TestConsentOnOutputs(t *testing.T) {
	cfg := testConfig(t, testkafka.Brokers(t), testkafka.Prefix(t), t.TempDir())
	segments := "  vip: 'traits.plan == \"vip\"'\n  gold: 'traits.tier == \"gold\"'\n"
	withPurpose := configDoc(segments) + "outputs:\n  segments:\n    purpose: Marketing\n"
	file := filepath.Join(t.TempDir(), "tailor.yaml")
	if err := os.WriteFile(file, []byte(withPurpose), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Source = file
	cfg.HTTP.AdminKeys = config.NewKeys(adminKey)
	cfg.Segments = map[string]string{"vip": `traits.plan == "vip"`, "gold": `traits.tier == "gold"`}
	cfg.Outputs.Segments.Purpose = "Marketing"
	e := startEngine(t, cfg)
	post := func(body string) {
		t.Helper()
		if r := e.post(t, "/v1/batch", `{"batch": [`+body+`]}`); r.Status != http.StatusOK {
			t.Fatalf("batch: %d %s", r.Status, r.Body)
		}
	}
	post(`{"type": "identify", "userId": "granted", "traits": {"plan": "vip"}, "context": {"consent": {"categoryPreferences": {"Marketing": true}}}},
	  {"type": "identify", "userId": "refused", "traits": {"plan": "vip"}, "context": {"consent": {"categoryPreferences": {"Marketing": false}}}},
	  {"type": "identify", "userId": "silent", "traits": {"plan": "vip"}},
	  {"type": "identify", "userId": "other", "traits": {"plan": "vip"}, "context": {"consent": {"categoryPreferences": {"Advertising": true, "Marketing": "yes"}}}},
	  {"type": "identify", "userId": "revoker", "traits": {"plan": "vip"}, "context": {"consent": {"categoryPreferences": {"Marketing": true}}}}`)
	for _, key := range []string{"granted", "refused", "silent", "other", "revoker"} {
		e.waitProfile(t, key, func(v state.View) bool { _, in := v.Segments["vip"]; return in })
	}
	// The revoker withdraws in the event that makes them gold; the
	// granted customer's later event carries no choice: theirs stands.
	post(`{"type": "identify", "userId": "revoker", "traits": {"tier": "gold"}, "context": {"consent": {"categoryPreferences": {"Marketing": false}}}},
	  {"type": "identify", "userId": "granted", "traits": {"tier": "gold"}}`)
	for _, key := range []string{"granted", "revoker"} {
		e.waitProfile(t, key, func(v state.View) bool { _, in := v.Segments["gold"]; return in })
	}

	const withheld = `tailor_outputs_withheld_total{output="segments"}`
	if n := metricValue(t, e.url, withheld); n != 4 {
		t.Errorf("%s %v, want 4 (refused, silent, other enter vip; revoker enters gold)", withheld, n)
	}
	resp := do(t, "GET", e.url+"/v1/segments", readKey, nil, nil)
	var sizes struct {
		Segments []struct {
			Name string
			Size int64
		}
	}
	resp.json(t, &sizes)
	for _, s := range sizes.Segments {
		if want := map[string]int64{"vip": 5, "gold": 2}[s.Name]; s.Size != want {
			t.Errorf("segment %s: size %d, want %d (everyone)", s.Name, s.Size, want)
		}
	}
	written := func(n int) []string {
		t.Helper()
		var got []string
		for _, r := range testkafka.Consume(t, cfg.Kafka.Brokers, e.Topics().Segments, n, 5*time.Second) {
			var c stream.SegmentChange
			if err := json.Unmarshal(r.Value, &c); err != nil {
				t.Fatal(err)
			}
			got = append(got, c.Key+" "+c.Change+" "+c.Segment)
		}
		slices.Sort(got)
		return got
	}
	want := []string{"granted entered gold", "granted entered vip", "revoker entered vip"}
	if got := written(len(want) + 1); !slices.Equal(got, want) {
		t.Errorf("segment records:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Without the purpose, every profile's changes are written again.
	r := do(t, "PUT", e.url+"/v1/admin/config", adminKey, []byte(configDoc(segments)), map[string]string{"Content-Type": "application/yaml"})
	if r.Status != http.StatusOK {
		t.Fatalf("reload: %d %s", r.Status, r.Body)
	}
	post(`{"type": "identify", "userId": "refused", "traits": {"tier": "gold"}}`)
	want = append(want, "refused entered gold")
	slices.Sort(want)
	if got := written(len(want)); !slices.Equal(got, want) {
		t.Errorf("segment records after the reload:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := metricValue(t, e.url, withheld); n != 4 {
		t.Errorf("%s %v after the reload, want still 4", withheld, n)
	}
}
