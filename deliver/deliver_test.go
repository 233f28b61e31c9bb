package deliver

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/state"
	"github.com/tailorcdp/tailor/stream"
)

const testSecret = "test-secret-0123456789"

// noProfiles has no profile: destinations without purpose or fields
// never ask.
type noProfiles struct{}

func (noProfiles) Profile(context.Context, string, bool) (Profile, error) {
	return Profile{}, state.ErrNotFound
}
func (noProfiles) Applied() map[int32]int64 { return nil }

// testTopics creates a deployment's topics (3 partitions) and returns
// them with a producer.
func testTopics(t testing.TB) ([]string, stream.Topics, *kgo.Client) {
	t.Helper()
	brokers := testkafka.Brokers(t)
	topics := stream.NewTopics(testkafka.Prefix(t))
	producer, err := stream.NewProducer(stream.ClientConfig{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(producer.Close)
	if _, err := stream.EnsureTopics(context.Background(), producer.Client(), topics, 3, 1); err != nil {
		t.Fatal(err)
	}
	return brokers, topics, producer.Client()
}

// produceChanges writes n changes over keys keys, alternating entered and
// exited, segment "cart_abandoner" but every fifth "other"; it returns
// how many are cart_abandoner's.
func produceChanges(t *testing.T, cl *kgo.Client, topic string, from, n, keys int) int {
	t.Helper()
	var records []*kgo.Record
	want := 0
	for i := from; i < from+n; i++ {
		key := fmt.Sprintf("k%d", i%keys)
		seg := "cart_abandoner"
		if i%5 == 4 {
			seg = "other"
		} else {
			want++
		}
		change := []string{"entered", "exited"}[(i/keys)%2]
		v := fmt.Sprintf(`{"key":%q,"segment":%q,"change":%q,"time":%q}`, key, seg, change, time.Now().UTC().Format(time.RFC3339Nano))
		records = append(records, &kgo.Record{Topic: topic, Key: []byte(key), Value: []byte(v)})
	}
	if err := cl.ProduceSync(context.Background(), records...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return want
}

func testDest(name, url string, batch int) Destination {
	return Destination{Name: name, URL: url, Secret: []byte(testSecret), Timeout: 200 * time.Millisecond,
		BatchSize: batch, Segments: []string{"cart_abandoner"}, MaxAttempts: 1000, MaxAge: time.Hour}
}

// startDeliverer runs a deliverer of ds until the test ends.
func startDeliverer(t testing.TB, brokers []string, topics stream.Topics, group string, ds ...Destination) *Deliverer {
	return startDelivererWith(t, brokers, topics, group, DefaultBreaker, ds...)
}

func startDelivererWith(t testing.TB, brokers []string, topics stream.Topics, group string, b Breaker, ds ...Destination) *Deliverer {
	t.Helper()
	d, err := New(Config{Client: []kgo.Opt{kgo.SeedBrokers(brokers...)}, Group: group, Topic: topics.Segments,
		DeadLetterTopic: topics.DeliverDeadLetter, Profiles: noProfiles{}, Backoff: Backoff{Base: 5 * time.Millisecond, Max: 50 * time.Millisecond}, Breaker: b}, ds)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; d.Close() })
	return d
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDeliverFlakyReceiver: a receiver failing a third of the requests
// (5xx, timeouts, closed connections) gets every change of its segments,
// in order per key, each with its id, and no other segment's.
func TestDeliverFlakyReceiver(t *testing.T) {
	for _, batch := range []int{1, 7} {
		t.Run(fmt.Sprintf("batch %d", batch), func(t *testing.T) {
			brokers, topics, cl := testTopics(t)
			want := produceChanges(t, cl, topics.Segments, 0, 400, 25)
			rcv := newReceiver(t, testSecret, 0.33, time.Second)
			d := startDeliverer(t, brokers, topics, "g-deliver", testDest("crm", rcv.srv.URL, batch))
			waitFor(t, "every change", func() bool { return rcv.count() >= want })
			rcv.checkOrder(t)
			if got := rcv.count(); got != want {
				t.Errorf("received %d distinct changes, want %d", got, want)
			}
			for _, c := range rcv.got {
				if c.Segment != "cart_abandoner" || c.Destination != "crm" {
					t.Errorf("received %+v", c)
				}
			}
			if rcv.badSigs > 0 {
				t.Errorf("%d requests with a bad signature", rcv.badSigs)
			}
			s := d.Stats()
			if len(s) != 1 || s[0].Delivered < int64(want) || s[0].Failed == 0 || s[0].Retried == 0 || s[0].DeadLettered != 0 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

// TestDeadLetterReplay: a receiver that is down gets nothing; its
// changes are dead-lettered after max_attempts, the offsets move on; once
// fixed, Replay sends each again, once.
func TestDeadLetterReplay(t *testing.T) {
	brokers, topics, cl := testTopics(t)
	want := produceChanges(t, cl, topics.Segments, 0, 50, 10)
	rcv := newReceiver(t, testSecret, 1, 10*time.Millisecond)
	dest := testDest("crm", rcv.srv.URL, 1)
	dest.MaxAttempts = 2
	// A circuit that opens for a moment only: it would hold the changes
	// back for max_age otherwise.
	d := startDelivererWith(t, brokers, topics, "g-deliver", Breaker{Trips: 10, OpenFor: 10 * time.Millisecond}, dest)
	waitFor(t, "the dead letters", func() bool { return d.Stats()[0].DeadLettered >= int64(want) })
	if rcv.count() != 0 {
		t.Fatalf("a receiver that is down got %d changes", rcv.count())
	}
	rcv.setFailRate(0)
	replay := ReplayConfig{Client: []kgo.Opt{kgo.SeedBrokers(brokers...)}, DeadLetterTopic: topics.DeliverDeadLetter,
		Group: "g-deliver-replay-crm", Destination: dest, Backoff: Backoff{Base: time.Millisecond, Max: 10 * time.Millisecond}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := Replay(ctx, replay)
	if err != nil || st.Sent != want || rcv.count() != want {
		t.Fatalf("replay: %+v, %v; receiver has %d, want %d", st, err, rcv.count(), want)
	}
	if st, err := Replay(ctx, replay); err != nil || st.Sent != 0 {
		t.Errorf("second replay: %+v, %v, want nothing sent", st, err)
	}
}

// TestRemovedDestination: a destination taken out by SetDestinations
// receives none of the changes that follow.
func TestRemovedDestination(t *testing.T) {
	brokers, topics, cl := testTopics(t)
	a, b := newReceiver(t, testSecret, 0, 0), newReceiver(t, testSecret, 0, 0)
	d := startDeliverer(t, brokers, topics, "g-deliver", testDest("a", a.srv.URL, 1), testDest("b", b.srv.URL, 1))
	want := produceChanges(t, cl, topics.Segments, 0, 20, 5)
	waitFor(t, "the first changes", func() bool { return a.count() >= want && b.count() >= want })
	d.SetDestinations([]Destination{testDest("a", a.srv.URL, 1)})
	more := produceChanges(t, cl, topics.Segments, 20, 20, 5)
	waitFor(t, "the next changes", func() bool { return a.count() >= want+more })
	if b.count() != want {
		t.Errorf("removed destination b received %d changes, want %d (none after its removal)", b.count(), want)
	}
}

// TestSendAnswers: what each answer leads to, on one change.
func TestSendAnswers(t *testing.T) {
	cases := []struct {
		name      string
		answers   []int
		delivered bool
		attempts  int
	}{
		{"ok", []int{200}, true, 1},
		{"retried then ok", []int{503, 500, 204}, true, 3},
		{"429 retried", []int{429, 200}, true, 2},
		{"400 given up at once", []int{400}, false, 1},
		{"max attempts", []int{500, 500, 500, 500}, false, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := 0
			srv := newAnswering(t, func(w http.ResponseWriter) {
				w.Header().Set("Retry-After", "0")
				w.WriteHeader(c.answers[min(n, len(c.answers)-1)])
				n++
			})
			d := testDest("x", srv, 1)
			d.MaxAttempts = 3
			s := sender{client: http.DefaultClient, backoff: Backoff{Base: time.Millisecond, Max: time.Millisecond}, now: time.Now}
			out, err := s.deliver(context.Background(), newDest(d, DefaultBreaker), []Change{{ID: "t/0/1", Key: "k"}})
			if err != nil || out.delivered != c.delivered || out.attempts != c.attempts || (!out.delivered && out.reason == "") {
				t.Errorf("outcome %+v, %v; want delivered %v after %d attempts", out, err, c.delivered, c.attempts)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := map[string]time.Duration{"": 0, "3": 3 * time.Second, "junk": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second}
	for v, want := range cases {
		if got := retryAfter(v, now); got != want {
			t.Errorf("Retry-After %q: %v, want %v", v, got, want)
		}
	}
	if got := (Backoff{Base: time.Second, Max: time.Minute}).wait(1, 30*time.Second); got != 30*time.Second {
		t.Errorf("wait with Retry-After 30s: %v", got)
	}
	for n := 1; n < 40; n++ {
		if got := (Backoff{Base: time.Second, Max: time.Minute}).wait(n, 0); got <= 0 || got > time.Minute {
			t.Errorf("wait after %d: %v", n, got)
		}
	}
}

// newAnswering serves answer to every request; it returns the URL.
func newAnswering(t *testing.T, answer func(http.ResponseWriter)) string {
	rcv := newReceiver(t, testSecret, 0, 0)
	rcv.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { answer(w) })
	return rcv.srv.URL
}

// TestMetrics gathers the deliverer's metrics from a fresh registry: one
// series per destination and figure.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	d, err := New(Config{Client: []kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")}, Group: "g", Topic: "t", Registerer: reg},
		[]Destination{testDest("a", "http://127.0.0.1:1", 1), testDest("b", "http://127.0.0.1:1", 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, f := range families {
		got[f.GetName()] = len(f.GetMetric())
	}
	for _, name := range []string{"tailor_deliver_delivered_total", "tailor_deliver_failed_total", "tailor_deliver_retried_total",
		"tailor_deliver_deadlettered_total", "tailor_deliver_withheld_total", "tailor_deliver_lag_seconds"} {
		if got[name] != 2 {
			t.Errorf("%s: %d series, want 2 (one per destination)", name, got[name])
		}
	}
	d.SetDestinations([]Destination{testDest("a", "http://127.0.0.1:1", 1)})
	if s := d.Stats(); len(s) != 1 || s[0].Name != "a" {
		t.Errorf("stats after removing b: %+v", s)
	}
}

// TestDestinationsIndependent: a destination that is down holds back none
// of the others.
func TestDestinationsIndependent(t *testing.T) {
	brokers, topics, cl := testTopics(t)
	up, down := newReceiver(t, testSecret, 0, 0), newReceiver(t, testSecret, 1, 0)
	d := startDeliverer(t, brokers, topics, "g-deliver", testDest("up", up.srv.URL, 1), testDest("down", down.srv.URL, 1))
	want := produceChanges(t, cl, topics.Segments, 0, 100, 10)
	waitFor(t, "every change at up", func() bool { return up.count() >= want })
	for _, s := range d.Stats() {
		if s.Name == "down" && (s.Delivered != 0 || s.Failed == 0) {
			t.Errorf("down: %+v", s)
		}
	}
}

// TestNewDestinationStart: a destination's new group starts with the
// changes of its last max_age; older ones are not sent.
func TestNewDestinationStart(t *testing.T) {
	brokers, topics, cl := testTopics(t)
	old := time.Now().Add(-2 * time.Hour)
	var records []*kgo.Record
	for i := range 6 {
		ts := old
		if i >= 3 {
			ts = time.Now()
		}
		v := fmt.Sprintf(`{"key":"k%d","segment":"cart_abandoner","change":"entered","time":%q}`, i, ts.UTC().Format(time.RFC3339Nano))
		records = append(records, &kgo.Record{Topic: topics.Segments, Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(v), Timestamp: ts})
	}
	if err := cl.ProduceSync(context.Background(), records...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	rcv := newReceiver(t, testSecret, 0, 0)
	startDeliverer(t, brokers, topics, "g-deliver", testDest("crm", rcv.srv.URL, 1)) // max_age 1h
	waitFor(t, "the recent changes", func() bool { return rcv.count() >= 3 })
	produceChanges(t, cl, topics.Segments, 100, 4, 4) // and what follows
	waitFor(t, "the changes that follow", func() bool { return rcv.count() >= 6 })
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for _, c := range rcv.got {
		if c.Time.Before(time.Now().Add(-time.Hour)) {
			t.Errorf("a change older than max_age was sent: %+v", c)
		}
	}
}
