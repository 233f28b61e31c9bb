package decide

import (
	"cmp"
	"errors"
	"hash/fnv"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/valyala/fastjson"

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/internal/jsonenc"
	"github.com/tailorcdp/tailor/rules"
	"github.com/tailorcdp/tailor/state"
)

// Source is where decisions read what the stream has built.
type Source interface {
	// Profile returns the profile of key, or an error wrapping
	// state.ErrNotFound.
	Profile(key string) (*state.Profile, error)
	// OfferStats returns the offer statistics summed over partitions.
	OfferStats() map[state.OfferStatKey]state.OfferCounts
	// Products returns what each partition knows of a product.
	Products(id string) []*state.Product
	// EachProduct calls fn for every product of every partition.
	EachProduct(fn func(*state.Product))
	// Quintiles returns the RFM quintiles of the population.
	Quintiles() state.RFMQuintiles
}

// Config configures a Decider.
type Config struct {
	Catalog *Catalog
	// Segments, Interests and Products are the store's: rules read the
	// segments and aggregates, recommendations the products.
	Segments  *state.Segments
	Interests *state.Interests
	Products  *state.Products
	// ConsentPurpose, when set, is the consent purpose a profile must have
	// granted (Segment's context.consent.categoryPreferences) to get
	// personalised answers; the request's own context may grant it too.
	ConsentPurpose string
	// ReservationTTL is how long a decision counts against its offer's
	// cap before its impression is applied (default one minute).
	ReservationTTL time.Duration
	// StatsMaxAge is how stale the offer statistics and trending products
	// may be (default one second).
	StatsMaxAge time.Duration
	// IdentitySecret, when set, turns identity verification on: a call
	// naming a userId must carry its userHash (identity.go).
	IdentitySecret string
	Logger         *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Decider answers decide calls. It is safe for concurrent use.
type Decider struct {
	src      Source
	cur      atomic.Pointer[decider] // replaced by Reload
	reserved reservations
	stats    snapshot[map[state.OfferStatKey]state.OfferCounts]
	trending snapshot[*trendingSnapshot]
	// unverified counts the calls whose userId came without a valid
	// userHash.
	unverified atomic.Uint64
}

// decider is what a configuration makes of a Decider.
type decider struct {
	cfg     Config
	workers sync.Pool
	rfm     bool      // offers' rules read rfm.*: decisions need the quintiles
	verify  *verifier // nil: no identity secret
}

// New returns a Decider over src.
// Forget drops what the decider keeps of key outside the profile store:
// its cap reservations. The engine calls it for each key an erasure
// removed.
func (d *Decider) Forget(key string) { d.reserved.forget(key) }

func New(cfg Config, src Source) *Decider {
	d := &Decider{src: src}
	d.reserved.init()
	d.Reload(cfg)
	return d
}

// Reload replaces the configuration: calls that start from now on use
// it. Reservations against caps and the cached statistics carry over.
func (d *Decider) Reload(cfg Config) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ReservationTTL <= 0 {
		cfg.ReservationTTL = time.Minute
	}
	if cfg.StatsMaxAge <= 0 {
		cfg.StatsMaxAge = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &decider{cfg: cfg, rfm: readsRFM(cfg.Catalog), verify: newVerifier(cfg.IdentitySecret)}
	c.workers.New = func() any { return &worker{env: state.NewRuleEnv(cfg.Segments, cfg.Interests)} }
	d.cur.Store(c)
}

// Catalog returns the placements and offers the decider serves.
func (d *Decider) Catalog() *Catalog { return d.cur.Load().cfg.Catalog }

// worker is the scratch space of one decide call.
type worker struct {
	c      *decider // the configuration of the call
	env    *state.RuleEnv
	cands  []candidate
	chosen []string // offers already answered in this call
	scores map[string]float64
	ids    []scoredProduct
}

type candidate struct {
	offer *Offer
	score float64
}

// byScore orders candidates by score, highest first (slices' sorts do not
// allocate, sort.Slice's do).
func byScore(a, b candidate) int { return cmp.Compare(b.score, a.score) }

// Decide answers r, appending the JSON answer to dst. Unknown placements
// are a *RequestError. A userId without a valid userHash, when an
// identity secret is configured, is answered as for an unknown visitor
// (identity.go).
func (d *Decider) Decide(dst []byte, r *Request) ([]byte, error) {
	c := d.cur.Load()
	cat := c.cfg.Catalog
	for i, name := range r.Placements {
		if cat.placements[name] == nil {
			problem := "unknown placement " + strconv.Quote(name)
			if len(cat.placements) == 0 {
				problem += ": no placements are configured"
			}
			return dst, &RequestError{Field: "placements[" + strconv.Itoa(i) + "]", Problem: problem}
		}
	}
	now := c.cfg.Now()
	nowMs := now.UnixMilli()
	verified := c.verify.verified(r)
	key, p := r.UserID, (*state.Profile)(nil)
	if verified {
		var err error
		if key, p, err = d.profile(r); err != nil {
			return dst, err
		}
	} else {
		d.unverified.Add(1)
	}
	personal := p != nil && d.consented(p, r.Context)

	w := c.workers.Get().(*worker)
	defer c.workers.Put(w)
	w.c = c
	w.chosen = w.chosen[:0]
	if p != nil {
		var q state.RFMQuintiles
		if c.rfm {
			q = d.src.Quintiles()
		}
		w.env.Reset(p, r.Context, now, q)
	}

	dst = append(dst, `{"key":`...)
	dst = jsonenc.AppendString(dst, key)
	dst = append(dst, `,"known":`...)
	dst = strconv.AppendBool(dst, p != nil)
	dst = append(dst, `,"personalised":`...)
	dst = strconv.AppendBool(dst, personal)
	if !verified {
		dst = append(dst, `,"unverified":true`...)
	}
	dst = append(dst, `,"decisions":{`...)

	var unlock func()
	if personal && d.capsIn(r.Placements) {
		unlock = d.reserved.lock(key)
	}
	for i, name := range r.Placements {
		pl := cat.placements[name]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonenc.AppendString(dst, name)
		dst = append(dst, ':')
		if pl.Kind == KindOffers {
			dst = d.decideOffers(dst, w, pl, key, p, personal, r.Context, now, nowMs)
		} else {
			dst = d.recommend(dst, w, pl, p, personal, r.Context, now, nowMs)
		}
	}
	if unlock != nil {
		unlock()
	}
	return append(dst, "}}"...), nil
}

// profile finds the request's profile: the userId's, else the
// anonymousId's (or the profile either was merged into, whose key is
// returned). A profile that cannot be read is answered as unknown: a page
// must get an answer. The error is a *state.MergedError when the profile
// was merged into one another instance holds, for the caller to ask it,
// and matches state.ErrUnavailable when its store is fenced: answering
// a known customer as unknown would hide it.
func (d *Decider) profile(r *Request) (string, *state.Profile, error) {
	c := d.cur.Load()
	for _, key := range [...]string{r.UserID, r.AnonymousID} {
		if key == "" {
			continue
		}
		p, err := d.src.Profile(key)
		if err == nil {
			return p.Key, p, nil
		}
		var merged *state.MergedError
		if errors.As(err, &merged) || errors.Is(err, state.ErrUnavailable) {
			return "", nil, err
		}
		if !errors.Is(err, state.ErrNotFound) {
			c.cfg.Logger.Warn("decide: profile unavailable, answering as for an unknown visitor", "key", key, "err", err)
		}
	}
	return r.Key(), nil, nil
}

// consented reports whether the visitor may get personalised answers.
func (d *Decider) consented(p *state.Profile, ctx *fastjson.Value) bool {
	c := d.cur.Load()
	purpose := c.cfg.ConsentPurpose
	if purpose == "" {
		return true
	}
	if ctx != nil {
		if v := ctx.Get("consent", "categoryPreferences", purpose); v != nil {
			return v.Type() == fastjson.TypeTrue
		}
	}
	return p.Consent(purpose)
}

// readsRFM reports whether any offer's rules read rfm.*.
func readsRFM(c *Catalog) bool {
	for _, o := range c.offers {
		if o.When != nil && o.When.Deps.RFM || o.Score != nil && o.Score.Deps.RFM {
			return true
		}
	}
	return false
}

// capsIn reports whether any offer of the placements has a cap.
func (d *Decider) capsIn(placements []string) bool {
	c := d.cur.Load()
	for _, name := range placements {
		for _, o := range c.cfg.Catalog.placements[name].offers {
			if o.Cap > 0 {
				return true
			}
		}
	}
	return false
}

// inControl reports whether the profile is in the placement's control
// group: a stable hash of key and placement, so a visitor stays on one side.
func inControl(pl *Placement, key string) bool {
	if pl.control == 0 {
		return false
	}
	h := fnv.New32a()
	h.Write([]byte(pl.Name))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return h.Sum32() < pl.control
}

func (d *Decider) decideOffers(dst []byte, w *worker, pl *Placement, key string, p *state.Profile, personal bool, ctx *fastjson.Value, now time.Time, nowMs int64) []byte {
	ttl := w.c.cfg.ReservationTTL.Milliseconds()
	control := personal && inControl(pl, key)
	w.cands = w.cands[:0]
	if personal && !control {
		for _, o := range pl.offers {
			if !o.running(now) || slices.Contains(w.chosen, o.ID) || o.coolingDown(p, nowMs) {
				continue
			}
			if o.Cap > 0 && d.reserved.count(key, o.ID, p, nowMs, nowMs-o.CapPer.Milliseconds()) >= o.Cap {
				continue
			}
			if o.When != nil && !o.When.Match(w.env) {
				continue
			}
			c := candidate{offer: o, score: o.Priority}
			if pl.Arbitration == ByScore && o.Score != nil {
				c.score = math.Inf(-1) // no value: after every offer with one
				if v := o.Score.Eval(w.env); v.Kind == rules.KindNumber && !math.IsNaN(v.Num) {
					c.score = v.Num
				}
			}
			w.cands = append(w.cands, c)
		}
		switch pl.Arbitration {
		case ByScore:
			slices.SortStableFunc(w.cands, byScore)
		case ByLearning:
			stats := d.offerStats(nowMs)
			for i := range w.cands {
				c := stats[state.OfferStatKey{Offer: w.cands[i].offer.ID, Placement: pl.Name}]
				wins := c.Clicks
				if pl.Reward == "conversion" {
					wins = c.Conversions
				}
				w.cands[i].score = sampleBeta(1+float64(wins), 1+float64(c.Impressions-min(wins, c.Impressions)))
			}
			slices.SortStableFunc(w.cands, byScore)
		}
		// ByPriority: pl.offers is in priority order already.
		if len(w.cands) > pl.Count {
			w.cands = w.cands[:pl.Count]
		}
	}
	fallback := len(w.cands) == 0 && pl.fallback != nil
	if fallback {
		w.cands = append(w.cands, candidate{offer: pl.fallback})
	}
	dst = append(dst, `{"offers":[`...)
	for i, c := range w.cands {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"offer_id":`...)
		dst = jsonenc.AppendString(dst, c.offer.ID)
		dst = append(dst, `,"decision_id":"`...)
		start := len(dst)
		dst = event.Decision{Placement: pl.Name, Offer: c.offer.ID, Control: control, At: nowMs, Nonce: rand.Uint32()}.AppendID(dst)
		if c.offer.Cap > 0 && personal && !fallback {
			d.reserved.add(key, c.offer.ID, xxhash.Sum64(dst[start:]), nowMs, nowMs+ttl)
		}
		dst = append(dst, `","fallback":`...)
		dst = strconv.AppendBool(dst, fallback)
		if c.offer.Trusted {
			dst = append(dst, `,"trusted":true`...)
		}
		dst = append(dst, `,"content":`...)
		dst = append(dst, c.offer.content...)
		dst = append(dst, '}')
		if !fallback {
			w.chosen = append(w.chosen, c.offer.ID)
		}
	}
	dst = append(dst, `],"control":`...)
	dst = strconv.AppendBool(dst, control)
	return append(dst, '}')
}

// offerStats returns the offer statistics, at most StatsMaxAge old.
func (d *Decider) offerStats(nowMs int64) map[state.OfferStatKey]state.OfferCounts {
	c := d.cur.Load()
	return d.stats.get(nowMs, c.cfg.StatsMaxAge.Milliseconds(), d.src.OfferStats)
}
