package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/money"
)

var updateGolden = flag.Bool("update", false, "write the newest golden profile (the last of TestDecodeV1's)")

var received = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func parse(t testing.TB, p *event.Parser, s string) event.Event {
	t.Helper()
	ev, err := p.Parse([]byte(s), 0, received)
	if err != nil {
		t.Fatalf("parse %s: %v", s, err)
	}
	return ev
}

// compileModel compiles a test's aggregates and the segments reading
// them, failing the test on an error.
func compileModel(t testing.TB, aggDecls []AggregateConfig, segDecls []SegmentConfig, rfmHorizon time.Duration) (*Aggregates, *Segments) {
	t.Helper()
	aggs, err := CompileAggregates(aggDecls)
	if err != nil {
		t.Fatal(err)
	}
	segs, err := CompileSegments(segDecls, aggs, rfmHorizon)
	if err != nil {
		t.Fatal(err)
	}
	return aggs, segs
}

// sampleAggregate is the aggregate of sampleProfile's state (the
// fingerprint 99 stands for its function and window).
func sampleAggregate() *Aggregate {
	return &Aggregate{Name: "views_7d", Spec: WindowSpec{Func: Sum, Window: 7 * 24 * time.Hour}, id: aggregateID("views_7d", 99)}
}

// declared returns aggs as a model's aggregates, for tests that make up
// aggregates (and their ids) instead of compiling them.
func declared(aggs ...*Aggregate) *Aggregates {
	a := &Aggregates{byEvent: make(map[string][]*Aggregate), ids: make(map[uint64]*Aggregate), names: make(map[uint64]*Aggregate)}
	for i, agg := range aggs {
		agg.index, agg.model = i, a
		a.list = append(a.list, agg)
		a.ids[agg.id] = agg
		a.names[agg.nameHash()] = agg
	}
	return a
}

// forgetBookkeeping clears what p keeps to spare work (its encoded size,
// where its aggregate states lie), to compare its content.
func forgetBookkeeping(p *Profile) {
	p.encodedSize = 0
	p.aggs.hint, p.aggs.model = [aggHints]uint32{}, nil
}

func sampleProfile() *Profile {
	p := &Profile{
		Key: "u1", UserID: "u1", AnonymousIDs: []string{"a1", "a2"},
		Traits: map[string]Trait{
			"email": {Value: json.RawMessage(`"u1@example.com"`), UpdatedAt: 1700000000000, Source: "analytics.js"},
			"age":   {Value: json.RawMessage(`41`), UpdatedAt: 1700000000001, Source: SourceImport},
			"phone": {Value: json.RawMessage(`"12"`), UpdatedAt: 1700000000002, Source: SourceAPI, Unnormalised: "not a valid phone number for region GB"},
		},
		FirstSeen: 1690000000000, LastSeen: 1700000000500,
		EventCounts: map[string]uint64{"Product Viewed": 7, "Order Completed": 2},
		EventLast:   map[string]int64{"Product Viewed": 1700000000300, "Order Completed": 1700000000400},
		Orders:      2, Revenue: money.MustParse("123.45"), LastOrderAt: 1700000000400,
		Refunds: 1, RefundedAmount: money.MustParse("20.5"),
		recent:    newMessageLog([]seenMessage{{hash: 0x0123456789abcdef, receivedAt: 1700000000100}, {hash: 42, receivedAt: 1700000000600}}),
		interests: map[string]interest{"shoes": {score: 4.5, at: 1700000000200}, "bags": {score: 1, at: 1700000000300}},
		consents:  map[string]consent{"Advertising": {granted: true, at: 1700000000100}, "Analytics": {at: 1700000000100}},
		consentLog: []consentChange{
			{purpose: "Advertising", at: 1690000000000, source: SourceUnknown},
			{purpose: "Advertising", granted: true, at: 1700000000100, source: "analytics.js"},
		},
		aggs: aggStates{
			data: appendPacked(nil, sampleAggregate().id, Sum, &Windowed{buckets: []bucket{
				{start: 1699999200000, n: 3, sum: money.MustParse("7.5")},
				{start: 1700020800000, n: 1},
			}}),
		},
	}
	p.offers = map[string]*offerHistory{"shoes-10": {
		decisions: []decisionMark{{hash: 7, at: 1700000000100, seen: Impression}, {hash: 8, at: 1700000000200, seen: Impression | Click}},
		clickedAt: 1700000000250, touched: 1700000000250,
	}}
	p.viewed = []string{"p1", "p2"}
	p.bought = []string{"p9"}
	p.TypeCounts[event.Track] = 9
	p.TypeCounts[event.Identify] = 1
	p.WakeAt = 1700003600000
	p.orderLog = []orderRecord{{at: 1699000000000, amount: money.Units(100)}, {at: 1700000000400, amount: money.MustParse("23.45")}}
	p.rfm, p.rfmRecorded = rfmPoint{day: 19675, orders: 1, money: 3155, ok: true}, true
	return p
}

// sampleProfileBeforeOrderLog is sampleProfile as written before the wake-up,
// the order log and the recorded RFM point were kept
// (testdata/profile-v1.bin): its RFM point is derived from all-time values.
func sampleProfileBeforeOrderLog() *Profile {
	p := sampleProfileBeforeConsentHistory()
	p.WakeAt, p.orderLog = 0, nil
	p.rfm, p.rfmRecorded = p.rfmPointAt(0, 0), false
	return p
}

// sampleProfileBeforeConsentHistory is sampleProfile as written before
// the consent history was kept (decision 0029): the golden files before
// profile-v1-consent-history.bin.
func sampleProfileBeforeConsentHistory() *Profile {
	p := sampleProfile()
	p.consentLog = nil
	return p
}

// sampleProfileBeforeSources is sampleProfile as written before traits
// kept their source (decision 0026): the golden files before
// profile-v1-trait-sources.bin.
func sampleProfileBeforeSources() *Profile {
	p := sampleProfileBeforeConsentHistory()
	p.Traits = map[string]Trait{
		"email": {Value: json.RawMessage(`"u1@example.com"`), UpdatedAt: 1700000000000},
		"age":   {Value: json.RawMessage(`41`), UpdatedAt: 1700000000001},
	}
	return p
}

// TestEncodingRoundTrip: a profile reads back as written, its aggregate
// states too, whether read with their aggregates declared or read with
// none declared and written again as they were.
func TestEncodingRoundTrip(t *testing.T) {
	for _, p := range []*Profile{sampleProfile(), {Key: "empty"}} {
		stored := p.AppendEncode(nil)
		untyped, err := DecodeProfile(stored)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range [][]byte{stored, untyped.AppendEncode(nil)} {
			got, err := decodeProfile(b, declared(sampleAggregate()))
			if err != nil {
				t.Fatal(err)
			}
			p.encodedSize = 0
			forgetBookkeeping(got)
			if !reflect.DeepEqual(got, p) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, p)
			}
		}
	}
}

// TestDecodeV1 pins format 1: state written by this version must stay
// readable by every later one. Never regenerate a file to make a change
// pass; a version that adds fields adds a golden file (-update writes the
// newest only).
func TestDecodeV1(t *testing.T) {
	beforeOrderLog := sampleProfileBeforeOrderLog()
	beforeOrderLog.Traits = sampleProfileBeforeSources().Traits
	golden := []struct {
		path string
		want *Profile
	}{
		{"testdata/profile-v1.bin", beforeOrderLog},
		{"testdata/profile-v1-orderlog.bin", sampleProfileBeforeSources()},
		{"testdata/profile-v1-aggregate-ids.bin", sampleProfileBeforeSources()},
		{"testdata/profile-v1-compact-buckets.bin", sampleProfileBeforeSources()},
		{"testdata/profile-v1-packed-aggregates.bin", sampleProfileBeforeSources()},
		{"testdata/profile-v1-exact-money.bin", sampleProfileBeforeSources()},
		{"testdata/profile-v1-trait-sources.bin", sampleProfileBeforeConsentHistory()},
		{"testdata/profile-v1-consent-history.bin", sampleProfile()},
	}
	if *updateGolden {
		if err := os.WriteFile(golden[len(golden)-1].path, sampleProfile().AppendEncode(nil), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range golden {
		data, err := os.ReadFile(g.path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeProfile(data, declared(sampleAggregate()))
		if err != nil {
			t.Fatal(err)
		}
		forgetBookkeeping(got)
		if !reflect.DeepEqual(got, g.want) {
			t.Errorf("%s decodes to\n%+v\nwant\n%+v", g.path, got, g.want)
		}
	}
}

// TestDecodeFloatMoney: amounts stored as float64 before they were exact
// (revenue, refunds, the order log, sum aggregates) read as the decimals
// they stood for, their float noise gone.
func TestDecodeFloatMoney(t *testing.T) {
	agg := sampleAggregate()
	b := appendString([]byte{formatV1}, fieldKey, "u")
	b = appendVarint(b, fieldOrders, 1)
	b = appendFloat(b, fieldRevenue, 5391.209999999999)
	b = appendFloat(b, fieldRefundedAmount, 0.30000000000000004)
	b = protowire.AppendTag(b, fieldOrderTimes, protowire.BytesType)
	b = protowire.AppendBytes(b, protowire.AppendVarint(nil, protowire.EncodeZigZag(1700000000000)))
	b = protowire.AppendTag(b, fieldOrderAmounts, protowire.BytesType)
	b = protowire.AppendBytes(b, protowire.AppendFixed64(nil, math.Float64bits(5391.209999999999)))
	// A sum state as packed before: its bucket's value a float64.
	state := binary.LittleEndian.AppendUint64(nil, agg.id)
	state = append(state, byte(Sum))
	state = binary.LittleEndian.AppendUint32(state, 1)
	state = binary.LittleEndian.AppendUint64(state, 1699999200000)
	state = binary.LittleEndian.AppendUint64(state, 300)
	state = binary.LittleEndian.AppendUint64(state, math.Float64bits(90.00000000000037))
	b = protowire.AppendTag(b, fieldAggregates, protowire.BytesType)
	b = protowire.AppendBytes(b, state)
	p, err := decodeProfile(b, declared(agg))
	if err != nil {
		t.Fatal(err)
	}
	sum, ok := p.aggs.state(agg).sum(agg.Spec, 1700000000000)
	if p.Revenue != money.MustParse("5391.21") || p.RefundedAmount != money.MustParse("0.3") ||
		len(p.orderLog) != 1 || p.orderLog[0].amount != money.MustParse("5391.21") || !ok || sum != money.Units(90) {
		t.Errorf("revenue %s, refunded %s, order log %v, sum %s %v; want 5391.21, 0.3, one of 5391.21, 90", p.Revenue, p.RefundedAmount, p.orderLog, sum, ok)
	}
	// Written again, exactly, and read back the same.
	again, err := decodeProfile(p.AppendEncode(nil), declared(agg))
	if err != nil {
		t.Fatal(err)
	}
	if again.Revenue != p.Revenue || !bytes.Equal(again.aggs.data, p.aggs.data) {
		t.Errorf("written again: revenue %s, states %x; want %s, %x", again.Revenue, again.aggs.data, p.Revenue, p.aggs.data)
	}
}

func TestDecodeSkipsUnknownFields(t *testing.T) {
	b := sampleProfile().AppendEncode(nil)
	// A field a later version might add: number 99, varint.
	b = protowire.AppendTag(b, 99, protowire.VarintType)
	b = protowire.AppendVarint(b, 5)
	if _, err := DecodeProfile(b); err != nil {
		t.Errorf("unknown field: %v", err)
	}
}

func TestDecodeCorrupt(t *testing.T) {
	good := sampleProfile().AppendEncode(nil)
	for name, b := range map[string][]byte{
		"empty":          nil,
		"future format":  {2, 1, 2},
		"truncated":      good[:len(good)-1], // inside the last field
		"bad tag":        {formatV1, 0xff},
		"length too big": {formatV1, 1<<3 | 2, 100, 'a'},
	} {
		if _, err := DecodeProfile(b); !errors.Is(err, errCorrupt) {
			t.Errorf("%s: error %v, want errCorrupt", name, err)
		}
	}
}

// FuzzDecodeProfile: a stored profile, however damaged, decodes or fails
// with an error; one that decodes can have its aggregates read and
// changed, and is written again in a form that decodes.
func FuzzDecodeProfile(f *testing.F) {
	aggs, err := CompileAggregates([]AggregateConfig{
		{Name: "a", Event: "E", Func: "count", Window: time.Hour},
		{Name: "b", Event: "E", Func: "distinct", Property: "p", Window: time.Hour},
		{Name: "c", Event: "E", Func: "max", Property: "p"},
	})
	if err != nil {
		f.Fatal(err)
	}
	sample := sampleProfile()
	for _, agg := range aggs.List() {
		addEvent(sample, agg, 1700000000000, 1, 1, 1700000000000)
	}
	f.Add(sample.AppendEncode(nil))
	busy := sampleProfile() // remembers enough ids for an index
	for i := range 100 {
		busy.recent.add(seenMessage{hash: uint64(i) * 0x9e3779b97f4a7c15, receivedAt: 1700000000000 + int64(i)}, 0)
	}
	f.Add(busy.AppendEncode(nil))
	f.Add(sampleProfileBeforeSources().AppendEncode(nil)) // traits without fields 4 and 5
	wrongTypes := protowire.AppendTag(nil, 1, protowire.BytesType)
	wrongTypes = protowire.AppendString(wrongTypes, "email")
	wrongTypes = protowire.AppendTag(wrongTypes, 4, protowire.VarintType) // source, not bytes
	wrongTypes = protowire.AppendVarint(wrongTypes, 7)
	wrongTypes = protowire.AppendTag(wrongTypes, 5, protowire.Fixed64Type) // flag, not bytes
	wrongTypes = protowire.AppendFixed64(wrongTypes, 7)
	f.Add(protowire.AppendBytes(protowire.AppendTag([]byte{formatV1}, fieldTrait, protowire.BytesType), wrongTypes))
	f.Add([]byte{formatV1})
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := decodeProfile(data, aggs)
		if err != nil {
			return
		}
		for _, agg := range aggs.List() {
			p.AggregateValue(agg, time.UnixMilli(1700000000000))
			addEvent(p, agg, 1700000000000, 2, 2, 1700000000000)
		}
		// Whatever ids it remembers, an id delivered is a duplicate when
		// delivered again, and the oldest are forgotten past the bound.
		d := Dedup{Horizon: time.Hour, MaxIDs: 40}
		for i, id := range []string{"m1", "m2", "m1", "m3"} {
			ev := event.Event{MessageID: id, ReceivedAt: time.UnixMilli(1700000000000 + int64(i))}
			p.FirstDelivery(&ev, d)
			if p.FirstDelivery(&ev, d) {
				t.Fatalf("delivery %d of %q: a second delivery counted as the first", i, id)
			}
		}
		if n := p.recent.len(); n > d.MaxIDs {
			t.Fatalf("%d ids remembered, bound %d", n, d.MaxIDs)
		}
		if _, err := DecodeProfile(p.AppendEncode(nil)); err != nil {
			t.Fatalf("re-encoding a decoded profile fails to decode: %v", err)
		}
	})
}

func TestApply(t *testing.T) {
	p := event.NewParser(event.DefaultLimits())
	prof := &Profile{}
	steps := []struct {
		ev         string
		countOrder bool
	}{
		{`{"type": "identify", "userId": "u", "anonymousId": "a", "timestamp": "2026-04-02T00:00:00Z", "traits": {"plan": "pro", "n": 1}}`, false},
		{`{"type": "identify", "userId": "u", "timestamp": "2026-04-01T00:00:00Z", "traits": {"plan": "old", "city": "Paris"}}`, false},
		{`{"type": "track", "userId": "u", "event": "Order Completed", "timestamp": "2026-04-03T00:00:00Z", "properties": {"order_id": "1", "total": 10}}`, true},
		{`{"type": "track", "userId": "u", "event": "Order Completed", "timestamp": "2026-04-04T00:00:00Z", "properties": {"order_id": "1", "total": 10}}`, false},
		{`{"type": "track", "userId": "u", "event": "Order Completed", "timestamp": "2026-03-01T00:00:00Z", "properties": {"order_id": "0", "revenue": 5}}`, true},
		{`{"type": "track", "userId": "u", "event": "Order Refunded", "timestamp": "2026-04-05T00:00:00Z", "properties": {"products": [{"price": -3, "quantity": 2}]}}`, false},
	}
	for _, s := range steps {
		ev := parse(t, p, s.ev)
		prof.Apply(&ev, s.countOrder)
	}
	if string(prof.Traits["plan"].Value) != `"pro"` || string(prof.Traits["city"].Value) != `"Paris"` {
		t.Errorf("traits: later event time must win per trait: %v", prof.Traits)
	}
	if prof.Orders != 2 || prof.Revenue != money.Units(15) {
		t.Errorf("orders %d revenue %v, want 2 and 15", prof.Orders, prof.Revenue)
	}
	if want := time.Date(2026, 4, 3, 0, 0, 0, 0, time.UTC).UnixMilli(); prof.LastOrderAt != want {
		t.Errorf("last order %v, want the latest counted order", time.UnixMilli(prof.LastOrderAt))
	}
	if prof.Refunds != 1 || prof.RefundedAmount != money.Units(6) {
		t.Errorf("refunds %d amount %v, want 1 and 6", prof.Refunds, prof.RefundedAmount)
	}
	if prof.EventCounts["Order Completed"] != 3 || prof.TypeCounts[event.Identify] != 2 {
		t.Errorf("counts %v %v", prof.EventCounts, prof.TypeCounts)
	}
	if want := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixMilli(); prof.FirstSeen != want {
		t.Errorf("first seen %v: a late event moves it back", time.UnixMilli(prof.FirstSeen))
	}
}

func TestApplyBounds(t *testing.T) {
	p := event.NewParser(event.DefaultLimits())
	prof := &Profile{}
	for i := range MaxEventNames + 10 {
		ev := parse(t, p, `{"type": "track", "anonymousId": "a`+strconv.Itoa(i)+`", "userId": "u", "event": "E`+strconv.Itoa(i)+`"}`)
		prof.Apply(&ev, false)
	}
	if len(prof.EventCounts) != MaxEventNames+1 || prof.EventCounts[OtherEvents] != 10 {
		t.Errorf("%d event names, %d other; want %d and 10", len(prof.EventCounts), prof.EventCounts[OtherEvents], MaxEventNames+1)
	}
	if len(prof.AnonymousIDs) != MaxAnonymousIDs || prof.AnonymousIDs[MaxAnonymousIDs-1] != "a"+strconv.Itoa(MaxEventNames+9) {
		t.Errorf("anonymous ids: %d kept, last %q", len(prof.AnonymousIDs), prof.AnonymousIDs[len(prof.AnonymousIDs)-1])
	}
}

func openStore(t testing.TB, dir string) *Store { return openWith(t, dir, testOptions()) }

// testOptions returns DefaultOptions with memory settings for tests.
func testOptions() Options {
	o := DefaultOptions()
	o.MemTableSize, o.BlockCacheSize = 4<<20, 1<<20
	return o
}

// openWith opens the store in dir with o, failing the test on an error.
func openWith(t testing.TB, dir string, o Options) *Store {
	t.Helper()
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStore(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	if _, ok, err := s.NextOffset(); ok || err != nil {
		t.Fatalf("fresh store has an offset: %v %v", ok, err)
	}
	p := event.NewParser(event.DefaultLimits())
	apply := func(b *Batch, s string) bool {
		ev := parse(t, p, s)
		ok, err := b.Apply(&ev)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	b := s.Begin()
	order := `{"type": "track", "userId": "u", "event": "Order Completed", "messageId": "m1", "properties": {"order_id": "o1", "total": 3}}`
	if !apply(b, order) || apply(b, order) {
		t.Error("a messageId must apply once within a batch")
	}
	if !apply(b, `{"type": "track", "userId": "u", "event": "Order Completed", "messageId": "m2", "properties": {"order_id": "o1", "total": 3}}`) {
		t.Error("a new messageId applies")
	}
	if err := b.Commit(42); err != nil {
		t.Fatal(err)
	}
	// Not committed: discarded.
	b = s.Begin()
	apply(b, `{"type": "track", "userId": "v", "event": "E", "messageId": "x"}`)
	b.Discard()

	prof, err := s.Profile("u")
	if err != nil || prof.Orders != 1 || prof.Revenue != money.Units(3) || prof.EventCounts["Order Completed"] != 2 {
		t.Fatalf("profile %+v, %v; want one order of 3 from two events", prof, err)
	}
	if _, err := s.Profile("v"); !errors.Is(err, ErrNotFound) {
		t.Errorf("discarded batch is visible: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopened: offset, profile, dedup and order ids survive.
	s = openStore(t, dir)
	defer s.Close()
	if off, ok, err := s.NextOffset(); off != 42 || !ok || err != nil {
		t.Errorf("offset %d %v %v, want 42", off, ok, err)
	}
	b = s.Begin()
	if apply(b, order) {
		t.Error("messageId seen before the restart applied again")
	}
	if !apply(b, `{"type": "track", "userId": "u", "event": "Order Completed", "messageId": "m3", "properties": {"order_id": "o1", "total": 3}}`) {
		t.Error("new messageId not applied")
	}
	if err := b.Commit(43); err != nil {
		t.Fatal(err)
	}
	if prof, _ := s.Profile("u"); prof.Orders != 1 || prof.EventCounts["Order Completed"] != 3 {
		t.Errorf("order o1 counted again after restart: %+v", prof)
	}
	n := 0
	if err := s.Each(context.Background(), func(*Profile) error { n++; return nil }); err != nil || n != 1 {
		t.Errorf("Each saw %d profiles, %v", n, err)
	}
}

// TestCommitWith: what runs before the commit runs only when the batch
// fits one transaction, and a batch that does not fit, or whose before
// fails, leaves the store as it was.
func TestCommitWith(t *testing.T) {
	p := event.NewParser(event.DefaultLimits())
	bio := strings.Repeat("x", 30_000)
	errOutputs := errors.New("outputs not written")
	for _, tc := range []struct {
		name       string
		profiles   int // identify calls with 30 KB of traits, new profiles each
		before     error
		wantErr    error
		wantBefore bool
	}{
		{"fits", 5, nil, nil, true},
		{"before fails", 5, errOutputs, errOutputs, true},
		{"too large", 40, nil, ErrBatchTooLarge, false}, // 1.2 MB; 4 MB memtables take 600 KB
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, t.TempDir())
			defer s.Close()
			b := s.Begin()
			for i := range tc.profiles {
				ev := parse(t, p, `{"type": "identify", "userId": "u`+strconv.Itoa(i)+`", "traits": {"bio": "`+bio+`"}}`)
				if _, err := b.Apply(&ev); err != nil {
					t.Fatal(err)
				}
				b.Grow(100) // understated, as after a batch of records that added little
			}
			if b.Full() {
				t.Fatal("the batch says it is full: the estimate should be lower than the truth here")
			}
			called := false
			err := b.CommitWith(7, func() error { called = true; return tc.before })
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("commit: %v, want %v", err, tc.wantErr)
			}
			if called != tc.wantBefore {
				t.Errorf("before called: %v, want %v", called, tc.wantBefore)
			}
			_, found, _ := s.NextOffset()
			_, perr := s.Profile("u0")
			if committed := tc.wantErr == nil; found != committed || (perr == nil) != committed {
				t.Errorf("offset stored %v, profile read %v: want the batch committed %v", found, perr, committed)
			}
		})
	}
}

// TestBatchLearnsGrowth: each commit learns what its records added to
// their profiles, and the next batch counts that (twice over, within
// bounds) for each record's size.
func TestBatchLearnsGrowth(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	p := event.NewParser(event.DefaultLimits())
	bio := strings.Repeat("x", 500)
	steps := []struct {
		name  string
		event func(i int) string
		want  float64
	}{
		{"a fresh store counts whole records", nil, maxGrowth},
		{"new profiles with traits", func(i int) string {
			return `{"type": "identify", "userId": "u` + strconv.Itoa(i) + `", "traits": {"bio": "` + bio + `"}}`
		}, maxGrowth},
		{"track calls for profiles that exist", func(i int) string {
			return `{"type": "track", "userId": "u` + strconv.Itoa(i%10) + `", "event": "Page Viewed", "properties": {"title": "` + bio + `"}}`
		}, minGrowth},
	}
	for offset, step := range steps {
		if step.event != nil {
			b := s.Begin()
			for i := range 100 {
				raw := step.event(i)
				ev := parse(t, p, raw)
				if _, err := b.Apply(&ev); err != nil {
					t.Fatal(err)
				}
				b.Grow(len(raw))
			}
			if err := b.Commit(int64(offset)); err != nil {
				t.Fatal(err)
			}
		}
		if got := s.growth; got != step.want {
			t.Errorf("%s: growth %v, want %v", step.name, got, step.want)
		}
	}
}

func TestBatchSplitsBeforeTxnLimit(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	p := event.NewParser(event.DefaultLimits())
	b := s.Begin()
	commits := 0
	for i := range 5000 {
		ev := parse(t, p, `{"type": "identify", "userId": "user-`+strconv.Itoa(i)+`", "traits": {"bio": "`+string(repeat('x', 500))+`"}}`)
		if _, err := b.Apply(&ev); err != nil {
			t.Fatal(err)
		}
		b.Grow(600)
		if b.Full() {
			if err := b.Commit(int64(i + 1)); err != nil {
				t.Fatalf("commit at %d: %v", i, err)
			}
			commits++
			b = s.Begin()
		}
	}
	if err := b.Commit(5000); err != nil {
		t.Fatal(err)
	}
	if commits == 0 {
		t.Error("3 MB of profiles fit in one transaction of a 2 MB memtable store?")
	}
	if off, _, _ := s.NextOffset(); off != 5000 {
		t.Errorf("offset %d", off)
	}
}

func repeat(c byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = c
	}
	return b
}

func TestRevenueFloat(t *testing.T) {
	// Sums of money are exact over many orders.
	prof := &Profile{}
	p := event.NewParser(event.DefaultLimits())
	for i := range 1000 {
		ev := parse(t, p, `{"type": "track", "userId": "u", "event": "Order Completed", "properties": {"order_id": "`+strconv.Itoa(i)+`", "total": 0.1}}`)
		prof.Apply(&ev, true)
	}
	if prof.Revenue != money.Units(100) {
		t.Errorf("revenue %v", prof.Revenue)
	}
}

func TestFirstDelivery(t *testing.T) {
	p := event.NewParser(event.DefaultLimits())
	d := Dedup{Horizon: time.Hour, MaxIDs: 3}
	prof := &Profile{}
	at := func(id string, minutes int) *event.Event {
		ev := parse(t, p, `{"type": "track", "userId": "u", "event": "E", "messageId": "`+id+`"}`)
		ev.ReceivedAt = received.Add(time.Duration(minutes) * time.Minute)
		return &ev
	}
	steps := []struct {
		id      string
		minutes int
		want    bool
	}{
		{"a", 0, true},
		{"a", 1, false}, // retry
		{"b", 2, true},
		{"a", 59, false}, // still within the hour
		{"c", 70, true},  // a (at 0) expires now
		{"a", 71, true},  // so a is new again
		{"d", 72, true},  // bound of 3: b is forgotten
		{"b", 73, true},
		{"d", 74, false},
		{"", 75, true}, // no messageId: always applied
		{"", 75, true},
	}
	for i, s := range steps {
		if got := prof.FirstDelivery(at(s.id, s.minutes), d); got != s.want {
			t.Errorf("step %d (%q at %d min): %v, want %v", i, s.id, s.minutes, got, s.want)
		}
	}
	if prof.recent.len() > 3 {
		t.Errorf("%d ids remembered, bound is 3", prof.recent.len())
	}
}

// TestConcurrentReads reads profiles while batches commit (run it with
// -race): readers see only committed states, and the cache never goes back
// to an older one.
func TestConcurrentReads(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	p := event.NewParser(event.DefaultLimits())
	done := make(chan struct{})
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			last := map[string]uint64{}
			for {
				select {
				case <-done:
					return
				default:
				}
				for _, key := range []string{"k0", "k1", "k2"} {
					prof, err := s.Profile(key)
					if errors.Is(err, ErrNotFound) {
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					n := prof.TypeCounts[event.Track]
					if n < last[key] {
						t.Errorf("%s went back from %d to %d events", key, last[key], n)
						return
					}
					last[key] = n
				}
			}
		})
	}
	for i := range 300 {
		b := s.Begin()
		for k := range 3 {
			ev := parse(t, p, `{"type": "track", "userId": "k`+strconv.Itoa(k)+`", "event": "E"}`)
			if _, err := b.Apply(&ev); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Commit(int64(i)); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			s.cache.Purge() // force readers through Badger
		}
	}
	close(done)
	readers.Wait()
	for k := range 3 {
		if prof, _ := s.Profile("k" + strconv.Itoa(k)); prof.TypeCounts[event.Track] != 300 {
			t.Errorf("k%d: %d events, want 300", k, prof.TypeCounts[event.Track])
		}
	}
}

// TestCloneCopiesOnWrite: a clone shares its original's aggregate states
// and memberships until it changes them; the original never sees the
// clone's changes.
func TestCloneCopiesOnWrite(t *testing.T) {
	aggs, err := CompileAggregates([]AggregateConfig{
		{Name: "a", Event: "E", Func: "count"},
		{Name: "b", Event: "E", Func: "count", Window: time.Hour},
		{Name: "c", Event: "E", Func: "distinct", Property: "p"},
	})
	if err != nil {
		t.Fatal(err)
	}
	distinct := aggs.List()[2]
	segs, err := CompileSegments([]SegmentConfig{{Name: "new", Rule: "true"}, {Name: "views", Rule: "true"}}, aggs, 0)
	if err != nil {
		t.Fatal(err)
	}
	newSeg, views := segs.List()[0], segs.List()[1]
	orig, err := decodeProfile(sampleProfile().AppendEncode(nil), aggs)
	if err != nil {
		t.Fatal(err)
	}
	addEvent(orig, aggs.List()[0], 1000, 0, 0, 2000)
	for _, h := range []uint64{10, 30, 50} {
		addEvent(orig, distinct, 1000, 0, h, 2000)
	}
	orig.setSegment(segs, views, true, 1000)
	want := orig.AppendEncode(nil)

	c := orig.Clone()
	for _, agg := range aggs.List() {
		addEvent(c, agg, 1500, 0, 20, 2000) // hash 20: inserted among the original's
	}
	c.setSegment(segs, newSeg, true, 2000)
	c.setSegment(segs, views, false, 2000)
	before, _ := DecodeProfile(want)
	after, _ := DecodeProfile(orig.AppendEncode(nil))
	if !reflect.DeepEqual(after, before) {
		t.Error("changing a clone changed its original")
	}
	if n, _ := c.AggregateValue(aggs.List()[0], time.UnixMilli(2000)); n != 2 {
		t.Errorf("clone's count %v, want 2", n)
	}
	if n, _ := orig.AggregateValue(aggs.List()[0], time.UnixMilli(2000)); n != 1 {
		t.Errorf("original's count %v, want 1", n)
	}
	if n, _ := c.AggregateValue(distinct, time.UnixMilli(2000)); n != 4 {
		t.Errorf("clone's distinct count %v, want 4", n)
	}
	if n, _ := orig.AggregateValue(distinct, time.UnixMilli(2000)); n != 3 {
		t.Errorf("original's distinct count %v, want 3", n)
	}
	if _, in := c.Segments["new"]; !in || len(c.Segments) != 1 || len(orig.Segments) != 1 || orig.Segments["views"] != 1000 {
		t.Errorf("memberships: clone %v, original %v", c.Segments, orig.Segments)
	}
	env := NewRuleEnv(segs, nil)
	for _, tc := range []struct {
		p         *Profile
		new, view bool
	}{{c, true, false}, {orig, false, true}} {
		env.Reset(tc.p, nil, time.UnixMilli(2000), RFMQuintiles{})
		if env.Segment(newSeg.index) != tc.new || env.Segment(views.index) != tc.view {
			t.Errorf("segment(): new %v, views %v; want %v, %v", env.Segment(newSeg.index), env.Segment(views.index), tc.new, tc.view)
		}
	}
}

// TestOpenAfterCrashLeftEmptyLogs: a crash between creating a memtable or
// value log file and writing to it leaves an empty file; the store opens
// all the same, with what it had committed.
func TestOpenAfterCrashLeftEmptyLogs(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	p := event.NewParser(event.DefaultLimits())
	b := s.Begin()
	ev := parse(t, p, `{"type": "track", "userId": "u1", "event": "E"}`)
	if _, err := b.Apply(&ev); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(1); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"00099.mem", "000099.vlog"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s = openStore(t, dir)
	defer s.Close()
	if p, err := s.Profile("u1"); err != nil || p.EventCounts["E"] != 1 {
		t.Errorf("after reopening: %v, %v", p, err)
	}
}

// TestTraitsStoredAsJSON: a trait holding control characters is stored as
// JSON that reads back the same, also when something read the trait's
// string before the profile took it (fastjson then writes the Go way,
// \x07, which no JSON reader accepts).
func TestTraitsStoredAsJSON(t *testing.T) {
	p := event.NewParser(event.DefaultLimits())
	ev := parse(t, p, `{"type": "identify", "userId": "u", "traits": {"name": "a\u0007b\u0000", "nested": {"c": "\u000b"}}}`)
	_ = ev.Traits.GetStringBytes("name") // read, as a rule on traits.name would
	var prof Profile
	prof.Apply(&ev, true)
	for name, want := range map[string]any{"name": "a\x07b\x00", "nested": map[string]any{"c": "\x0b"}} {
		var got any
		if err := json.Unmarshal(prof.Traits[name].Value, &got); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("trait %s stored as %q: %v, want %q", name, prof.Traits[name].Value, err, want)
		}
	}
}
