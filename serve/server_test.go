package serve

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fastjson"

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/state"
)

// recorder is an Events that keeps what it is given.
type recorder struct {
	mu      sync.Mutex
	records []*kgo.Record
}

func (r *recorder) Produce(_ context.Context, recs ...*kgo.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, recs...)
	return nil
}

type noProfiles struct{}

func (noProfiles) ProfileView(string) (state.View, error) { return state.View{}, state.ErrNotFound }
func (noProfiles) Ready() bool                            { return true }
func (noProfiles) SegmentSizes() map[string]int64         { return nil }
func (noProfiles) Model() *state.Model                    { return &state.Model{} }
func (noProfiles) Owner(string) (string, bool)            { return "", true }

// TestConcurrentCollect sends many requests at once (run it with -race):
// every event arrives once, intact, stamped and keyed by its profile key.
func TestConcurrentCollect(t *testing.T) {
	rec := &recorder{}
	s, err := New(Config{WriteKeys: keys("w"), ReadKeys: keys("r"), EventsTopic: "events",
		Limits: event.DefaultLimits(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		rec, noProfiles{}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	defer s.Shutdown(context.Background())

	const clients, perClient = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		wg.Go(func() {
			for i := range perClient {
				body := fmt.Sprintf(`{"batch": [{"type": "track", "userId": "u%d", "event": "E", "properties": {"i": %d}}, {"type": "page", "anonymousId": "a%d", "messageId": "m%d-%d"}]}`, c, i, c, c, i)
				req, _ := http.NewRequest("POST", "http://"+ln.Addr().String()+"/v1/batch", strings.NewReader(body))
				req.SetBasicAuth("w", "")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs <- fmt.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(rec.records) != 2*clients*perClient {
		t.Fatalf("%d records, want %d", len(rec.records), 2*clients*perClient)
	}
	ids := make(map[string]bool)
	for _, r := range rec.records {
		v, err := fastjson.ParseBytes(r.Value)
		if err != nil {
			t.Fatalf("record %q: %v", r.Value, err)
		}
		key := string(v.GetStringBytes("userId"))
		if key == "" {
			key = string(v.GetStringBytes("anonymousId"))
		}
		id := string(v.GetStringBytes("messageId"))
		if string(r.Key) != key || r.Topic != "events" || id == "" || ids[id] || !v.Exists("receivedAt") || !v.Exists("type") {
			t.Fatalf("record key %q topic %q: %s", r.Key, r.Topic, r.Value)
		}
		ids[id] = true
	}
}

// TestValidKey: the label returned is that of the key matched, whichever
// its place; no key, an empty one or a prefix of one matches nothing.
func TestValidKey(t *testing.T) {
	list := []Key{{Label: "ops", Secret: "s3cret"}, {Label: "ci", Secret: "other"}, {Label: "web", Secret: "s3cret-2"}}
	for _, tc := range []struct {
		key, label string
		ok         bool
	}{
		{"s3cret", "ops", true},
		{"other", "ci", true},
		{"s3cret-2", "web", true},
		{"s3cre", "", false},
		{"", "", false},
		{"ops", "", false},
	} {
		if label, ok := validKey(tc.key, list); label != tc.label || ok != tc.ok {
			t.Errorf("validKey(%q) = %q, %v; want %q, %v", tc.key, label, ok, tc.label, tc.ok)
		}
	}
	if _, ok := validKey("x", nil); ok {
		t.Error("a key matched an empty list")
	}
}
