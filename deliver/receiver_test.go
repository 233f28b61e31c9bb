package deliver

import (
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// receiver is a webhook receiver for the tests: it checks each request's
// signature, can fail at random (5xx, slow answers past the timeout,
// closed connections), and records the changes it answered 2xx to.
type receiver struct {
	t      testing.TB
	secret []byte
	srv    *httptest.Server

	mu       sync.Mutex
	failRate float64 // share of requests that fail
	slow     time.Duration
	rng      *rand.Rand
	got      []Change        // in the order answered 2xx
	seen     map[string]bool // ids answered 2xx
	requests int
	badSigs  int
}

func newReceiver(t testing.TB, secret string, failRate float64, slow time.Duration) *receiver {
	r := &receiver{t: t, secret: []byte(secret), failRate: failRate, slow: slow, rng: rand.New(rand.NewPCG(1, 2)), seen: map[string]bool{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) setFailRate(f float64) {
	r.mu.Lock()
	r.failRate = f
	r.mu.Unlock()
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	raw, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	r.mu.Lock()
	r.requests++
	if Verify(r.secret, req.Header.Get(SignatureHeader), raw, time.Now(), 5*time.Minute) != nil {
		r.badSigs++
		r.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	fail := r.rng.Float64() < r.failRate
	mode := r.rng.IntN(4)
	r.mu.Unlock()
	if fail {
		switch mode {
		case 0:
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
		case 1:
			w.WriteHeader(http.StatusInternalServerError)
		case 2: // slower than the sender's timeout
			select {
			case <-time.After(r.slow):
			case <-req.Context().Done():
			}
			w.WriteHeader(http.StatusGatewayTimeout)
		default: // a closed connection
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
					return
				}
			}
			w.WriteHeader(http.StatusBadGateway)
		}
		return
	}
	changes, err := decodeBody(raw)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	ids := make([]string, len(changes))
	for i, c := range changes {
		ids[i] = c.ID
	}
	if got := req.Header.Get(IdempotencyHeader); got != strings.Join(ids, ",") {
		r.t.Errorf("Idempotency-Key %q, body ids %v", got, ids)
	}
	r.mu.Lock()
	for _, c := range changes {
		r.got = append(r.got, c)
		r.seen[c.ID] = true
	}
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// decodeBody reads one change or {"changes": [...]}.
func decodeBody(raw []byte) ([]Change, error) {
	var batch struct {
		Changes []Change `json:"changes"`
	}
	if err := json.Unmarshal(raw, &batch); err == nil && batch.Changes != nil {
		return batch.Changes, nil
	}
	var c Change
	err := json.Unmarshal(raw, &c)
	return []Change{c}, err
}

// count returns how many distinct changes were answered 2xx.
func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// checkOrder checks that each key's changes first arrived in the order
// of their offsets (a change delivered again after a restart is a repeat,
// not a reordering).
func (r *receiver) checkOrder(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	first := map[string]bool{}
	last := map[string][2]int64{} // key: partition, offset of its latest first arrival
	for _, c := range r.got {
		if first[c.ID] {
			continue
		}
		first[c.ID] = true
		p, o := idOffset(t, c.ID)
		if l, ok := last[c.Key]; ok && (l[0] != p || l[1] > o) {
			t.Errorf("key %s: change %s arrived after offset %d/%d", c.Key, c.ID, l[0], l[1])
		}
		last[c.Key] = [2]int64{p, o}
	}
}

func idOffset(t testing.TB, id string) (int64, int64) {
	parts := strings.Split(id, "/")
	p, err1 := strconv.ParseInt(parts[len(parts)-2], 10, 32)
	o, err2 := strconv.ParseInt(parts[len(parts)-1], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("id %q is not topic/partition/offset", id)
	}
	return p, o
}
