package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/money"
)

// Begin starts the batch of changes of one poll. Only one batch may be open
// at a time.
func (s *Store) Begin() *Batch {
	return &Batch{
		s:        s,
		m:        s.model.Load(),
		txn:      s.db.NewTransaction(true),
		profiles: make(map[string]*Profile),
		budget:   int(s.opts.MemTableSize / 10),
	}
}

// Batch collects the changes of a run of input records. Commit writes them
// in one transaction with the offset that follows the run, so a crash leaves
// the store either before or after the whole run, never in between.
type Batch struct {
	s        *Store
	m        *Model // the store's model when the batch began
	txn      *badger.Txn
	profiles map[string]*Profile
	orders   []countedOrder
	seen     map[string]struct{} // order keys added in this batch
	changes  []KeyedChange
	initial  map[string]rfmPoint // where each changed profile was in the RFM population
	products map[string]*Product // changed products: copies
	feedback map[OfferStatKey]OfferCounts
	env      RuleEnv // reused by segment evaluation
	envReady bool    // env's quintiles and interests are set
	inputs   Inputs
	size     int
	budget   int
	// recordBytes are the bytes of the records applied (Grow),
	// loadedBytes the encoded sizes of the profiles as the batch found
	// them: what Commit learns the store's growth from.
	recordBytes int
	loadedBytes int
	// at is the batch's instant, read from the clock once: every event of
	// the batch is evaluated at it, and the profiles rescheduled from it.
	at       time.Time
	woke     bool           // a Wake batch
	backfill *backfillBatch // a Backfill batch
	// links are the links applied events asked for; aliases the links
	// recorded by Link, removed the profiles it took out.
	links   []Link
	aliases map[string]string
	removed map[string]*Profile
	// expiredN counts the profiles Wake deleted for retention; expiring
	// holds those whose order ids are still to be deleted.
	expiredN int
	expiring []string
	unlinks  []Link // aliases of expired profiles not held here
	// writes are the batch's writes when the store keeps a changelog
	// (Options.Changelog), the last one of each key; written indexes them.
	writes  []Write
	written map[string]int
	// changelogNext, when changelogKnown, is written as the changelog
	// offset the store reflects (SetChangelogOffset).
	changelogNext  int64
	changelogKnown bool
	// ended is set by Erase: the batch takes no more records (Full).
	ended bool
}

// Profile returns the profile of key for modification, creating an empty
// one for a new key. Changes become visible to readers at Commit.
func (b *Batch) Profile(key string) (*Profile, error) {
	if p, ok := b.profiles[key]; ok {
		return p, nil
	}
	p, err := b.stored(key)
	if err != nil {
		return nil, err
	}
	if p == nil {
		p = &Profile{Key: key}
	}
	b.profiles[key] = p
	b.noteInitial(key, p)
	return p, nil
}

// stored returns a copy of key's profile as readers see it (from the
// cache, else the store), for the batch to change; nil when there is none.
func (b *Batch) stored(key string) (*Profile, error) {
	if cached, ok := b.s.cache.Get(key); ok {
		return cached.Clone(), nil
	}
	p, err := getProfile(b.txn, key, b.m.Aggregates)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

// noteInitial records where p, the profile of key as the batch found it,
// was counted in the RFM population, and its share of the batch's size.
func (b *Batch) noteInitial(key string, p *Profile) {
	if b.initial == nil {
		b.initial = make(map[string]rfmPoint)
	}
	b.initial[key] = p.rfm
	b.loadedBytes += p.encodedSize
	b.size += p.encodedSize + len(key) + 64
}

// countedOrder is an order id the batch counts for a profile, with the
// order's amount and event time (Unix ms).
type countedOrder struct {
	key    []byte // pairKey(prefixOrder, profile key, order id)
	amount money.Amount
	at     int64
	known  bool // amount and at: false for an id moved from before they were kept
}

// firstOrder reports whether order orderID of profile key has not been
// counted before, and remembers it with its amount and event time (known
// false: an id counted before they were kept).
func (b *Batch) firstOrder(key, orderID string, amount money.Amount, at int64, known bool) (bool, error) {
	k := pairKey(prefixOrder, key, orderID)
	fresh, err := b.remember(k)
	if fresh {
		b.orders = append(b.orders, countedOrder{key: k, amount: amount, at: at, known: known})
	}
	return fresh, err
}

// orderValue encodes a counted order's amount and event time: a format
// byte (2), the amount in millionths and the time, 17 bytes.
func orderValue(amount money.Amount, at int64) []byte {
	v := append(make([]byte, 0, 17), 2)
	v = binary.BigEndian.AppendUint64(v, uint64(amount.Millionths()))
	return binary.BigEndian.AppendUint64(v, uint64(at))
}

// decodeOrderValue decodes what orderValue wrote, or the 16 bytes written
// before amounts were exact (a float64 amount and the time); known is
// false for anything else (an order counted before either was kept).
func decodeOrderValue(v []byte) (amount money.Amount, at int64, known bool) {
	switch {
	case len(v) == 17 && v[0] == 2:
		return money.Millionths(int64(binary.BigEndian.Uint64(v[1:]))), int64(binary.BigEndian.Uint64(v[9:])), true
	case len(v) == 16:
		return money.FromFloat(math.Float64frombits(binary.BigEndian.Uint64(v))), int64(binary.BigEndian.Uint64(v[8:])), true
	}
	return money.Amount{}, 0, false
}

func (b *Batch) remember(k []byte) (bool, error) {
	if _, ok := b.seen[string(k)]; ok {
		return false, nil
	}
	_, err := b.txn.Get(k)
	switch {
	case err == nil:
		return false, nil
	case !errors.Is(err, badger.ErrKeyNotFound):
		return false, fmt.Errorf("look up %q: %w", k, err)
	}
	if b.seen == nil {
		b.seen = make(map[string]struct{})
	}
	b.seen[string(k)] = struct{}{}
	b.size += len(k) + 32
	return true, nil
}

// Grow adds to the estimated size of the batch what an applied record of
// n bytes is expected to have added to its profile. A record can add up
// to its whole size (traits, distinct values), and a store's first batch
// counts that much; but most records add a few bytes to a profile that
// exists (a messageId, a counter), and counting their whole size cut
// batches at a fifth of the budget, each batch rewriting every profile and
// product it touched. So each commit measures what its records added, and
// the next batch counts twice that, between an eighth of a record's size
// and all of it. A batch that outgrows Badger's transaction limit all the
// same fails to commit with ErrBatchTooLarge, having written nothing, to
// be applied again in smaller ones (decision 0013).
func (b *Batch) Grow(n int) {
	b.recordBytes += n
	b.size += int(float64(n) * b.s.growth)
}

// Growth bounds what Batch.Grow counts of a record's size.
const (
	minGrowth = 1.0 / 8
	maxGrowth = 1.0
)

// Full reports whether the batch should be committed before more records
// are applied, to stay inside Badger's transaction size limit (the budget
// is two thirds of it).
func (b *Batch) Full() bool { return b.size >= b.budget || b.ended }

// Len returns the number of profiles changed in the batch.
func (b *Batch) Len() int { return len(b.profiles) }

// now returns the batch's instant, reading the store's clock the first
// time.
func (b *Batch) now() time.Time {
	if b.at.IsZero() {
		b.at = time.Now()
		if b.s.opts.Now != nil {
			b.at = b.s.opts.Now()
		}
	}
	return b.at
}

// Discard drops the batch's changes.
func (b *Batch) Discard() { b.txn.Discard() }

// Apply applies one event to its profile. A repeated messageId (within the
// dedup bounds) is not applied again; applied reports whether it was.
//
// An event that would start the profile of an erased key is dropped when
// the erasure drops it (erasure.go): the error wraps ErrErased.
func (b *Batch) Apply(ev *event.Event) (applied bool, err error) {
	key := ev.Key()
	_, had := b.profiles[key]
	p, err := b.Profile(key)
	if err != nil {
		return false, err
	}
	if !had && b.s.erasures.Load() && sumCounts(p) == 0 {
		drop, err := b.dropErased(key, ev.ReceivedAt.UnixMilli())
		if err != nil {
			return false, err
		}
		if drop {
			delete(b.profiles, key)
			return false, fmt.Errorf("event for %q: %w", key, ErrErased)
		}
	}
	if !p.FirstDelivery(ev, b.s.opts.Dedup) {
		return false, nil
	}
	b.linkOf(ev, p)
	countOrder := false
	if ev.Type == event.Track && ev.Name == event.OrderCompleted {
		countOrder = true
		if id := ev.OrderID(); id != "" {
			amount, _ := ev.OrderAmount()
			if countOrder, err = b.firstOrder(key, id, amount, ev.Time.UnixMilli(), true); err != nil {
				return false, err
			}
		}
	}
	p.apply(ev, countOrder, b.m.Traits)
	if countOrder && b.m.RFMHorizon > 0 {
		p.retimed = true // a new order leaves the horizon some day
	}
	if b.s.opts.Retention > 0 && p.WakeAt == 0 {
		// Under retention every profile has a wake-up; one already set
		// is early at worst, as later events move the deadline later.
		p.retimed = true
	}
	if kind, d, ok := p.applyFeedback(ev, b.m.Offers); ok {
		k := OfferStatKey{Offer: d.Offer, Placement: d.Placement}
		if d.Control {
			k.Arm = Control
		}
		if b.feedback == nil {
			b.feedback = make(map[OfferStatKey]OfferCounts)
		}
		c := b.feedback[k]
		c.count(kind)
		b.feedback[k] = c
	}
	b.applyProducts(p, ev, countOrder)
	t := b.now()
	in := &b.inputs
	*in = Inputs{
		All:     sumCounts(p) == 1, // a new profile: every segment starts here
		Traits:  ev.Type == event.Identify,
		Orders:  ev.Type == event.Track && (ev.Name == event.OrderCompleted || ev.Name == event.OrderRefunded),
		Consent: ev.Context != nil && ev.Context.Exists("consent", "categoryPreferences"),
		Aggs:    slices.Grow(in.Aggs[:0], len(b.m.Aggregates.List()))[:len(b.m.Aggregates.List())],
	}
	clear(in.Aggs)
	if ev.Type == event.Track {
		in.Event = ev.Name
		if c := b.m.Interests; c != nil {
			_, in.Interests = c.Weights[ev.Name]
		}
	}
	b.m.Aggregates.apply(p, ev, t, in.Aggs, &b.env)
	b.m.Interests.apply(p, ev)
	for _, c := range b.evaluate(p, ev, in) {
		b.changes = append(b.changes, KeyedChange{Key: key, MessageID: ev.MessageID, Change: c})
	}
	return true, nil
}

// evaluate re-evaluates p's segments at the batch's instant, after ev (nil
// when time alone moved) changed in.
func (b *Batch) evaluate(p *Profile, ev *event.Event, in *Inputs) []Change {
	if !b.envReady {
		// Once per batch: the batch is evaluated at one instant, and the
		// quintiles cost a look at every partition.
		b.env.interests = b.m.Interests
		if b.s.opts.Quintiles != nil && b.m.Segments.readRFM() {
			b.env.quintiles = b.s.opts.Quintiles()
		}
		b.env.quintiles.Horizon = b.m.RFMHorizon
		b.envReady = true
	}
	if b.m.Segments.readQuintiles() && (ev == nil || in.Orders || in.All) {
		// What may move the scores: the profile's orders, time (orders
		// leaving the horizon), other quintiles (a backfill), a merge.
		in.Scores = p.rescore(b.env.quintiles, b.now())
	}
	changes := b.m.Segments.evaluate(&b.env, p, ev, b.now(), in)
	if b.env.timedEvaluated {
		p.retimed = true
	}
	return changes
}

// sumCounts returns the calls a profile has seen.
func sumCounts(p *Profile) uint64 {
	var n uint64
	for _, c := range p.TypeCounts {
		n += c
	}
	return n
}

// KeyedChange is a segment change of one profile, caused by one event.
type KeyedChange struct {
	Key       string
	MessageID string // of the event that caused it
	// Reason says why a change no event caused was made, when not time
	// alone or a merge: ReasonRetention; "" otherwise.
	Reason string
	Change
}

// Changes returns the segment changes of the batch so far.
func (b *Batch) Changes() []KeyedChange { return b.changes }

// Model returns the model the batch applies events under.
func (b *Batch) Model() *Model { return b.m }

// Held returns the profile the batch holds for key as it is now: one it
// read or changed, or one it took out of the store (Link, retention); nil
// for none. The caller must not modify it. A segment change's profile is
// always held by the batch that made the change.
func (b *Batch) Held(key string) *Profile {
	if p, ok := b.profiles[key]; ok {
		return p
	}
	return b.removed[key]
}
