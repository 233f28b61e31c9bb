package serve

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/state"
)

// startServer serves cfg on a loopback port and returns its address.
func startServer(t *testing.T, cfg Config, events Events, profiles Profiles) (string, *prometheus.Registry) {
	t.Helper()
	if cfg.WriteKeys == nil {
		cfg.WriteKeys, cfg.ReadKeys = keys("w"), keys("r")
	}
	cfg.EventsTopic = "events"
	if cfg.Limits == (event.Limits{}) {
		cfg.Limits = event.DefaultLimits()
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	s, err := New(cfg, events, profiles, reg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return ln.Addr().String(), reg
}

// rawRequest sends text on a new connection and reads the answer.
func rawRequest(t *testing.T, addr, text string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, text); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%.60q: %v", text, err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func post(t *testing.T, addr, path, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+addr+path, strings.NewReader(body))
	req.SetBasicAuth("w", "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// stuck is an Events whose brokers never answer.
type stuck struct{}

func (stuck) Produce(ctx context.Context, _ ...*kgo.Record) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestProduceTimeout: when Kafka does not acknowledge, collect answers 503
// with Retry-After once ProduceTimeout has passed, never much later.
func TestProduceTimeout(t *testing.T) {
	const timeout = 500 * time.Millisecond
	addr, _ := startServer(t, Config{ProduceTimeout: timeout}, stuck{}, noProfiles{})
	for _, path := range []string{"/v1/track", "/v1/batch"} {
		body := `{"userId": "u", "event": "E"}`
		if path == "/v1/batch" {
			body = `{"batch": [{"type": "track", "userId": "u", "event": "E"}]}`
		}
		start := time.Now()
		resp, text := post(t, addr, path, body)
		// A liveness bound of the contract, with generous slack.
		if took := time.Since(start); took > timeout+2*time.Second {
			t.Errorf("%s answered after %s, want within %s", path, took, timeout)
		}
		var eb ErrorBody
		json.Unmarshal([]byte(text), &eb)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" || eb.Code != "unavailable" || !strings.Contains(eb.Message, "send them again later") {
			t.Errorf("%s: %d Retry-After %q %s", path, resp.StatusCode, resp.Header.Get("Retry-After"), text)
		}
	}
}

// TestBatchVerdicts: a batch stores its valid events, as JSON the
// consumer reads, and lists the others; with none valid it is a 400.
func TestBatchVerdicts(t *testing.T) {
	rec := &recorder{}
	addr, _ := startServer(t, Config{}, rec, noProfiles{})
	big := strings.Repeat("x", 32<<10-120) // fits the limit, not once stamped
	resp, text := post(t, addr, "/v1/batch", `{"batch": [
		{"type": "track", "userId": "a\u0007", "event": "E\u0000"},
		{"type": "track", "userId": "b", "event": "Order Completed", "properties": {"revenue": "$5"}},
		{"type": "track", "userId": "c", "event": "Order Completed", "properties": {"revenue": "5.10"}},
		{"type": "track", "userId": "d", "event": "E", "properties": {"p": "`+big+`"}}]}`)
	var answer BatchAnswer
	if err := json.Unmarshal([]byte(text), &answer); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, text)
	}
	if answer.Success || answer.Code != "partly_stored" || answer.Accepted != 2 || len(answer.Refused) != 2 ||
		answer.Refused[0].Index != 1 || answer.Refused[0].Field != "batch[1].properties.revenue" ||
		answer.Refused[1].Index != 3 || answer.Refused[1].Field != "batch[3]" || !strings.Contains(answer.Refused[1].Reason, "once stamped") {
		t.Errorf("answer %s", text)
	}
	consumer := event.NewParser(event.DefaultLimits())
	if len(rec.records) != 2 {
		t.Fatalf("%d records stored, want 2", len(rec.records))
	}
	for i, want := range []string{"a\a", "c"} {
		r := rec.records[i]
		ev, err := consumer.Parse(r.Value, 0, time.Time{})
		if err != nil || ev.Key() != want || string(r.Key) != want {
			t.Errorf("record %s (key %q): %v, want key %q", r.Value, r.Key, err, want)
		}
		if amount, ok := ev.OrderAmount(); want == "c" && (amount.String() != "5.1" || !ok || !strings.Contains(string(r.Value), `"revenue":5.10`)) {
			t.Errorf("record %s: amount %v", r.Value, amount)
		}
	}

	resp, text = post(t, addr, "/v1/batch", `{"batch": [{"type": "track", "userId": "b"}]}`)
	if err := json.Unmarshal([]byte(text), &answer); err != nil || resp.StatusCode != http.StatusBadRequest ||
		answer.Code != "invalid_batch" || answer.Field != "batch[0].event" || answer.Error != answer.Message || len(answer.Refused) != 1 {
		t.Errorf("no valid event: %d %s", resp.StatusCode, text)
	}
	if len(rec.records) != 2 {
		t.Errorf("%d records stored, want still 2", len(rec.records))
	}
}

// keyed is a Profiles that records the keys asked for and, when owner is
// set, says another instance holds every key.
type keyed struct {
	noProfiles
	mu    sync.Mutex
	asked []string
	owner string
}

func (k *keyed) ProfileView(key string) (state.View, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.asked = append(k.asked, key)
	return state.View{Key: key}, nil
}

func (k *keyed) Owner(string) (string, bool) { return k.owner, k.owner == "" }

// TestProfileKeys: the key is the path after /v1/profiles/ as sent,
// percent-decoded, also when the request is sent on to the key's owner:
// no dot segment or encoded slash reaches another profile.
func TestProfileKeys(t *testing.T) {
	owner := &keyed{}
	ownerAddr, _ := startServer(t, Config{}, &recorder{}, owner)
	front := &keyed{owner: ownerAddr}
	frontAddr, _ := startServer(t, Config{}, &recorder{}, front)
	for path, want := range map[string]string{
		"/v1/profiles/c%2F..%2Fd":         "c/../d",
		"/v1/profiles/..":                 "..",
		"/v1/profiles/%2E%2E":             "..",
		"/v1/profiles/../segments":        "../segments",
		"/v1/profiles/a/../../b?x=1":      "a/../../b",
		"/v1/profiles/%00%07%20%3F%25":    "\x00\a ?%",
		"/v1/profiles/caf%C3%A9":          "café",
		"/v1/profiles/a%2Fb":              "a/b",
		"/v1/profiles//double":            "/double",
		"/v1/profiles/trailing/":          "trailing/",
		"/v1/profiles/plus+sign":          "plus+sign",
		"/v1/profiles/semi;colon=x":       "semi;colon=x",
		"/v1/profiles/%252E%252E":         "%2E%2E",
		"/v1/profiles/http:%2F%2Fexample": "http://example",
	} {
		resp, text := rawRequest(t, frontAddr, "GET "+path+" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer r\r\nConnection: close\r\n\r\n")
		var v state.View
		if err := json.Unmarshal([]byte(text), &v); err != nil || resp.StatusCode != http.StatusOK || v.Key != want {
			t.Errorf("GET %s: %d %s, want the profile of %q", path, resp.StatusCode, text, want)
		}
	}
	owner.mu.Lock()
	if len(owner.asked) != 14 || len(front.asked) != 0 {
		t.Errorf("the owner was asked %d keys and the front %d, want 14 and 0", len(owner.asked), len(front.asked))
	}
	owner.mu.Unlock()

	for path, want := range map[string]string{
		"/v1/profiles/a%zz":   "400 not percent-encoded properly",
		"/v1/x/../profiles/d": "404 send the profile key right after /v1/profiles/",
		"/v1/%70rofiles/d":    "404 send the profile key right after /v1/profiles/",
		"/v1/profiles/":       "400 profile key is empty",
		"/v1//profiles/x":     "404 send the profile key right after /v1/profiles/",
	} {
		resp, text := rawRequest(t, ownerAddr, "GET "+path+" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer r\r\nConnection: close\r\n\r\n")
		if got := fmt.Sprintf("%d %s", resp.StatusCode, text); !strings.HasPrefix(got, want[:4]) || !strings.Contains(text, want[4:]) {
			t.Errorf("GET %s: %s, want %s", path, got, want)
		}
	}
}

// health is an Events that reports a produce outcome.
type health struct {
	recorder
	ok    bool
	since time.Time
	err   error
}

func (h *health) Health() (bool, time.Time, error) { return h.ok, h.since, h.err }

type notReady struct{ noProfiles }

func (notReady) Ready() bool { return false }

// TestReadyz: the status says whether reads are served; the body tells
// serving and collecting apart.
func TestReadyz(t *testing.T) {
	since := time.Date(2026, 12, 4, 17, 0, 0, 0, time.UTC)
	failing := &health{since: since, err: errors.New("produce to events: context deadline exceeded")}
	tests := []struct {
		events   Events
		profiles Profiles
		status   int
		want     Readiness
	}{
		{&recorder{}, noProfiles{}, 200, Readiness{Ready: true, Status: "ready", Serve: true, Collect: true}},
		{&health{ok: true, since: since}, noProfiles{}, 200, Readiness{Ready: true, Status: "ready", Serve: true, Collect: true, CollectSince: "2026-12-04T17:00:00Z"}},
		{failing, noProfiles{}, 200, Readiness{Ready: true, Status: "ready", Serve: true, CollectSince: "2026-12-04T17:00:00Z", CollectError: failing.err.Error()}},
		{failing, notReady{}, 503, Readiness{Status: "catching up", CollectSince: "2026-12-04T17:00:00Z", CollectError: failing.err.Error(),
			Error: "not every assigned partition has applied its backlog yet"}},
	}
	for i, tc := range tests {
		addr, _ := startServer(t, Config{}, tc.events, tc.profiles)
		resp, text := rawRequest(t, addr, "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		var got Readiness
		if err := json.Unmarshal([]byte(text), &got); err != nil || resp.StatusCode != tc.status || got != tc.want {
			t.Errorf("case %d: %d %s, want %d %+v", i, resp.StatusCode, text, tc.status, tc.want)
		}
	}
}

// gauge reads the value of a metric without labels from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestBodyBudget: large bodies are read only within the byte budget; a
// request finding it exhausted waits BodyWait, then gets 503 with
// Retry-After, and the budget comes back as requests finish.
func TestBodyBudget(t *testing.T) {
	rec := &recorder{}
	// The smallest budget: two of the largest bodies (1 MiB configs, gzipped).
	addr, reg := startServer(t, Config{MaxBodyBytesInFlight: 1, BodyWait: 200 * time.Millisecond}, rec, noProfiles{})
	budget := int64(2 * wireLimit(maxConfigBody))

	const size = 500_000 // under the batch limit, 512,000 bytes
	body := `{"batch": [{"type": "track", "userId": "u", "event": "E"}]}`
	body += strings.Repeat(" ", size-len(body))
	head := fmt.Sprintf("POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer w\r\nContent-Length: %d\r\n\r\n", size)
	held := int(budget / size) // bodies that fit at once
	conns := make([]net.Conn, held)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Half the body: the handler holds its reservation while it waits
		// for the rest.
		if _, err := io.WriteString(c, head+body[:size/2]); err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	deadline := time.Now().Add(10 * time.Second)
	for gauge(t, reg, "tailor_http_body_bytes_in_flight") < float64(held*size) {
		if time.Now().After(deadline) {
			t.Fatalf("%v bytes in flight, want %d", gauge(t, reg, "tailor_http_body_bytes_in_flight"), held*size)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := gauge(t, reg, "tailor_http_body_bytes_in_flight"); got > float64(budget) {
		t.Fatalf("%v bytes in flight, over the budget of %d", got, budget)
	}

	// One more does not fit: 503, Retry-After, once the wait is over. (It
	// sends what the server reads with the headers: unread bytes would
	// make the close reset the connection.)
	resp, text := rawRequest(t, addr, head+body[:smallBody])
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" || !strings.Contains(text, `"code":"busy"`) {
		t.Errorf("over the budget: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), text)
	}
	// Small bodies do not wait.
	if resp, text := post(t, addr, "/v1/track", `{"userId": "small", "event": "E"}`); resp.StatusCode != http.StatusOK {
		t.Errorf("small body while the budget is taken: %d %s", resp.StatusCode, text)
	}

	// The held requests complete, and give their bytes back.
	for _, c := range conns {
		if _, err := io.WriteString(c, body[size/2:]); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("held request: %v %v", resp, err)
		}
	}
	if got := gauge(t, reg, "tailor_http_body_bytes_in_flight"); got != 0 {
		t.Errorf("%v bytes in flight after every request ended", got)
	}
	if resp, text := rawRequest(t, addr, head+body); resp.StatusCode != http.StatusOK {
		t.Errorf("after the budget came back: %d %s", resp.StatusCode, text)
	}
}

// FuzzProfileKey: any key, percent-encoded after /v1/profiles/, reads the
// profile of exactly that key.
func FuzzProfileKey(f *testing.F) {
	for _, k := range []string{"..", "c/../d", "/", "a b?c#%", "\x00\a", "café", "%2e%2e", "./x/.", "//"} {
		f.Add(k)
	}
	profiles := &keyed{}
	s, err := New(Config{WriteKeys: keys("w"), ReadKeys: keys("r"), EventsTopic: "events",
		Limits: event.DefaultLimits(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		&recorder{}, profiles, prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	ln := fasthttputil.NewInmemoryListener()
	go s.Serve(ln)
	defer ln.Close()
	client := &fasthttp.HostClient{Addr: "x", DisablePathNormalizing: true, Dial: func(string) (net.Conn, error) { return ln.Dial() }}
	maxKey := event.DefaultLimits().MaxIDLength
	f.Fuzz(func(t *testing.T, key string) {
		if key == "" {
			return
		}
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://x/v1/profiles/" + url.PathEscape(key))
		req.URI().DisablePathNormalizing = true
		req.Header.Set("Authorization", "Bearer r")
		if err := client.Do(req, resp); err != nil {
			t.Fatal(err)
		}
		if len(key) > maxKey {
			// No profile has such a key (ids are at most MaxIDLength
			// bytes); a request line this long may not even fit the
			// server's read buffer. Whatever the answer, not a 5xx.
			if resp.StatusCode() >= 500 {
				t.Fatalf("key of %d bytes: %d %s", len(key), resp.StatusCode(), resp.Body())
			}
			return
		}
		var v state.View
		if err := json.Unmarshal(resp.Body(), &v); err != nil || resp.StatusCode() != http.StatusOK {
			t.Fatalf("key %q: %d %s", key, resp.StatusCode(), resp.Body())
		}
		profiles.mu.Lock()
		asked := profiles.asked[len(profiles.asked)-1]
		profiles.mu.Unlock()
		if asked != key {
			t.Fatalf("GET %s read the profile of %q, want %q", req.URI().PathOriginal(), asked, key)
		}
	})
}

// TestTooLargeAnswered: a client that sends a body over the limit without
// Expect: 100-continue reads the 413, not a connection reset, however
// much of the body it had still to send when the server refused it.
func TestTooLargeAnswered(t *testing.T) {
	addr, _ := startServer(t, Config{}, &recorder{}, noProfiles{})
	body := `{"batch": [{"type": "track", "userId": "u", "event": "E"}]}` + strings.Repeat(" ", 2<<20)
	for i := range 20 {
		resp, text := post(t, addr, "/v1/batch", body)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(text, `"code":"too_large"`) {
			t.Fatalf("attempt %d: %d %s", i, resp.StatusCode, text)
		}
	}
}
