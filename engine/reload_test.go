package engine_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/engine"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/serve"
	"github.com/tailorcdp/tailor/state"
	"github.com/tailorcdp/tailor/stream"
)

const adminKey = "test-admin"

// configDoc is a config file for the reload test: the keys of
// testConfig, and segments.
func configDoc(segments string) string {
	return "http:\n  write_keys: [" + writeKey + "]\n  read_keys: [" + readKey + "]\n  admin_keys: [" + adminKey + "]\n" +
		"segments:\n" + segments
}

// TestReload changes the configuration of a running engine, through the
// admin API and through its file: a bad configuration is rejected with
// its errors and the running one keeps working; changed and new segments
// are backfilled over the existing profiles, each change a record.
func TestReload(t *testing.T) {
	cfg := testConfig(t, testkafka.Brokers(t), testkafka.Prefix(t), t.TempDir())
	file := filepath.Join(t.TempDir(), "tailor.yaml")
	first := configDoc("  adult: 'traits.age >= 18'\n")
	if err := os.WriteFile(file, []byte(first), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Source = file
	cfg.HTTP.AdminKeys = config.NewKeys(adminKey)
	cfg.Segments = map[string]string{"adult": "traits.age >= 18"}
	e := startEngine(t, cfg)
	if resp := e.post(t, "/v1/batch", `{"batch": [
	  {"type": "identify", "userId": "r1", "traits": {"age": 19, "country": "FR"}},
	  {"type": "identify", "userId": "r2", "traits": {"age": 30, "country": "DE"}},
	  {"type": "identify", "userId": "r3", "traits": {"age": 12, "country": "FR"}}]}`); resp.Status != http.StatusOK {
		t.Fatalf("batch: %d %s", resp.Status, resp.Body)
	}
	e.waitProfile(t, "r3", func(v state.View) bool { return v.Traits["age"] != nil })
	segmentsOf := func(key string) string {
		v, _ := e.profile(t, key)
		return strings.Join(slices.Sorted(func(yield func(string) bool) {
			for name := range v.Segments {
				if !yield(name) {
					return
				}
			}
		}), " ")
	}
	waitSegments := func(want map[string]string) {
		t.Helper()
		waitFor(t, "segments "+strings.Join(slices.Sorted(func(yield func(string) bool) {
			for k, v := range want {
				yield(k + ":" + v)
			}
		}), ", "), 30*time.Second, func() bool {
			for key, segs := range want {
				if segmentsOf(key) != segs {
					return false
				}
			}
			return true
		})
	}
	waitSegments(map[string]string{"r1": "adult", "r2": "adult", "r3": ""})
	put := func(key, doc string) response {
		return do(t, "PUT", e.url+"/v1/admin/config", key, []byte(doc), map[string]string{"Content-Type": "application/yaml"})
	}

	// Refused: no key, a read key, the wrong method, a bad document.
	for _, tc := range []struct {
		method, key, doc string
		status           int
		want             string
	}{
		{"PUT", "", first, 401, "missing admin key"},
		{"PUT", readKey, first, 401, "invalid admin key"},
		{"POST", adminKey, first, 405, "use PUT"},
		{"PUT", adminKey, configDoc("  adult: 'traits.age >= '\n  fr: 'segment(\"nope\")'\n"), 400, `rule "segments.adult" at 1:`},
		{"PUT", adminKey, "segments: [", 400, "invalid configuration"},
		{"PUT", adminKey, configDoc("  adult: 'traits.age >= 18'\n") + "bogus: 1\n", 400, "field bogus not found"},
	} {
		resp := do(t, tc.method, e.url+"/v1/admin/config", tc.key, []byte(tc.doc), nil)
		var body serve.ErrorBody
		resp.json(t, &body)
		if resp.Status != tc.status || !strings.Contains(body.Error, tc.want) {
			t.Errorf("%s with key %q: %d %s, want %d with %q", tc.method, tc.key, resp.Status, resp.Body, tc.status, tc.want)
		}
		if tc.status == 400 && strings.Contains(tc.doc, "nope") && len(body.Errors) != 2 {
			t.Errorf("bad document: errors %q, want one per problem", body.Errors)
		}
	}
	// The running configuration still works.
	if resp := e.post(t, "/v1/identify", `{"userId": "r4", "traits": {"age": 50}}`); resp.Status != http.StatusOK {
		t.Fatalf("identify: %d %s", resp.Status, resp.Body)
	}
	waitSegments(map[string]string{"r4": "adult"})

	// A good one: adult changes, fr is new; the profiles are backfilled.
	second := configDoc("  adult: 'traits.age >= 21'\n  fr: 'traits.country == \"FR\"'\n  fr_adult: 'segment(\"fr\") && segment(\"adult\")'\n")
	resp := put(adminKey, second)
	var res engine.ReloadResult
	resp.json(t, &res)
	if resp.Status != http.StatusOK || !res.Success || strings.Join(res.Segments.Changed, ",") != "adult" ||
		strings.Join(res.Segments.Added, ",") != "fr,fr_adult" || res.Persisted != file || !slices.Contains(res.RestartNeeded, "kafka") {
		t.Fatalf("reload: %d %s", resp.Status, resp.Body)
	}
	waitSegments(map[string]string{"r1": "fr", "r2": "adult", "r3": "fr", "r4": "adult"})
	if got, _ := os.ReadFile(file); string(got) != second {
		t.Errorf("config file after the reload:\n%s\nwant\n%s", got, second)
	}
	sizes := do(t, "GET", e.url+"/v1/segments", readKey, nil, nil)
	var list struct{ Segments []serve.SegmentInfo }
	sizes.json(t, &list)
	if len(list.Segments) != 3 || list.Segments[0].Name != "adult" || list.Segments[0].Size != 2 || list.Segments[0].Rule != "traits.age >= 21" ||
		list.Segments[1].Name != "fr" || list.Segments[1].Size != 2 || list.Segments[2].Size != 0 {
		t.Errorf("GET /v1/segments after the reload: %s", sizes.Body)
	}

	// The file changes: fr now means Germany. The watcher reloads it.
	third := configDoc("  adult: 'traits.age >= 21'\n  fr: 'traits.country == \"DE\"'\n  fr_adult: 'segment(\"fr\") && segment(\"adult\")'\n")
	if err := os.WriteFile(file, []byte(third), 0o644); err != nil {
		t.Fatal(err)
	}
	waitSegments(map[string]string{"r1": "", "r2": "adult fr fr_adult", "r3": "", "r4": "adult"})
	// A broken file is rejected; the running configuration stays.
	if err := os.WriteFile(file, []byte("segments: {adult: 'traits.age >>'}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the broken file to be rejected", 20*time.Second, func() bool {
		return strings.Contains(string(do(t, "GET", e.url+"/metrics", "", nil, nil).Body), `tailor_config_reloads_total{result="rejected"} 1`)
	})
	metrics := string(do(t, "GET", e.url+"/metrics", "", nil, nil).Body)
	for _, want := range []string{`tailor_config_reloads_total{result="applied"} 2`, "tailor_backfill_profiles_total 8"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// Every change is one record; those of backfills carry no messageId.
	// (Asking for one more than expected waits a little for a duplicate.)
	records := testkafka.Consume(t, cfg.Kafka.Brokers, e.Topics().Segments, 11, 5*time.Second)
	var changes []string
	for _, r := range records {
		var c stream.SegmentChange
		if err := json.Unmarshal(r.Value, &c); err != nil {
			t.Fatal(err)
		}
		cause := "event"
		if c.MessageID == "" {
			cause = "backfill"
		}
		changes = append(changes, c.Key+" "+c.Change+" "+c.Segment+" by "+cause)
	}
	sort.Strings(changes)
	want := []string{
		"r1 entered adult by event", "r1 entered fr by backfill", "r1 exited adult by backfill", "r1 exited fr by backfill",
		"r2 entered adult by event", "r2 entered fr by backfill", "r2 entered fr_adult by backfill",
		"r3 entered fr by backfill", "r3 exited fr by backfill",
		"r4 entered adult by event",
	}
	if strings.Join(changes, "\n") != strings.Join(want, "\n") {
		t.Errorf("change records:\n%s\nwant\n%s", strings.Join(changes, "\n"), strings.Join(want, "\n"))
	}
}
