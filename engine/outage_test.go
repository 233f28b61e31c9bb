package engine_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/state"
)

// collectBound is how long collect may take to answer while the broker is
// away: serve's default produce timeout (5 s), with slack for a loaded
// test machine.
const collectBound = 5*time.Second + 2*time.Second

// privateKafka is an Apache Kafka broker of one test, started with
// deploy/kafka/kafka.sh from the cached jars, on ports of its own.
type privateKafka struct {
	t    *testing.T
	env  []string
	home string
	addr string
	repo string
}

// startPrivateKafka starts a broker for t, or skips t when Java or the
// cached Kafka jars (deploy/kafka/kafka.sh fetch) are absent.
func startPrivateKafka(t *testing.T) *privateKafka {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a Kafka broker of its own")
	}
	if _, err := exec.LookPath("java"); err != nil {
		t.Skip("needs Java to run a Kafka broker of its own")
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	cache := os.Getenv("TAILOR_KAFKA_HOME")
	if cache == "" {
		cache = filepath.Join(repo, ".cache", "kafka")
	}
	libs := filepath.Join(cache, "libs")
	if _, err := os.Stat(filepath.Join(libs, ".complete")); err != nil {
		t.Skipf("needs the Kafka jars in %s: run deploy/kafka/kafka.sh fetch", libs)
	}
	home := t.TempDir()
	if err := os.Symlink(libs, filepath.Join(home, "libs")); err != nil {
		t.Fatal(err)
	}
	port, cport := freePort(t), freePort(t)
	k := &privateKafka{t: t, home: home, repo: repo, addr: "127.0.0.1:" + port,
		env: append(os.Environ(), "KAFKA_PORT="+port, "KAFKA_CONTROLLER_PORT="+cport, "TAILOR_KAFKA_HOME="+home)}
	k.script("start")
	t.Cleanup(func() { k.script("stop") })
	return k
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

func (k *privateKafka) script(cmd string) {
	k.t.Helper()
	c := exec.Command(filepath.Join(k.repo, "deploy", "kafka", "kafka.sh"), cmd)
	c.Env = k.env
	if out, err := c.CombinedOutput(); err != nil {
		k.t.Fatalf("kafka.sh %s: %v\n%s", cmd, err, out)
	}
}

// kill ends the broker process with SIGKILL, as a crash would.
func (k *privateKafka) kill() {
	k.t.Helper()
	b, err := os.ReadFile(filepath.Join(k.home, "run", "kafka.pid"))
	if err != nil {
		k.t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		k.t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		k.t.Fatal(err)
	}
	for syscall.Kill(pid, 0) == nil {
		time.Sleep(10 * time.Millisecond)
	}
}

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

// TestCollectBrokerOutage kills the Apache Kafka broker under light load
// and starts it again: collect answers every request within its bound,
// 503 with Retry-After while the broker is away, /readyz says collect is
// failing, and after the restart every acknowledged event, and every
// event sent again after a 503, is applied exactly once.
func TestCollectBrokerOutage(t *testing.T) {
	k := startPrivateKafka(t)
	cfg := testConfig(t, []string{k.addr}, "outage.", t.TempDir())
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
	k.kill()
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

	k.script("resume")
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
