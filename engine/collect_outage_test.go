package engine_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/state"
)

// collectBound is how long collect may take to answer while the broker is
// away: serve's default produce timeout (5 s), with slack for a loaded
// test machine.
const collectBound = 5*time.Second + 2*time.Second

// loader sends track events the way Segment's SDKs do: each with its own
// messageId, sent again after a 5xx until it is acknowledged.
type loader struct {
	url  string
	http http.Client

	mu      sync.Mutex
	acked   int
	refused int            // 503 answers
	sent    map[string]int // acknowledged events per profile key
	worst   time.Duration
	bad     []string // answers outside the contract
	stop    chan struct{}
	done    sync.WaitGroup
}

func (l *loader) run(workers int) {
	for w := range workers {
		l.done.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				key := fmt.Sprintf("out-%d", (w+i)%5)
				body := fmt.Sprintf(`{"userId": %q, "event": "Load", "messageId": "w%d-%d"}`, key, w, i)
				for !l.send(body) {
					time.Sleep(100 * time.Millisecond) // an SDK's backoff, shortened
				}
				l.mu.Lock()
				l.sent[key]++
				l.mu.Unlock()
			}
		})
	}
}

// send posts one event and reports whether it was acknowledged.
func (l *loader) send(body string) bool {
	req, _ := http.NewRequest("POST", l.url+"/v1/track", strings.NewReader(body))
	req.SetBasicAuth(writeKey, "")
	start := time.Now()
	resp, err := l.http.Do(req)
	took := time.Since(start)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.worst = max(l.worst, took)
	if took > collectBound {
		l.bad = append(l.bad, fmt.Sprintf("answered after %s", took))
	}
	if err != nil {
		l.bad = append(l.bad, err.Error())
		return false
	}
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		l.acked++
		return true
	case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "" && strings.Contains(b.String(), `"code":"unavailable"`):
		l.refused++
		return false
	}
	l.bad = append(l.bad, fmt.Sprintf("%d %s", resp.StatusCode, b.String()))
	return false
}

func (l *loader) counts() (acked, refused int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acked, l.refused
}

// TestCollectBrokerOutage kills the broker (Apache Kafka, and the
// embedded one) under light load and starts it again: collect answers
// every request within its bound, 503 with Retry-After while the broker
// is away, /readyz says collect is failing, and after the restart every
// acknowledged event, and every event sent again after a 503, is applied
// exactly once.
func TestCollectBrokerOutage(t *testing.T) {
	eachKillableBroker(t, testCollectBrokerOutage)
}

func testCollectBrokerOutage(t *testing.T, broker killableBroker) {
	cfg := testConfig(t, broker.Addrs(), "outage.", t.TempDir())
	e := startEngine(t, cfg)
	l := &loader{url: e.url, http: http.Client{Timeout: time.Minute}, sent: map[string]int{}, stop: make(chan struct{})}
	l.run(2)
	stopped := false
	stopLoad := func() {
		if !stopped {
			close(l.stop)
			l.done.Wait()
			stopped = true
		}
	}
	defer stopLoad()

	waitFor(t, "events acknowledged before the outage", time.Minute, func() bool { a, _ := l.counts(); return a >= 20 })
	broker.Kill(t)
	waitFor(t, "503 answers while the broker is away", time.Minute, func() bool { _, r := l.counts(); return r >= 3 })
	var ready struct {
		Ready        bool   `json:"ready"`
		Collect      bool   `json:"collect"`
		CollectError string `json:"collect_error"`
	}
	json.Unmarshal(do(t, "GET", e.url+"/readyz", "", nil, nil).Body, &ready)
	if ready.Collect || ready.CollectError == "" {
		t.Errorf("/readyz during the outage: %+v, want collect false with its error", ready)
	}

	broker.Start(t)
	before, _ := l.counts()
	waitFor(t, "events acknowledged after the restart", 2*time.Minute, func() bool { a, _ := l.counts(); return a >= before+20 })
	stopLoad()
	json.Unmarshal(do(t, "GET", e.url+"/readyz", "", nil, nil).Body, &ready)
	if !ready.Collect {
		t.Errorf("/readyz after the restart: %+v, want collect true", ready)
	}

	l.mu.Lock()
	acked, refused, worst, bad := l.acked, l.refused, l.worst, l.bad
	sent := l.sent
	l.mu.Unlock()
	t.Logf("%d acknowledged, %d answered 503 and sent again; slowest answer %s", acked, refused, worst)
	if len(bad) > 0 {
		t.Errorf("%d answers outside the contract (200, or 503 with Retry-After, within %s): %q", len(bad), collectBound, bad[:min(len(bad), 5)])
	}
	for key, n := range sent {
		e.waitProfile(t, key, func(v state.View) bool { return v.Events["Load"] >= uint64(n) })
		if v, _ := e.profile(t, key); v.Events["Load"] != uint64(n) {
			t.Errorf("profile %s counts %d events, %d were acknowledged", key, v.Events["Load"], n)
		}
	}
}
