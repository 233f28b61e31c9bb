package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/deliver"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/stream"
)

const hookSecret = "crash-hook-secret-0123"

// flakyHook receives two destinations' changes: /crm fails at random
// (5xx, answers slower than the timeout, closed connections), /broken
// answers 503 until fixed. It records the changes answered 2xx, by path,
// in arrival order.
type flakyHook struct {
	t   *testing.T
	srv *httptest.Server

	mu      sync.Mutex
	rng     *rand.Rand
	fixed   bool
	got     map[string][]deliver.Change
	badSigs int
}

func newFlakyHook(t *testing.T, seed uint64) *flakyHook {
	h := &flakyHook{t: t, rng: rand.New(rand.NewPCG(seed, 3)), got: map[string][]deliver.Change{}}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *flakyHook) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	h.mu.Lock()
	roll, fixed := h.rng.Float64(), h.fixed
	if deliver.Verify([]byte(hookSecret), r.Header.Get(deliver.SignatureHeader), body, time.Now(), 5*time.Minute) != nil {
		h.badSigs++
		h.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	h.mu.Unlock()
	switch {
	case r.URL.Path == "/broken" && !fixed:
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	case r.URL.Path == "/crm" && roll < 0.1:
		w.WriteHeader(http.StatusInternalServerError)
		return
	case r.URL.Path == "/crm" && roll < 0.15:
		time.Sleep(700 * time.Millisecond) // past the 500 ms timeout
		w.WriteHeader(http.StatusNoContent)
		return
	case r.URL.Path == "/crm" && roll < 0.2:
		if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
			c.Close()
		}
		return
	}
	var c deliver.Change
	if err := json.Unmarshal(body, &c); err != nil || r.Header.Get(deliver.IdempotencyHeader) != c.ID {
		h.t.Errorf("%s: body %s, Idempotency-Key %q", r.URL.Path, body, r.Header.Get(deliver.IdempotencyHeader))
	}
	h.mu.Lock()
	h.got[r.URL.Path] = append(h.got[r.URL.Path], c)
	h.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// missing returns the ids of want not yet answered 2xx at path.
func (h *flakyHook) missing(path string, want []string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := map[string]bool{}
	for _, c := range h.got[path] {
		seen[c.ID] = true
	}
	var out []string
	for _, id := range want {
		if !seen[id] {
			out = append(out, id)
		}
	}
	return out
}

// TestDeliveryCrashSafety toggles 40 customers in and out of a segment
// while the engine is killed with SIGKILL again and again, delivering to
// a receiver that fails at random: every change the segments topic holds
// reaches it at least once, by its id, and each key's changes first
// arrive in order. A second destination that is down dead-letters its
// changes; `tailor destinations replay` sends them once it is fixed.
func TestDeliveryCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills child processes")
	}
	bin := buildTailor(t)
	brokers := testkafka.Brokers(t)
	prefix := testkafka.Prefix(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	hook := newFlakyHook(t, seed)
	configFile := crashHookConfig(t, hook)
	args := crashArgs(configFile, brokers, prefix, "deliver-crash-test", t.TempDir())
	producer := crashProducer(t, brokers, prefix)
	const users, toggles = 40, 10
	var events bytes.Buffer
	start := time.Now().Add(-time.Hour)
	for i := range toggles {
		for u := range users {
			tier := []string{"gold", "silver"}[i%2]
			at := start.Add(time.Duration(i*users+u) * time.Second)
			fmt.Fprintf(&events, `{"type": "identify", "userId": "c%d", "messageId": "m%d-%d", "traits": {"tier": %q}, "timestamp": %q}`+"\n",
				u, u, i, tier, at.Format(time.RFC3339Nano))
		}
	}
	rng := rand.New(rand.NewPCG(seed, 4))
	kills := importWhileKilling(t, bin, args, producer, prefix, &throttled{r: &events, chunk: 2000, pause: 300 * time.Millisecond}, rng)
	for range 6 { // and while the changes are being delivered
		c := startChild(t, bin, args...)
		c.waitReady(t, 90*time.Second)
		time.Sleep(time.Duration(300+rng.IntN(1500)) * time.Millisecond)
		c.kill()
		kills++
	}
	t.Logf("%d kills", kills)
	c := startChild(t, bin, args...)
	c.waitReady(t, 90*time.Second)

	records := testkafka.Consume(t, brokers, prefix+"segments", users*toggles, 30*time.Second)
	if len(records) != users*toggles {
		t.Fatalf("segments topic holds %d changes, want %d", len(records), users*toggles)
	}
	ids := make([]string, len(records))
	offsets := map[string]int64{}
	for i, r := range records {
		ids[i] = fmt.Sprintf("%s/%d/%d", r.Topic, r.Partition, r.Offset)
		offsets[ids[i]] = r.Offset
	}
	waitLong(t, "every change at crm", 3*time.Minute, func() bool { return len(hook.missing("/crm", ids)) == 0 })
	checkFirstArrivals(t, hook, offsets)

	// broken's changes are all dead letters; fixed, a replay sends them.
	waitLong(t, "every change dead-lettered for broken", 3*time.Minute, func() bool {
		return len(deadLettered(t, brokers, prefix, "broken", len(ids))) >= len(ids)
	})
	hook.mu.Lock()
	hook.fixed = true
	hook.mu.Unlock()
	out, err := exec.Command(bin, append([]string{"destinations", "replay", "--destination", "broken", "--log-level", "warn"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("tailor destinations replay: %v\n%s", err, out)
	}
	if m := hook.missing("/broken", ids); len(m) != 0 {
		t.Errorf("after the replay, %d changes never reached broken (%s): %v", len(m), out, m[:min(5, len(m))])
	}
	if hook.badSigs > 0 {
		t.Errorf("%d requests with a bad signature", hook.badSigs)
	}
}

// checkFirstArrivals checks that each key's changes first arrived at crm
// in the order of their offsets, each with the profile's traits.
func checkFirstArrivals(t *testing.T, hook *flakyHook, offsets map[string]int64) {
	t.Helper()
	hook.mu.Lock()
	defer hook.mu.Unlock()
	seen := map[string]bool{}
	last := map[string]int64{}
	for _, c := range hook.got["/crm"] {
		if seen[c.ID] {
			continue
		}
		seen[c.ID] = true
		o, ok := offsets[c.ID]
		if !ok {
			t.Errorf("crm received %s, which is not on the segments topic", c.ID)
			continue
		}
		if l, ok := last[c.Key]; ok && l > o {
			t.Errorf("key %s: change %s arrived after one at offset %d", c.Key, c.ID, l)
		}
		last[c.Key] = o
		if c.Profile == nil || c.Profile.Traits["tier"] == nil {
			t.Errorf("change %s came without the traits: %+v", c.ID, c.Profile)
		}
	}
	t.Logf("crm answered 2xx to %d deliveries of %d changes", len(hook.got["/crm"]), len(seen))
}

// deadLettered returns the distinct changes dead-lettered for dest.
func deadLettered(t *testing.T, brokers []string, prefix, dest string, n int) map[string]bool {
	out := map[string]bool{}
	for _, r := range testkafka.Consume(t, brokers, stream.NewTopics(prefix).DeliverDeadLetter, n, 2*time.Second) {
		var d, src string
		for _, h := range r.Headers {
			switch h.Key {
			case deliver.HeaderDestination:
				d = string(h.Value)
			case deliver.HeaderSource:
				src = string(h.Value)
			}
		}
		if d == dest && strings.HasPrefix(src, prefix+"segments/") {
			out[src] = true
		}
	}
	return out
}

// waitLong waits up to timeout for cond.
func waitLong(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for !cond() {
		if ctx.Err() != nil {
			t.Fatalf("gave up after %s waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// crashHookConfig writes the config of TestDeliveryCrashSafety: segment
// gold, destination crm (fields, flaky) and broken (down until fixed).
func crashHookConfig(t *testing.T, hook *flakyHook) string {
	configFile := filepath.Join(t.TempDir(), "tailor.yaml")
	doc := fmt.Sprintf(`segments:
  gold: 'traits.tier == "gold"'
destinations:
  crm:
    webhook: {url: %q, secret: %q, timeout: 500ms}
    segments: [gold]
    fields: [traits]
  broken:
    webhook: {url: %q, secret: %q, timeout: 500ms}
    segments: [gold]
    max_attempts: 2
    max_age: 2s
`, hook.srv.URL+"/crm", hookSecret, hook.srv.URL+"/broken", hookSecret)
	if err := os.WriteFile(configFile, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return configFile
}
