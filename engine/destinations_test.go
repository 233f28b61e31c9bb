package engine_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/deliver"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/serve"
)

const hookSecret = "engine-test-hook-secret"

// hook is a webhook receiver recording the verified changes it got.
type hook struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []deliver.Change
	at  []time.Time // when each of got arrived
	bad int
}

func newHook(t testing.TB) *hook {
	h := &hook{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var c deliver.Change
		if deliver.Verify([]byte(hookSecret), r.Header.Get(deliver.SignatureHeader), body, time.Now(), time.Minute) != nil ||
			json.Unmarshal(body, &c) != nil || r.Header.Get(deliver.IdempotencyHeader) != c.ID || r.Header.Get("X-Shop") != "test" {
			h.mu.Lock()
			h.bad++
			h.mu.Unlock()
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.got, h.at = append(h.got, c), append(h.at, time.Now())
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// arrivals returns when the first change of each key arrived.
func (h *hook) arrivals() map[string]time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]time.Time, len(h.got))
	for i, c := range h.got {
		if _, ok := out[c.Key]; !ok {
			out[c.Key] = h.at[i]
		}
	}
	return out
}

func (h *hook) changes() []deliver.Change {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]deliver.Change(nil), h.got...)
}

// destinationDoc is a config document with the segment adult and the
// given destinations section.
func destinationDoc(destinations string) string {
	return configDoc("  adult: 'traits.age >= 18'\n") + "destinations:\n" + destinations
}

func hookDest(name, url string) string {
	return fmt.Sprintf("  %s:\n    webhook: {url: %q, secret: %q, headers: {X-Shop: test}}\n    segments: [adult]\n    purpose: Marketing\n    fields: [traits]\n", name, url, hookSecret)
}

// TestDestinations delivers a segment's changes to a webhook with the
// profile's traits, withholds those of profiles without consent, refuses
// bad destinations naming the field while the running ones go on, and
// stops delivering to a destination a reload removed.
func TestDestinations(t *testing.T) {
	crm, other := newHook(t), newHook(t)
	cfg := testConfig(t, testkafka.Brokers(t), testkafka.Prefix(t), t.TempDir())
	file := filepath.Join(t.TempDir(), "tailor.yaml")
	doc := destinationDoc(hookDest("crm", crm.srv.URL))
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	parsed, err := config.Parse([]byte(doc), file)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Source, cfg.HTTP.AdminKeys, cfg.Segments, cfg.Destinations = file, config.NewKeys(adminKey), parsed.Segments, parsed.Destinations
	e := startEngine(t, cfg)
	e.post(t, "/v1/batch", `{"batch": [
	  {"type": "identify", "userId": "d1", "traits": {"age": 19, "name": "Ann"}, "context": {"consent": {"categoryPreferences": {"Marketing": true}}}},
	  {"type": "identify", "userId": "d2", "traits": {"age": 30}, "context": {"consent": {"categoryPreferences": {"Marketing": false}}}}]}`)
	stats := func() deliver.Stats {
		var body struct{ Destinations []deliver.Stats }
		do(t, "GET", e.url+"/v1/destinations", readKey, nil, nil).json(t, &body)
		if len(body.Destinations) == 0 {
			return deliver.Stats{}
		}
		return body.Destinations[0]
	}
	waitFor(t, "d1's change at crm and d2's withheld", 30*time.Second, func() bool {
		return len(crm.changes()) == 1 && stats().Withheld == 1
	})
	c := crm.changes()[0]
	if c.Key != "d1" || c.Segment != "adult" || c.Change != "entered" || c.Destination != "crm" || c.Profile == nil || string(c.Profile.Traits["name"]) != `"Ann"` {
		t.Errorf("delivered %+v", c)
	}
	if s := stats(); s.Name != "crm" || s.Delivered != 1 || s.Circuit != "closed" {
		t.Errorf("GET /v1/destinations: %+v", s)
	}
	if resp := do(t, "GET", e.url+"/v1/destinations", "", nil, nil); resp.Status != http.StatusUnauthorized {
		t.Errorf("GET /v1/destinations without a key: %d", resp.Status)
	}

	put := func(doc string) response {
		return do(t, "PUT", e.url+"/v1/admin/config", adminKey, []byte(doc), map[string]string{"Content-Type": "application/yaml"})
	}
	checkRefused(t, put)
	// The running destinations are kept.
	e.post(t, "/v1/identify", `{"userId": "d3", "traits": {"age": 40}, "context": {"consent": {"categoryPreferences": {"Marketing": true}}}}`)
	waitFor(t, "d3's change at crm", 30*time.Second, func() bool {
		return len(crm.changes()) == 2
	})

	// crm removed, other added: d4's change goes to other only.
	if resp := put(destinationDoc(hookDest("other", other.srv.URL))); resp.Status != http.StatusOK || !strings.Contains(string(resp.Body), `"destinations":{"added":["other"],"removed":["crm"]}`) {
		t.Fatalf("reload: %d %s", resp.Status, resp.Body)
	}
	e.post(t, "/v1/identify", `{"userId": "d4", "traits": {"age": 50}, "context": {"consent": {"categoryPreferences": {"Marketing": true}}}}`)
	waitFor(t, "d4's change at other", 30*time.Second, func() bool {
		for _, c := range other.changes() {
			if c.Key == "d4" {
				return true
			}
		}
		return false
	})
	if n := len(crm.changes()); n != 2 {
		t.Errorf("crm, removed, got %d changes, want 2 (none after its removal)", n)
	}
	if crm.bad+other.bad > 0 {
		t.Errorf("%d requests failed the receivers' checks", crm.bad+other.bad)
	}
}

// TestDestinationsTwoInstances: with two instances, each delivers the
// segments topic's partitions it holds, reading the profiles the other
// holds through its profile API: every change arrives with its traits.
func TestDestinationsTwoInstances(t *testing.T) {
	crm := newHook(t)
	parsed, err := config.Parse([]byte(destinationDoc(hookDest("crm", crm.srv.URL))), "test")
	if err != nil {
		t.Fatal(err)
	}
	engines := startInstances(t, func(cfg *config.Config) {
		cfg.Segments, cfg.Destinations = parsed.Segments, parsed.Destinations
	})
	waitFor(t, "both instances to hold partitions", 60*time.Second, func() bool {
		a, b := len(engines[0].Applied()), len(engines[1].Applied())
		return a > 0 && b > 0 && a+b == 6
	})
	const n = 30
	var batch []string
	for i := range n {
		batch = append(batch, fmt.Sprintf(`{"type": "identify", "userId": "two-%d", "traits": {"age": 20, "n": %d}, "context": {"consent": {"categoryPreferences": {"Marketing": true}}}}`, i, i))
	}
	if resp := engines[0].post(t, "/v1/batch", `{"batch": [`+strings.Join(batch, ",")+`]}`); resp.Status != http.StatusOK {
		t.Fatalf("batch: %d %s", resp.Status, resp.Body)
	}
	got := map[string]bool{}
	waitFor(t, "every change at crm", 60*time.Second, func() bool {
		for _, c := range crm.changes() {
			if c.Profile == nil || c.Profile.Traits["n"] == nil {
				t.Fatalf("change without traits: %+v", c)
			}
			got[c.Key] = true
		}
		return len(got) == n
	})
	if crm.bad > 0 {
		t.Errorf("%d requests failed the receiver's checks", crm.bad)
	}
}

// checkRefused puts bad destinations: each is refused naming its field.
func checkRefused(t *testing.T, put func(string) response) {
	t.Helper()
	for _, tc := range []struct{ doc, want string }{
		{destinationDoc("  crm:\n    webhook: {secret: " + hookSecret + "}\n    segments: [adult]\n"), "destinations.crm.webhook.url"},
		{destinationDoc("  crm:\n    webhook: {url: 'http://x', secret: short}\n    segments: [adult]\n"), "destinations.crm.webhook.secret"},
		{destinationDoc("  crm:\n    webhook: {url: 'http://x', secret: " + hookSecret + "}\n    segments: [nope]\n"), "destinations.crm.segments"},
		{destinationDoc("  crm:\n    webhook: {url: 'http://x', secret: " + hookSecret + "}\n"), "destinations.crm.segments"},
		{destinationDoc("  crm:\n    webhook: {url: 'http://x', secret: " + hookSecret + ", headers: {X-Tailor-Signature: x}}\n    segments: [adult]\n"), "destinations.crm.webhook.headers"},
		{destinationDoc("  crm:\n    webhook: {url: 'http://x', secret: " + hookSecret + ", batch_size: 5000}\n    segments: [adult]\n"), "destinations.crm.webhook.batch_size"},
		{destinationDoc("  crm:\n    webhook: {url: 'http://x', secret: " + hookSecret + "}\n    segments: [adult]\n    fields: [email]\n"), "destinations.crm.fields"},
		{destinationDoc("  crm:\n    segments: [adult]\n"), "destinations.crm: no webhook"},
	} {
		resp := put(tc.doc)
		var body serve.ErrorBody
		resp.json(t, &body)
		if resp.Status != http.StatusBadRequest || !strings.Contains(string(resp.Body), tc.want) {
			t.Errorf("reload with a bad destination: %d %s, want 400 naming %s", resp.Status, resp.Body, tc.want)
		}
	}
}
