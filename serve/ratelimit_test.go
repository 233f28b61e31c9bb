package serve

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tailorcdp/tailor/decide"
	"github.com/tailorcdp/tailor/state"
)

// emptySource is a decide.Source without profiles or products.
type emptySource struct{}

func (emptySource) Profile(string) (*state.Profile, error)               { return nil, state.ErrNotFound }
func (emptySource) OfferStats() map[state.OfferStatKey]state.OfferCounts { return nil }
func (emptySource) Products(string) []*state.Product                     { return nil }
func (emptySource) EachProduct(func(*state.Product))                     {}
func (emptySource) Quintiles() state.RFMQuintiles                        { return state.RFMQuintiles{} }

// newDecider returns a decider with one placement, "hero", answering the
// offer "welcome", over no profiles.
func newDecider(t testing.TB, secret string) *decide.Decider {
	t.Helper()
	segs, err := state.CompileSegments(nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := decide.Compile([]decide.PlacementConfig{{Name: "hero", Fallback: "welcome"}},
		[]decide.OfferConfig{{ID: "welcome", Placements: []string{"hero"}, Content: json.RawMessage(`{"title": "Hello"}`)}}, segs.Schema())
	if err != nil {
		t.Fatal(err)
	}
	return decide.New(decide.Config{Catalog: cat, Segments: segs, IdentitySecret: secret}, emptySource{})
}

// limitedRequest is a collect or decide call from a client address.
type limitedRequest struct {
	path, key, from, origin string
}

func (r limitedRequest) do(t *testing.T, addr string) (*http.Response, ErrorBody) {
	t.Helper()
	body := `{"userId": "u", "event": "E"}`
	if r.path == "/v1/decide" {
		body = `{"anonymousId": "a", "placements": ["hero"]}`
	}
	req, _ := http.NewRequest("POST", "http://"+addr+r.path, strings.NewReader(body))
	req.SetBasicAuth(r.key, "")
	if r.from != "" {
		// What a client wrote first, then what the proxy appended.
		req.Header.Set("X-Forwarded-For", "198.51.100.77, "+r.from)
	}
	if r.origin != "" {
		req.Header.Set("Origin", r.origin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var eb ErrorBody
	if resp.StatusCode != http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil {
			t.Fatalf("%s: %d without a JSON body: %v", r.path, resp.StatusCode, err)
		}
	}
	return resp, eb
}

// TestRateLimits: a client address, or a key, that spends its burst gets
// 429 with Retry-After in whole seconds and a JSON error (with CORS, so
// that analytics.js reads Retry-After), while other addresses and keys,
// read keys and exempt addresses keep getting 200. The address is the
// proxy header's last entry, not one the client wrote.
func TestRateLimits(t *testing.T) {
	const burst = 3
	slow := RateLimit{PerSecond: 0.01, Burst: burst} // a token every 100 s: none comes back during the test
	addr, reg := startServer(t, Config{
		WriteKeys: keys("w", "w2"), ReadKeys: keys("r"), DecideKeys: keys("d", "d2"),
		CORSOrigins: []string{"https://shop.example"},
		Decisions:   newDecider(t, ""),
		RateLimits: RateLimits{CollectAddress: slow, DecideAddress: slow, DecideKey: RateLimit{PerSecond: 0.01, Burst: 2 * burst},
			Exempt: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, ProxyHeader: "X-Forwarded-For", ProxyHops: 1},
	}, &recorder{}, noProfiles{})

	for _, flood := range []limitedRequest{
		{path: "/v1/decide", key: "d", from: "203.0.113.1", origin: "https://shop.example"},
		{path: "/v1/track", key: "w", from: "203.0.113.3", origin: "https://shop.example"},
	} {
		for i := range burst {
			if resp, eb := flood.do(t, addr); resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: request %d of the burst: %d %+v", flood.path, i, resp.StatusCode, eb)
			}
		}
		resp, eb := flood.do(t, addr)
		secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		if resp.StatusCode != http.StatusTooManyRequests || err != nil || secs < 1 || secs > 100 ||
			eb.Code != "too_many_requests" || !strings.Contains(eb.Message, "Retry-After") {
			t.Errorf("%s over the burst: %d Retry-After %q %+v", flood.path, resp.StatusCode, resp.Header.Get("Retry-After"), eb)
		}
		if resp.Header.Get("Access-Control-Allow-Origin") != "https://shop.example" || resp.Header.Get("Access-Control-Expose-Headers") != "Retry-After" {
			t.Errorf("%s: 429 without CORS: %v", flood.path, resp.Header)
		}
		others := []limitedRequest{
			{path: flood.path, key: flood.key, from: "203.0.113.2"},   // another address
			{path: flood.path, key: flood.key, from: "2001:db8:1::1"}, // IPv6
			{path: flood.path, key: flood.key, from: "192.0.2.9"},     // exempt
		}
		if flood.path == "/v1/decide" {
			others = append(others,
				limitedRequest{path: "/v1/track", key: "w", from: flood.from},  // decide's flood leaves collect alone
				limitedRequest{path: "/v1/decide", key: "r", from: flood.from}) // a read key is not limited
		}
		for _, other := range others {
			if resp, eb := other.do(t, addr); resp.StatusCode != http.StatusOK {
				t.Errorf("%+v while %s is flooded: %d %+v", other, flood.path, resp.StatusCode, eb)
			}
		}
	}
	// The same /64 is one client.
	for i := range burst {
		limitedRequest{path: "/v1/track", key: "w", from: fmt.Sprintf("2001:db8:2::%d", i+1)}.do(t, addr)
	}
	if resp, _ := (limitedRequest{path: "/v1/track", key: "w", from: "2001:db8:2::ff"}).do(t, addr); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("another address of a spent /64: %d", resp.StatusCode)
	}
	// Without the header, the connection's address (127.0.0.1, not
	// exempt here).
	for range burst {
		limitedRequest{path: "/v1/track", key: "w"}.do(t, addr)
	}
	if resp, _ := (limitedRequest{path: "/v1/track", key: "w"}).do(t, addr); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("the connection's address over its burst: %d", resp.StatusCode)
	}

	// Decide key d has taken burst+2 of its 2*burst tokens (a call
	// refused by the address limit, or from an exempt address, takes
	// none): spent from fresh addresses, it is refused everywhere, and
	// d2 is not.
	for i := 0; ; i++ {
		resp, eb := limitedRequest{path: "/v1/decide", key: "d", from: fmt.Sprintf("203.0.113.%d", 100+i)}.do(t, addr)
		if resp.StatusCode == http.StatusTooManyRequests {
			if !strings.Contains(eb.Message, "this key") {
				t.Errorf("key limit: %+v", eb)
			}
			break
		}
		if i > 2*burst {
			t.Fatalf("decide key d not limited after %d calls", i)
		}
	}
	if resp, eb := (limitedRequest{path: "/v1/decide", key: "d2", from: "203.0.113.200"}).do(t, addr); resp.StatusCode != http.StatusOK {
		t.Errorf("decide key d2 while d is spent: %d %+v", resp.StatusCode, eb)
	}
	if got := counter(t, reg, "tailor_http_rate_limited_total", "decide", "key"); got != 1 {
		t.Errorf("tailor_http_rate_limited_total{api=decide,limit=key} = %v, want 1", got)
	}
}

// counter returns the value of a registered counter with the given
// label values (in the order of the label names).
func counter(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for i, l := range m.GetLabel() {
				if i >= len(labels) || l.GetValue() != labels[i] {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// TestFloodServesOthers: many clients flooding from one address at once
// get 429s, every other address's calls meanwhile get 200 (run it with
// -race).
func TestFloodServesOthers(t *testing.T) {
	addr, _ := startServer(t, Config{
		RateLimits: RateLimits{CollectAddress: RateLimit{PerSecond: 0.01, Burst: 5}, ProxyHeader: "X-Forwarded-For", ProxyHops: 1},
	}, &recorder{}, noProfiles{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for range 8 {
		wg.Go(func() {
			for range 25 {
				resp, _ := limitedRequest{path: "/v1/track", key: "w", from: "203.0.113.66"}.do(t, addr)
				mu.Lock()
				codes[resp.StatusCode]++
				mu.Unlock()
			}
		})
	}
	for i := range 50 {
		if resp, eb := (limitedRequest{path: "/v1/track", key: "w", from: fmt.Sprintf("198.51.100.%d", i)}).do(t, addr); resp.StatusCode != http.StatusOK {
			t.Errorf("another address during the flood: %d %+v", resp.StatusCode, eb)
		}
	}
	wg.Wait()
	if codes[http.StatusOK] != 5 || codes[http.StatusTooManyRequests] != 195 {
		t.Errorf("the flood's answers by status: %v, want 5 200s and 195 429s", codes)
	}
}

// TestLimitersBounded: buckets for ever new addresses stay within their
// bound, the least recently used going first.
func TestLimitersBounded(t *testing.T) {
	const bound = 64
	b := newBuckets[netip.Addr](RateLimit{PerSecond: 1, Burst: 1}, bound)
	now := time.Now()
	for i := range 10 * bound {
		b.take(netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)}), now)
	}
	n := 0
	for i := range b.shards {
		n += b.shards[i].lru.Len()
	}
	if n > bound {
		t.Errorf("%d buckets kept, bound %d", n, bound)
	}
	// A spent bucket in use is kept: its address stays refused.
	hot := netip.MustParseAddr("198.51.100.1")
	b.take(hot, now)
	for i := range 10 * bound {
		if _, ok := b.take(hot, now); ok {
			t.Fatal("a spent bucket was refilled")
		}
		b.take(netip.AddrFrom4([4]byte{192, 0, byte(i >> 8), byte(i)}), now)
	}
}

func TestForwardedAddr(t *testing.T) {
	for _, tc := range []struct {
		header string
		hops   int
		want   string
	}{
		{"203.0.113.1", 1, "203.0.113.1"},
		{"198.51.100.9, 203.0.113.1", 1, "203.0.113.1"},
		{"198.51.100.9,203.0.113.1 , 10.0.0.1", 2, "203.0.113.1"},
		{"2001:db8::1", 1, "2001:db8::1"},
		{"[2001:db8::1]:4711", 1, "2001:db8::1"},
		{"203.0.113.1:4711", 1, "203.0.113.1"},
		{"::ffff:203.0.113.1", 1, "203.0.113.1"},
		{"fe80::1%eth0", 1, "fe80::1"},
		{"203.0.113.1", 2, ""},
		{"", 1, ""},
		{"unknown", 1, ""},
		{"203.0.113.1, ", 1, ""},
	} {
		a, ok := forwardedAddr([]byte(tc.header), tc.hops)
		if got := a.String(); ok != (tc.want != "") || ok && got != tc.want {
			t.Errorf("%q hops %d: %s %v, want %q", tc.header, tc.hops, got, ok, tc.want)
		}
	}
}

// FuzzForwardedAddr compares forwardedAddr with the plain reading of its
// definition: split at commas, take the hops-th from the right.
func FuzzForwardedAddr(f *testing.F) {
	for _, s := range []string{"203.0.113.1", "a, 2001:db8::1", "[::1]:80,1.2.3.4", ",,", "::ffff:1.2.3.4%x"} {
		f.Add(s, 1)
		f.Add(s, 2)
	}
	f.Fuzz(func(t *testing.T, h string, hops int) {
		hops = max(1, hops%8)
		got, ok := forwardedAddr([]byte(h), hops)
		parts := strings.Split(h, ",")
		var want netip.Addr
		wantOK := false
		if len(parts) >= hops {
			s := strings.TrimSpace(parts[len(parts)-hops])
			if a, err := netip.ParseAddr(s); err == nil {
				want, wantOK = a, true
			} else if ap, err := netip.ParseAddrPort(s); err == nil {
				want, wantOK = ap.Addr(), true
			}
			want = want.Unmap().WithZone("")
		}
		if ok != wantOK || ok && (got != want || !got.IsValid() || got.Zone() != "") {
			t.Fatalf("%q hops %d: %v %v, want %v %v", h, hops, got, ok, want, wantOK)
		}
	})
}
