package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/dgraph-io/badger/v4"
)

// A new or changed segment must be evaluated for every existing profile,
// not only for those a later event touches: a backfill. Each store records
// which segment definitions (Segment.Fingerprint) its stored memberships
// reflect. When its model (Store.SetModel, or a configuration changed while
// the engine was down) declares others, the applier walks every profile in
// key order, a batch at a time, re-evaluating the new and changed segments
// and taking the profile out of the removed ones, each change a record like
// any other. The walk's position is written with each batch, so a restart
// goes on where it stopped.

// keyBackfill holds the backfill state, JSON-encoded.
var keyBackfill = []byte("m/segments")

// backfillState is owned by the store's applier.
type backfillState struct {
	// Evaluated maps each segment to the fingerprint of the definition
	// the stored memberships reflect; 0 when it is unknown (a backfill
	// toward another definition was interrupted).
	Evaluated map[string]uint64 `json:"evaluated"`
	// Target is the model's fingerprints the backfill under way brings
	// the store to; nil when none is.
	Target map[string]uint64 `json:"target,omitempty"`
	// Cursor is the last profile key the backfill has done.
	Cursor string `json:"cursor,omitempty"`
	// Quintiles are the population's RFM quintiles as of their last
	// refresh: the segments reading RFM scores are evaluated against them
	// (their fingerprints include them), so a change re-evaluates those
	// segments for every profile, at most once per Model.RFMRefresh.
	Quintiles *refreshedQuintiles `json:"quintiles,omitempty"`

	plan *backfillPlan // for the model and quintiles it was made for
}

// refreshedQuintiles is RFMQuintiles as stored, with the refresh time.
type refreshedQuintiles struct {
	Days   [4]float64 `json:"days"`
	Orders [4]float64 `json:"orders"`
	Money  [4]float64 `json:"money"`
	// Scores says which scores the quintiles give: days, orders, money
	// (RFMQuintiles.ok).
	Scores [3]bool `json:"scores"`
	At     int64   `json:"at"` // Unix ms
	// V is quintilesVersion as written by this version; quintiles stored
	// before (one "ok" for all three scores, no MinRFMValues) are taken
	// again at once.
	V int `json:"v,omitempty"`
}

// quintilesVersion is the version of how quintiles are computed and
// scores recorded, in refreshedQuintiles and in the fingerprints of the
// segments reading scores: a change re-evaluates those segments for every
// profile once. 2: MinRFMValues, and profiles record the scores they were
// evaluated on (Profile.rfmScores).
const quintilesVersion = 2

func (q *refreshedQuintiles) sameBounds(o RFMQuintiles) bool {
	return q.Days == o.Days && q.Orders == o.Orders && q.Money == o.Money && q.Scores == o.ok
}

func (q *refreshedQuintiles) quintiles(horizon time.Duration) RFMQuintiles {
	return RFMQuintiles{Days: q.Days, Orders: q.Orders, Money: q.Money, Horizon: horizon, ok: q.Scores}
}

func (q *refreshedQuintiles) hash() uint64 {
	h := xxhash.New()
	fmt.Fprintf(h, "%v %v %v %v %d", q.Days, q.Orders, q.Money, q.Scores, q.V)
	return h.Sum64()
}

// backfillPlan is what a backfill toward a model does.
type backfillPlan struct {
	model   *Model
	target  map[string]uint64
	eval    []bool   // by schema index: new or changed segments
	removed []string // segments no longer declared
	retime  bool     // retention turned on or changed: reschedule every profile
	pending bool
}

// BackfillStep identifies the next backfill batch, for a marker that lets
// a batch interrupted by a crash be redone: the target's hash and the
// position it starts after.
type BackfillStep struct {
	Target uint64
	Cursor string
}

// fingerprints returns the target fingerprints of m's segments: their
// definitions', and for those reading RFM scores, the quintiles' too;
// with a retention, under retentionMark, its length in ms.
func fingerprints(m *Model, q *refreshedQuintiles, retention time.Duration) map[string]uint64 {
	fp := make(map[string]uint64)
	if retention > 0 {
		fp[retentionMark] = uint64(retention.Milliseconds())
	}
	for _, seg := range m.Segments.List() {
		fp[seg.Name] = seg.Fingerprint
		switch {
		case seg.quintiles && q != nil:
			fp[seg.Name] ^= q.hash()
		case seg.quintiles:
			fp[seg.Name] ^= quintilesVersion
		}
	}
	return fp
}

// refreshQuintiles takes the population's current quintiles when the last
// refresh is older than the model's RFMRefresh, and reports whether they
// moved. Called by the applier only.
func (s *Store) refreshQuintiles(m *Model) bool {
	bs := &s.backfill
	if m.RFMRefresh <= 0 || s.opts.Quintiles == nil || !m.Segments.readQuintiles() {
		return false
	}
	now := time.Now()
	if s.opts.Now != nil {
		now = s.opts.Now()
	}
	current := bs.Quintiles != nil && bs.Quintiles.V == quintilesVersion
	if current && now.Sub(time.UnixMilli(bs.Quintiles.At)) < m.RFMRefresh {
		return false
	}
	q := s.opts.Quintiles()
	if current && bs.Quintiles.sameBounds(q) {
		bs.Quintiles.At = now.UnixMilli()
		return false
	}
	bs.Quintiles = &refreshedQuintiles{Days: q.Days, Orders: q.Orders, Money: q.Money, Scores: q.ok, At: now.UnixMilli(), V: quintilesVersion}
	return true
}

// hashTarget hashes a target's fingerprints in name order.
func hashTarget(target map[string]uint64) uint64 {
	h := xxhash.New()
	for _, name := range slices.Sorted(maps.Keys(target)) {
		fmt.Fprintf(h, "%s\x00%d\x00", name, target[name])
	}
	return h.Sum64()
}

// loadBackfill reads the backfill state; a store without one (new, or
// written by a version before backfills) takes its model as evaluated.
func (s *Store) loadBackfill() error {
	bs := &s.backfill
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(keyBackfill)
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return json.Unmarshal(v, bs) })
	})
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		bs.Evaluated = fingerprints(s.model.Load(), nil, s.opts.Retention)
		return s.db.Update(func(txn *badger.Txn) error { return s.writeBackfill(txn, bs) })
	case err != nil:
		return fmt.Errorf("read the backfill state in %s: %w", s.db.Opts().Dir, err)
	}
	if bs.Evaluated == nil {
		bs.Evaluated = make(map[string]uint64)
	}
	return nil
}

func (s *Store) writeBackfill(txn *badger.Txn, bs *backfillState) error {
	v, err := json.Marshal(bs)
	if err != nil {
		return err
	}
	if err := txn.SetEntry(badger.NewEntry(keyBackfill, v)); err != nil {
		return fmt.Errorf("write the backfill state: %w", err)
	}
	return nil
}

// SetModel replaces the store's model: batches begun from now on apply
// events under it, and the applier backfills the segments it adds or
// changes (BackfillPending).
func (s *Store) SetModel(m *Model) { s.model.Store(m) }

// Model returns the store's model.
func (s *Store) Model() *Model { return s.model.Load() }

// currentPlan returns the backfill plan for the store's model, making it
// when the model changed. Called by the applier only.
func (s *Store) currentPlan() (*backfillPlan, error) {
	bs := &s.backfill
	m := s.model.Load()
	moved := s.refreshQuintiles(m)
	if bs.plan != nil && bs.plan.model == m && !moved {
		return bs.plan, nil
	}
	target := fingerprints(m, bs.Quintiles, s.opts.Retention)
	if bs.Target != nil && !maps.Equal(bs.Target, target) {
		// A backfill toward another model was under way: the profiles it
		// did reflect that model, the others the evaluated one. Whatever
		// it changed is unknown now; the new walk starts over.
		for name, fp := range bs.Target {
			if bs.Evaluated[name] != fp {
				bs.Evaluated[name] = 0
			}
		}
		bs.Cursor = ""
	}
	plan := &backfillPlan{model: m, target: target}
	if segs := m.Segments; segs != nil {
		plan.eval = make([]bool, len(segs.names))
		for _, seg := range segs.order {
			if fp, ok := bs.Evaluated[seg.Name]; (!ok || fp != target[seg.Name]) && !seg.readsEvent {
				plan.eval[seg.index] = true
				plan.pending = true
			}
		}
	}
	if fp, ok := target[retentionMark]; ok && bs.Evaluated[retentionMark] != fp {
		// Retention turned on or changed: every profile's wake-up is
		// worked out again, so those that no event touches expire too.
		plan.retime, plan.pending = true, true
	}
	for name := range bs.Evaluated {
		if _, ok := target[name]; !ok && name != retentionMark {
			plan.removed = append(plan.removed, name)
			plan.pending = true
		}
	}
	slices.Sort(plan.removed)
	if !plan.pending && (!maps.Equal(bs.Evaluated, target) || bs.Target != nil) {
		// Only segments that events alone decide changed: nothing to walk.
		bs.Evaluated, bs.Target, bs.Cursor = maps.Clone(target), nil, ""
		if err := s.db.Update(func(txn *badger.Txn) error { return s.writeBackfill(txn, bs) }); err != nil {
			return nil, fmt.Errorf("%s: %w", s.db.Opts().Dir, err)
		}
	}
	bs.plan = plan
	return plan, nil
}

// BackfillPending reports whether a backfill has work left, and the step
// its next batch is. Called by the applier only.
func (s *Store) BackfillPending() (BackfillStep, bool, error) {
	plan, err := s.currentPlan()
	if err != nil || !plan.pending {
		return BackfillStep{}, false, err
	}
	return BackfillStep{Target: hashTarget(plan.target), Cursor: s.backfill.Cursor}, true, nil
}

// CountProfiles counts the profiles of the store, reading keys only.
func (s *Store) CountProfiles() (int, error) {
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixProfile}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count profiles in %s: %w", s.db.Opts().Dir, err)
	}
	return n, nil
}

// backfillBatch is what a Backfill batch commits besides its profiles.
type backfillBatch struct {
	cursor string
	done   bool
}

// Backfill re-evaluates, for up to limit profiles after the backfill's
// position, the segments the model adds or changes, and takes them out of
// the segments it removes; it returns how many profiles it did and whether
// the walk is over. Like Wake, it must be the batch's only use; given the
// same store contents, model and limit it makes the same changes.
func (b *Batch) Backfill(limit int) (n int, done bool, err error) {
	if len(b.profiles) > 0 || b.woke || b.backfill != nil {
		return 0, false, errors.New("backfill on a batch already in use")
	}
	plan, err := b.s.currentPlan()
	if err != nil || plan.model != b.m || !plan.pending {
		// The model changed since the batch began: the next batch
		// backfills toward the new one.
		return 0, false, err
	}
	cursor := b.s.backfill.Cursor
	keys := make([]string, 0, min(limit, 1024))
	it := b.txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixProfile}})
	start := profileKey(cursor)
	if cursor != "" {
		start = append(start, 0) // after the cursor
	}
	for it.Seek(start); it.Valid() && len(keys) < limit; it.Next() {
		keys = append(keys, string(it.Item().Key()[1:]))
	}
	it.Close()
	bb := &backfillBatch{cursor: cursor, done: len(keys) < limit}
	b.backfill = bb
	if q := b.s.backfill.Quintiles; q != nil {
		// Evaluated against the quintiles the target is made of.
		b.env.interests = b.m.Interests
		b.env.quintiles = q.quintiles(b.m.RFMHorizon)
		b.envReady = true
	}
	for i, key := range keys {
		if b.Full() {
			bb.done = false
			break
		}
		p, err := b.Profile(key)
		if err != nil {
			return n, false, err
		}
		bb.cursor = keys[i]
		n++
		if plan.retime {
			p.retimed = true
		}
		if plan.eval != nil {
			b.inputs = Inputs{Backfill: plan.eval}
			for _, c := range b.evaluate(p, nil, &b.inputs) {
				b.changes = append(b.changes, KeyedChange{Key: key, Change: c})
			}
		}
		if p.rfmScored && !b.m.Segments.readQuintiles() {
			// No segment reads the scores any more: the view computes them.
			p.rfmScores, p.rfmScored = rfmScores{}, false
		}
		for _, name := range plan.removed {
			if _, in := p.Segments[name]; in {
				p.leaveSegment(name)
				b.changes = append(b.changes, KeyedChange{Key: key, Change: Change{Segment: name, At: b.now()}})
			}
		}
	}
	return n, bb.done, nil
}

// commitBackfill writes the backfill's new state in the batch's
// transaction and returns it, to be kept once the commit succeeded.
func (b *Batch) commitBackfill() (*backfillState, error) {
	if b.backfill == nil {
		return nil, nil
	}
	bs := b.s.backfill // a copy; the maps are replaced, not changed
	if b.backfill.done {
		bs.Evaluated, bs.Target, bs.Cursor = maps.Clone(bs.plan.target), nil, ""
		bs.plan = nil // made again: nothing pending
	} else {
		bs.Target, bs.Cursor = bs.plan.target, b.backfill.cursor
	}
	v, err := json.Marshal(&bs)
	if err != nil {
		return nil, fmt.Errorf("encode the backfill state: %w", err)
	}
	if err := b.set(keyBackfill, v); err != nil {
		return nil, fmt.Errorf("write the backfill state: %w", err)
	}
	return &bs, nil
}
