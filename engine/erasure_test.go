package engine_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/state"
	"github.com/tailorcdp/tailor/stream"
)

// erasure is the body of DELETE /v1/profiles/{key} and GET
// /v1/erasures/{id}.
type erasure struct {
	ID, State, Status string
	Found, Suppressed *bool
	Removed           *state.ErasureCounts
}

// erase asks e to erase key with the admin key, and returns the answer.
func (r *running) erase(t *testing.T, key string) erasure {
	t.Helper()
	resp := do(t, "DELETE", r.url+"/v1/profiles/"+key, adminKey, nil, nil)
	var out erasure
	resp.json(t, &out)
	if resp.Status != http.StatusAccepted || out.ID == "" || out.State != "pending" || out.Status != "/v1/erasures/"+out.ID {
		t.Fatalf("DELETE %s: %d %s", key, resp.Status, resp.Body)
	}
	return out
}

// waitErasure waits for erasure id to be done, and returns it.
func (r *running) waitErasure(t *testing.T, id string) erasure {
	t.Helper()
	var out erasure
	waitFor(t, "erasure "+id+" to be done", 30*time.Second, func() bool {
		resp := do(t, "GET", r.url+"/v1/erasures/"+id, adminKey, nil, nil)
		if resp.Status != http.StatusOK {
			t.Fatalf("GET /v1/erasures/%s: %d %s", id, resp.Status, resp.Body)
		}
		out = erasure{}
		resp.json(t, &out)
		return out.State == "done"
	})
	return out
}

// TestErasure: a profile erased by one of its merged anonymous ids (whose
// alias another partition holds) is gone under both keys, leaves each
// segment with an exited record whose reason is erased, and its erasure
// says what it removed; an unknown key, and a key erased twice, are done
// with nothing found; wrong keys and ids are refused with a clear answer,
// and nothing is erased.
func TestErasure(t *testing.T) {
	cfg := testConfig(t, testkafka.Brokers(t), testkafka.Prefix(t), t.TempDir())
	cfg.HTTP.AdminKeys = config.NewKeys(adminKey)
	cfg.Segments = map[string]string{"french": `traits.country == "FR"`, "buyer": `rfm.frequency > 0`}
	anon := ""
	for i := 0; anon == ""; i++ {
		if id := "anon-" + strconv.Itoa(i); stream.PartitionOf(id, cfg.Kafka.Partitions) != stream.PartitionOf("u1", cfg.Kafka.Partitions) {
			anon = id
		}
	}
	e := startEngine(t, cfg)
	if resp := e.post(t, "/v1/batch", `{"batch": [
	  {"type": "track", "anonymousId": "`+anon+`", "event": "Order Completed", "properties": {"order_id": "o1", "total": 12}},
	  {"type": "identify", "userId": "u1", "anonymousId": "`+anon+`", "traits": {"country": "FR", "email": "u1@example.com"}},
	  {"type": "identify", "userId": "u2", "traits": {"country": "FR"}}]}`); resp.Status != http.StatusOK {
		t.Fatalf("batch: %d %s", resp.Status, resp.Body)
	}
	e.waitProfile(t, "u1", func(v state.View) bool { return len(v.Segments) == 2 })
	e.waitProfile(t, "u2", func(v state.View) bool { return len(v.Segments) == 1 })

	// Refused, with nothing erased.
	for _, tc := range []struct {
		method, path, key string
		status            int
	}{
		{"DELETE", "/v1/profiles/u1", "", http.StatusUnauthorized},
		{"DELETE", "/v1/profiles/u1", readKey, http.StatusUnauthorized},
		{"DELETE", "/v1/profiles/u1", writeKey, http.StatusUnauthorized},
		{"DELETE", "/v1/profiles/", adminKey, http.StatusBadRequest},
		{"DELETE", "/v1/profiles/" + strings.Repeat("x", 300), adminKey, http.StatusBadRequest},
		{"GET", "/v1/erasures/u1", adminKey, http.StatusBadRequest},
		{"GET", "/v1/erasures/0-1", readKey, http.StatusUnauthorized},
		{"GET", "/v1/erasures/99-1", adminKey, http.StatusNotFound},
		{"GET", "/v1/erasures/0-1000000", adminKey, http.StatusNotFound}, // past the partition's end
		{"PUT", "/v1/profiles/u1", adminKey, http.StatusMethodNotAllowed},
	} {
		resp := do(t, tc.method, e.url+tc.path, tc.key, nil, nil)
		var body struct{ Message string }
		resp.json(t, &body)
		if resp.Status != tc.status || body.Message == "" {
			t.Errorf("%s %s with key %q: %d %s; want %d with a message", tc.method, tc.path, tc.key, resp.Status, resp.Body, tc.status)
		}
	}
	if _, ok := e.profile(t, "u1"); !ok {
		t.Fatal("u1 erased by a refused request")
	}

	// Erased through the anonymous id: both keys go.
	asked := e.erase(t, anon)
	done := e.waitErasure(t, asked.ID)
	if want := (state.ErasureCounts{Profiles: 1, LinkedIDs: 1, Orders: 1, Segments: 2}); done.Found == nil || !*done.Found || done.Removed == nil || *done.Removed != want {
		t.Errorf("erasure %+v, want found and removed %+v", done, want)
	}
	for _, key := range []string{"u1", anon} {
		if v, ok := e.profile(t, key); ok {
			t.Errorf("%s reads profile %q after the erasure", key, v.Key)
		}
	}
	if v, ok := e.profile(t, "u2"); !ok || len(v.Segments) != 1 {
		t.Errorf("u2 after u1's erasure: %v %+v", ok, v)
	}

	// Unknown, and erased again: done, nothing found.
	for _, key := range []string{"never-seen", "u1"} {
		if out := e.waitErasure(t, e.erase(t, key).ID); out.Found == nil || *out.Found || *out.Removed != (state.ErasureCounts{}) {
			t.Errorf("erasure of %s: %+v, want nothing found", key, out)
		}
	}

	// The segments topic: the anonymous profile entered buyer and left it
	// when merged into u1; u1 entered both segments, then exited each
	// with reason erased; u2 entered french.
	recs := testkafka.Consume(t, cfg.Kafka.Brokers, e.Topics().Segments, 7, 60*time.Second)
	if more := testkafka.Consume(t, cfg.Kafka.Brokers, e.Topics().Segments, 8, 3*time.Second); len(more) > len(recs) {
		recs = more // one too many: reported below
	}
	var got []string
	for _, r := range recs {
		var c stream.SegmentChange
		if err := json.Unmarshal(r.Value, &c); err != nil {
			t.Fatal(err)
		}
		got = append(got, c.Key+" "+c.Change+" "+c.Segment+" "+c.Reason)
	}
	sort.Strings(got)
	if want := anon + " entered buyer , " + anon + " exited buyer , u1 entered buyer , u1 entered french , u1 exited buyer erased, u1 exited french erased, u2 entered french "; strings.Join(got, ", ") != want {
		t.Errorf("segment changes %q, want %q", strings.Join(got, ", "), want)
	}
}

// TestErasureBrokerDown: while the broker is down, an erasure is answered
// 503 with Retry-After, saying to ask again, and nothing is erased while
// it is down; once it is back, the same request is accepted and done.
func TestErasureBrokerDown(t *testing.T) {
	eachKillableBroker(t, func(t *testing.T, broker killableBroker) {
		cfg := testConfig(t, broker.Addrs(), testkafka.Prefix(t), t.TempDir())
		cfg.HTTP.AdminKeys = config.NewKeys(adminKey)
		e := startEngine(t, cfg)
		if resp := e.post(t, "/v1/identify", `{"userId": "u1", "traits": {"plan": "pro"}}`); resp.Status != http.StatusOK {
			t.Fatalf("identify: %d %s", resp.Status, resp.Body)
		}
		e.waitProfile(t, "u1", func(state.View) bool { return true })
		broker.Kill(t)
		resp := do(t, "DELETE", e.url+"/v1/profiles/u1", adminKey, nil, nil)
		var body struct{ Message string }
		resp.json(t, &body)
		if resp.Status != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body.Message, "ask again") {
			t.Errorf("DELETE with the broker down: %d %v %s", resp.Status, resp.Header, resp.Body)
		}
		if _, ok := e.profile(t, "u1"); !ok {
			t.Error("u1 gone after a refused erasure")
		}
		broker.Start(t)
		var id string
		waitFor(t, "an erasure to be accepted", 60*time.Second, func() bool {
			resp := do(t, "DELETE", e.url+"/v1/profiles/u1", adminKey, nil, nil)
			var out erasure
			resp.json(t, &out)
			id = out.ID
			return resp.Status == http.StatusAccepted
		})
		// The request Kafka did not acknowledge in time may have been
		// delivered once the broker was back: one of the two erased u1.
		e.waitErasure(t, id)
		if _, ok := e.profile(t, "u1"); ok {
			t.Error("u1 not erased after the outage")
		}
	})
}

// TestErasureStandby: an erasure reaches the standby replicas through the
// changelog's tombstones: once the instance that applied it stops, the
// other, serving the partitions from its standby copies, holds none of
// the erased profiles, and still every other.
func TestErasureStandby(t *testing.T) {
	if testing.Short() {
		t.Skip("two instances, a rebalance")
	}
	brokers, prefix := testkafka.Brokers(t), testkafka.Prefix(t)
	var engines [2]*running
	for i, id := range []string{"a", "b"} {
		cfg := testConfig(t, brokers, prefix, t.TempDir())
		cfg.HTTP.AdminKeys = config.NewKeys(adminKey)
		cfg.Kafka.InstanceID = id
		cfg.Kafka.Partitions = 4
		cfg.Kafka.StandbyReplicas = 1
		cfg.Kafka.SessionTimeout = config.Duration(6 * time.Second)
		engines[i] = startEngine(t, cfg)
	}
	a, b := engines[0], engines[1]
	waitFor(t, "both instances to hold partitions", 2*time.Minute, func() bool {
		return len(a.Applied()) > 0 && len(b.Applied()) > 0
	})
	var batch strings.Builder
	batch.WriteString(`{"batch": [`)
	for i := range 40 {
		if i > 0 {
			batch.WriteString(",")
		}
		fmt.Fprintf(&batch, `{"type": "identify", "userId": "u%d", "traits": {"email": "u%d@example.com"}}`, i, i)
	}
	batch.WriteString("]}")
	if resp := a.post(t, "/v1/batch", batch.String()); resp.Status != http.StatusOK {
		t.Fatalf("batch: %d %s", resp.Status, resp.Body)
	}
	for i := range 40 {
		a.waitProfile(t, fmt.Sprintf("u%d", i), func(state.View) bool { return true })
	}
	// The even ones go: their erasures are applied by whichever instance
	// holds them, and reach the other's standby copies.
	for i := 0; i < 40; i += 2 {
		a.waitErasure(t, a.erase(t, fmt.Sprintf("u%d", i)).ID)
	}
	for _, e := range engines {
		waitFor(t, "the standby replicas to catch up", time.Minute, func() bool { return standbyLag(t, e.url) == 0 })
	}
	a.stop()
	waitFor(t, "b to hold every partition", 2*time.Minute, func() bool { return len(b.Applied()) == 4 })
	for i := range 40 {
		key := fmt.Sprintf("u%d", i)
		if _, ok := b.profile(t, key); ok != (i%2 == 1) {
			t.Errorf("%s on b after a stopped: found %v, want %v", key, ok, i%2 == 1)
		}
	}
}
