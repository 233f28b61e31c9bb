package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/bench/dataset"
	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/state"
	"github.com/tailorcdp/tailor/stream"
)

// erasedPerson is a customer the erasure test erases: by its id, or by
// the anonymous id merged into its profile.
type erasedPerson struct {
	id, anon, email string
	byAnon          bool
}

// name is the key the erasure names.
func (p erasedPerson) name() string {
	if p.byAnon {
		return p.anon
	}
	return p.id
}

// TestErasureCrashSafety replays the Online Retail history, gives 5 % of
// the customers (drawn at random) an email and an anonymous id merged
// into their profile, then erases them (a third through that anonymous
// id) while the engine is killed with SIGKILL again and again. Then: each
// erasure is done; a scan of every key and value of every partition store
// and the changelog's latest record of every key hold none of their ids
// or emails; the other 95 % are exact against the CSV; segment sizes and
// RFM histograms count only them; with privacy.suppress_erased, events of
// an erased id are refused at collect and dropped by the consumer, also
// after a restart.
func TestErasureCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills child processes")
	}
	events, truth := retailData(t)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 5))
	t.Logf("seed %d", seed)
	people := drawErased(truth, rng, events)

	t.Setenv("TAILOR_CHANGELOG", "true")
	t.Setenv("TAILOR_SUPPRESS_ERASED", "true")
	bin := buildTailor(t)
	brokers := testkafka.Brokers(t)
	prefix := testkafka.Prefix(t)
	dataDir := t.TempDir()
	configFile := repeatBuyerConfig(t)
	args := append(crashArgs(configFile, brokers, prefix, "erasure-test", dataDir), "--admin-keys", "erasure-admin")
	producer := crashProducer(t, brokers, prefix)
	if _, err := stream.Import(context.Background(), events, stream.ImportOptions{Producer: producer, Topic: prefix + "events", Limits: event.DefaultLimits()}); err != nil {
		t.Fatal(err)
	}
	c := startChild(t, bin, args...)
	c.waitReady(t, 90*time.Second)
	for _, p := range people { // merges go through Kafka after the events
		waitUntil(t, "the anonymous id of "+p.id+" to be merged", func() bool {
			v, ok := c.profile(t, p.anon)
			return ok && v.Key == p.id && strings.Contains(string(v.Traits["email"]), p.email)
		})
	}
	c.kill()

	ids, kills := eraseWhileKilling(t, bin, args, people, rng)
	t.Logf("%d erasures asked for (%d people), %d kills", len(ids), len(people), kills)
	c = startChild(t, bin, args...)
	c.waitReady(t, 90*time.Second)
	for _, id := range ids {
		waitUntil(t, "erasure "+id+" to be done", func() bool { return erasureState(t, c, id) == "done" })
	}

	erased := make(map[string]bool)
	kept := make(map[string]*dataset.CustomerFacts)
	for _, p := range people {
		erased[p.id], erased[p.anon] = true, true
		for _, key := range []string{p.id, p.anon} {
			if v, ok := c.profile(t, key); ok {
				t.Errorf("%s erased (%s), but it reads profile %q", key, p.name(), v.Key)
			}
		}
	}
	wantSizes, wantRFM := 0, 0
	for id, f := range truth {
		if !erased[id] {
			kept[id] = f
			if f.Orders >= 2 {
				wantSizes++
			}
			if f.Orders > 0 {
				wantRFM++
			}
		}
	}
	if diffs := dataset.CompareRetail(kept, func(id string) (state.View, bool) { return c.profile(t, id) }); len(diffs) > 0 {
		t.Errorf("%d of the %d customers kept differ from the CSV, first: %s", len(diffs), len(kept), diffs[0])
	}
	if got := segmentSize(t, c, "repeat_buyer"); got != int64(wantSizes) {
		t.Errorf("repeat_buyer has %d members, want %d (the repeat buyers kept)", got, wantSizes)
	}

	checkSuppressed(t, c, producer, prefix, people[0].id)
	c.kill()
	c = startChild(t, bin, args...) // suppression holds across a restart
	c.waitReady(t, 90*time.Second)
	checkSuppressed(t, c, producer, prefix, people[1].anon)
	c.Stop()

	leaks := func(where string, w state.Write) {
		if why := leak(w, erased); why != "" {
			t.Errorf("%s: key %q holds %s", where, w.Key, why)
		}
	}
	population := scanStores(t, dataDir, prefix, func(w state.Write) { leaks("store", w) })
	if population != int64(wantRFM) {
		t.Errorf("the RFM histograms count %d customers, want %d (those with orders kept)", population, wantRFM)
	}
	latest := make(map[string]state.Write)
	for _, r := range testkafka.Consume(t, brokers, prefix+"changelog", 1<<30, 20*time.Second) {
		if len(r.Value) == 0 {
			delete(latest, string(r.Key)) // a tombstone: compaction removes the key
			continue
		}
		latest[string(r.Key)] = state.Write{Key: r.Key, Value: r.Value[1:]}
	}
	for _, w := range latest {
		leaks("changelog", w)
	}
}

// drawErased draws 5 % of the customers and appends to events, for each,
// a page view under an anonymous id and an identify linking that id and
// giving an email.
func drawErased(truth map[string]*dataset.CustomerFacts, rng *rand.Rand, events *bytes.Buffer) []erasedPerson {
	ids := make([]string, 0, len(truth))
	for id := range truth {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	people := make([]erasedPerson, len(ids)/20)
	at := time.Now().UTC().Add(-time.Hour)
	for i := range people {
		id := ids[i]
		p := erasedPerson{id: id, anon: "anon-" + id, email: "person-" + id + "@example.com", byAnon: i%3 == 0}
		people[i] = p
		at = at.Add(time.Millisecond)
		fmt.Fprintf(events, `{"type": "page", "name": "Home", "anonymousId": %q, "messageId": "erase-view-%s", "timestamp": %q}`+"\n", p.anon, id, at.Format(time.RFC3339Nano))
		fmt.Fprintf(events, `{"type": "identify", "userId": %q, "anonymousId": %q, "messageId": "erase-identify-%s", "traits": {"email": %q}, "timestamp": %q}`+"\n",
			id, p.anon, id, p.email, at.Format(time.RFC3339Nano))
	}
	return people
}

// eraseWhileKilling asks for the erasure of each person, starting the
// engine and killing it with SIGKILL at times drawn from rng, until every
// erasure was accepted; a request the kill cut off is asked again. It
// returns the ids of the accepted erasures.
func eraseWhileKilling(t *testing.T, bin string, args []string, people []erasedPerson, rng *rand.Rand) (ids []string, kills int) {
	t.Helper()
	todo := slices.Clone(people)
	for len(todo) > 0 {
		c := startChild(t, bin, args...)
		c.waitReady(t, 90*time.Second)
		stop := make(chan struct{})
		done := make(chan int)
		go func() {
			n := 0
			defer func() { done <- n }()
			for _, p := range todo {
				select {
				case <-stop:
					return
				default:
				}
				time.Sleep(10 * time.Millisecond) // the kills fall amid the erasures
				id, err := eraseKey(c, p.name())
				if err != nil {
					return // the kill, or an answer it cut off: asked again
				}
				ids = append(ids, id)
				n++
			}
		}()
		time.Sleep(time.Duration(100+rng.IntN(500)) * time.Millisecond)
		close(stop)
		c.kill()
		kills++
		todo = todo[<-done:]
	}
	return ids, kills
}

// eraseKey asks c to erase key and returns the erasure's id.
func eraseKey(c *child, key string) (string, error) {
	req, err := http.NewRequest(http.MethodDelete, c.url+"/v1/profiles/"+key, nil)
	if err != nil {
		return "", err
	}
	req.SetBasicAuth("erasure-admin", "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var body struct{ ID, State string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusAccepted || body.ID == "" {
		return "", fmt.Errorf("DELETE %s: %d %+v (%v)", key, resp.StatusCode, body, err)
	}
	return body.ID, nil
}

// erasureState returns the state GET /v1/erasures/{id} answers.
func erasureState(t *testing.T, c *child, id string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.url+"/v1/erasures/"+id, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("erasure-admin", "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ State string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/erasures/%s: %d (%v)", id, resp.StatusCode, err)
	}
	return body.State
}

// waitUntil waits up to a minute for cond.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// segmentSize returns the size of segment GET /v1/segments answers.
func segmentSize(t *testing.T, c *child, segment string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	status, body, err := c.Get(ctx, "/v1/segments", "crash-read")
	if err != nil || status != http.StatusOK {
		t.Fatalf("GET /v1/segments: %d %v", status, err)
	}
	var out struct {
		Segments []struct {
			Name string
			Size int64
		}
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	for _, s := range out.Segments {
		if s.Name == segment {
			return s.Size
		}
	}
	t.Fatalf("no segment %s in %s", segment, body)
	return 0
}

// checkSuppressed checks that an event of the erased id is refused at
// collect, naming the field, and one produced straight to Kafka is
// dropped by the consumer.
func checkSuppressed(t *testing.T, c *child, producer *stream.Producer, prefix, id string) {
	t.Helper()
	body := fmt.Sprintf(`{"userId": %q, "event": "Page Viewed"}`, id)
	if strings.HasPrefix(id, "anon-") {
		body = fmt.Sprintf(`{"anonymousId": %q, "event": "Page Viewed"}`, id)
	}
	req, err := http.NewRequest(http.MethodPost, c.url+"/v1/track", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("crash-write", "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !bytes.Contains(answer, []byte("erased")) {
		t.Errorf("collect of an event of suppressed %s: %d %s; want 400 naming the erasure", id, resp.StatusCode, answer)
	}
	dropped := `tailor_events_total{outcome="erased"}`
	before := metric(t, c, dropped)
	rec := &kgo.Record{Topic: prefix + "events", Key: []byte(id), Value: []byte(strings.Replace(body, "{", `{"type": "track", "messageId": "suppressed-`+id+`-`+fmt.Sprint(time.Now().UnixNano())+`", `, 1))}
	if err := producer.Produce(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the consumer to drop an event of suppressed "+id, func() bool { return metric(t, c, dropped) > before })
	if _, ok := c.profile(t, id); ok {
		t.Errorf("suppressed %s has a profile again", id)
	}
}

// scanStores calls fn with every key and value of every partition store
// in dataDir, and returns how many customers the RFM histograms count.
func scanStores(t *testing.T, dataDir, prefix string, fn func(state.Write)) int64 {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(dataDir, prefix+"events-*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no store in %s: %v", dataDir, err)
	}
	var population int64
	for _, dir := range dirs {
		s, err := state.Open(dir, state.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range s.Population().Orders {
			population += n
		}
		err = s.EachWrite(context.Background(), func(w state.Write) error { fn(w); return nil })
		if cerr := s.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return population
}

// leak says what of an erased person a store write holds, "" for
// nothing: a key that belongs to an erased id's profile, an alias to
// one, or an anonymous id or email of theirs anywhere (only the erased
// have them).
func leak(w state.Write, erased map[string]bool) string {
	if key, ok := state.ProfileKeyOf(w.Key); ok && erased[key] {
		return "the erased id " + key
	}
	if len(w.Key) > 0 && w.Key[0] == 'a' && erased[string(w.Value)] {
		return "an alias to the erased id " + string(w.Value)
	}
	for _, s := range []string{"anon-", "@example.com"} {
		if bytes.Contains(w.Key, []byte(s)) || bytes.Contains(w.Value, []byte(s)) {
			return "an erased person's " + s
		}
	}
	return ""
}
