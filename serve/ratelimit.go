package serve

import (
	"bytes"
	"hash/maphash"
	"math"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"golang.org/x/time/rate"
)

// Rate limits (decision 0023): token buckets per client address and per
// key on collect and decide, beyond which a request is answered 429 with
// Retry-After (whole seconds, which analytics.js waits before sending
// again) without being read further. Calls with a read key, from the
// site's servers, are not limited; nor are the exempt addresses (by
// default this machine's and private networks', where proxies and
// backends live).

// RateLimit is a token bucket: PerSecond requests a second on average,
// Burst at once. PerSecond 0 is no limit.
type RateLimit struct {
	PerSecond float64
	Burst     int
}

// RateLimits configures the server's rate limits.
type RateLimits struct {
	// CollectAddress and DecideAddress limit each client address (IPv6:
	// each /64, which one subscriber usually holds whole).
	CollectAddress, DecideAddress RateLimit
	// CollectKey limits each write key; DecideKey each decide key.
	CollectKey, DecideKey RateLimit
	// Exempt addresses are never limited.
	Exempt []netip.Prefix
	// ProxyHeader, when set, names the header the client's address is
	// read from (X-Forwarded-For): the ProxyHops-th entry from its right.
	ProxyHeader string
	ProxyHops   int
}

// PrivatePrefixes are the loopback, private and link-local prefixes:
// what the configuration's "private" exempts.
func PrivatePrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range []string{"127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
		"::1/128", "fc00::/7", "fe80::/10"} {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

// maxAddressLimiters bounds the per-address limiters each API keeps: the
// least recently used is dropped for a new address, so that varying the
// address cannot grow memory (about 200 bytes each).
const maxAddressLimiters = 1 << 16

// limiterShards splits the limiters' lock.
const limiterShards = 16

// buckets are the token buckets of one API and one kind of client, made
// on first use and kept up to max (least recently used dropped).
type buckets[K comparable] struct {
	limit  rate.Limit
	burst  int
	seed   maphash.Seed
	shards [limiterShards]struct {
		mu  sync.Mutex
		lru *simplelru.LRU[K, *rate.Limiter]
	}
}

// newBuckets returns the buckets of l, or nil when l is no limit.
func newBuckets[K comparable](l RateLimit, max int) *buckets[K] {
	if l.PerSecond <= 0 {
		return nil
	}
	b := &buckets[K]{limit: rate.Limit(l.PerSecond), burst: max1(l.Burst), seed: maphash.MakeSeed()}
	for i := range b.shards {
		b.shards[i].lru, _ = simplelru.NewLRU[K, *rate.Limiter](max1(max/limiterShards), nil)
	}
	return b
}

func max1(n int) int { return max(n, 1) }

// take takes a token for k at now, or returns how long until one is
// free.
func (b *buckets[K]) take(k K, now time.Time) (wait time.Duration, ok bool) {
	s := &b.shards[maphash.Comparable(b.seed, k)%limiterShards]
	s.mu.Lock()
	lim, found := s.lru.Get(k)
	if !found {
		lim = rate.NewLimiter(b.limit, b.burst)
		s.lru.Add(k, lim)
	}
	s.mu.Unlock()
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		return time.Duration(math.MaxInt64), false
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now) // the request is refused: it takes nothing
		return d, false
	}
	return 0, true
}

// limiters are the server's rate limits; nil buckets are no limit.
type limiters struct {
	cfg                           RateLimits
	collectAddress, decideAddress *buckets[netip.Addr]
	collectKey, decideKey         *buckets[string]
	refused                       *prometheus.CounterVec
}

func newLimiters(cfg RateLimits, reg prometheus.Registerer) *limiters {
	l := &limiters{
		cfg:            cfg,
		collectAddress: newBuckets[netip.Addr](cfg.CollectAddress, maxAddressLimiters),
		decideAddress:  newBuckets[netip.Addr](cfg.DecideAddress, maxAddressLimiters),
		collectKey:     newBuckets[string](cfg.CollectKey, maxAddressLimiters),
		decideKey:      newBuckets[string](cfg.DecideKey, maxAddressLimiters),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tailor_http_rate_limited_total",
			Help: "Requests answered 429 by a rate limit, by API (collect, decide) and limit (address, key).",
		}, []string{"api", "limit"}),
	}
	reg.MustRegister(l.refused)
	return l
}

// clientAddr returns the request's client address: the connection's, or
// the one the configured proxy header names.
func (l *limiters) clientAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	if l.cfg.ProxyHeader != "" {
		if a, ok := forwardedAddr(ctx.Request.Header.Peek(l.cfg.ProxyHeader), l.cfg.ProxyHops); ok {
			return a
		}
	}
	a, _ := netip.AddrFromSlice(ctx.RemoteIP())
	return a.Unmap()
}

// forwardedAddr returns the hops-th address from the right of a
// comma-separated list (X-Forwarded-For: client, proxy1, proxy2): the
// address the hops-th proxy from tailor saw. Entries to its left were
// written by the client and are not read.
func forwardedAddr(h []byte, hops int) (netip.Addr, bool) {
	for range max1(hops) - 1 {
		i := bytes.LastIndexByte(h, ',')
		if i < 0 {
			return netip.Addr{}, false
		}
		h = h[:i]
	}
	if i := bytes.LastIndexByte(h, ','); i >= 0 {
		h = h[i+1:]
	}
	h = bytes.TrimSpace(h)
	a, err := netip.ParseAddr(string(h))
	if err != nil {
		// An address with a port: 203.0.113.7:4711, [2001:db8::1]:4711.
		ap, err := netip.ParseAddrPort(string(h))
		if err != nil {
			return netip.Addr{}, false
		}
		a = ap.Addr()
	}
	return a.Unmap().WithZone(""), true
}

// bucketAddr is the address a client's bucket is kept under: IPv4 as
// is, IPv6 by its /64.
func bucketAddr(a netip.Addr) netip.Addr {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// exempt reports whether a is never limited.
func (l *limiters) exempt(a netip.Addr) bool {
	for _, p := range l.cfg.Exempt {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// allowAddress checks the client address's limit on an API, answering
// 429 and returning false when it is spent.
func (l *limiters) allowAddress(ctx *fasthttp.RequestCtx, api string, b *buckets[netip.Addr]) bool {
	if b == nil {
		return true
	}
	a := l.clientAddr(ctx)
	if !a.IsValid() || l.exempt(a) {
		return true
	}
	wait, ok := b.take(bucketAddr(a), time.Now())
	if !ok {
		l.refuse(ctx, api, "address", wait, "too many requests from your address")
	}
	return ok
}

// allowKey checks a key's limit on an API, answering 429 and returning
// false when it is spent. The client address's exemption holds here too.
func (l *limiters) allowKey(ctx *fasthttp.RequestCtx, api string, b *buckets[string], key string) bool {
	if b == nil || l.exempt(l.clientAddr(ctx)) {
		return true
	}
	wait, ok := b.take(key, time.Now())
	if !ok {
		l.refuse(ctx, api, "key", wait, "too many requests with this key")
	}
	return ok
}

// refuse answers 429 with Retry-After: the whole seconds until a token
// is free, at least 1.
func (l *limiters) refuse(ctx *fasthttp.RequestCtx, api, limit string, wait time.Duration, msg string) {
	l.refused.WithLabelValues(api, limit).Inc()
	secs := int64(math.Ceil(wait.Seconds()))
	if wait > 100*365*24*time.Hour {
		secs = 100 * 365 * 24 * 3600
	}
	secs = max(secs, 1)
	ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, strconv.FormatInt(secs, 10))
	writeError(ctx, fasthttp.StatusTooManyRequests, "", msg+": send again after "+strconv.FormatInt(secs, 10)+" s (Retry-After)")
}
