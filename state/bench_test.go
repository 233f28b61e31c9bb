package state

import (
	"strconv"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/internal/workload"
)

func workloadEvents(b *testing.B, n int) []event.Event {
	b.Helper()
	gen := workload.New(workload.DefaultConfig())
	events := make([]event.Event, n)
	for i := range events {
		_, raw := gen.Next()
		// One parser per event: the values must outlive the next parse.
		ev, err := event.NewParser(event.DefaultLimits()).Parse(raw, 0, received)
		if err != nil {
			b.Fatal(err)
		}
		events[i] = ev
	}
	return events
}

// BenchmarkApply is the in-memory cost of applying one event to a profile.
func BenchmarkApply(b *testing.B) {
	events := workloadEvents(b, 1024)
	profiles := make(map[string]*Profile)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ev := &events[i%len(events)]
		p := profiles[ev.Key()]
		if p == nil {
			p = &Profile{}
			profiles[ev.Key()] = p
		}
		p.Apply(ev, true)
		i++
	}
}

// BenchmarkEncodeDecode is a profile's round trip through its encoding.
func BenchmarkEncodeDecode(b *testing.B) {
	p := sampleProfile()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = p.AppendEncode(buf[:0])
		if _, err := DecodeProfile(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncode is the encoding half of BenchmarkEncodeDecode.
func BenchmarkEncode(b *testing.B) {
	p := sampleProfile()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = p.AppendEncode(buf[:0])
	}
}

// BenchmarkDecode is the decoding half of BenchmarkEncodeDecode.
func BenchmarkDecode(b *testing.B) {
	buf := sampleProfile().AppendEncode(nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeProfile(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStoreApply is the cost per event of applying workload events to
// a Badger store through batches of 4,000 events (a partition's share of a default poll): dedup lookup, profile
// load, apply, and the share of the commit.
func BenchmarkStoreApply(b *testing.B) { benchmarkStoreApply(b, DefaultOptions()) }

// BenchmarkStoreApplyRetention is BenchmarkStoreApply under a retention
// (400d), which gives each new profile a wake-up key.
func BenchmarkStoreApplyRetention(b *testing.B) {
	o := DefaultOptions()
	o.Retention = 400 * 24 * time.Hour
	benchmarkStoreApply(b, o)
}

func benchmarkStoreApply(b *testing.B, o Options) {
	events := workloadEvents(b, 50_000)
	s, err := Open(b.TempDir(), o)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ReportAllocs()
	batch := s.Begin()
	i := 0
	for b.Loop() {
		ev := events[i%len(events)]
		ev.MessageID = ev.MessageID + "-" + string(rune('a'+i/len(events)%26))
		if _, err := batch.Apply(&ev); err != nil {
			b.Fatal(err)
		}
		i++
		if i%4000 == 0 || batch.Full() {
			if err := batch.Commit(int64(i)); err != nil {
				b.Fatal(err)
			}
			batch = s.Begin()
		}
	}
	if err := batch.Commit(int64(i)); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkFirstDeliveryBusy is the dedup check of an event to a busy
// profile (a bot, a shared kiosk): one that already remembers dedup_ids
// (1,000) messageIds, so that every new one forgets the oldest, and that
// is copied for each batch it is in (every 20 events here).
func BenchmarkFirstDeliveryBusy(b *testing.B) {
	d := Dedup{Horizon: 24 * time.Hour, MaxIDs: 1000}
	ids := make([]string, 4096)
	for i := range ids {
		ids[i] = "msg-" + strconv.Itoa(i)
	}
	ev := event.Event{ReceivedAt: received}
	p := &Profile{}
	for _, id := range ids[:d.MaxIDs] {
		ev.MessageID = id
		p.FirstDelivery(&ev, d)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i%20 == 0 {
			p = p.Clone()
		}
		ev.MessageID = ids[(d.MaxIDs+i)%len(ids)] // forgotten since its last turn
		ev.ReceivedAt = ev.ReceivedAt.Add(time.Millisecond)
		if !p.FirstDelivery(&ev, d) {
			b.Fatal("a new messageId counted as a duplicate")
		}
		i++
	}
}

// BenchmarkNormalisePhone is the cost of an identify call's phone trait
// (decision 0026): national with a default region, parsed to E.164 each
// time, and sent again in E.164 as it is held, which is not parsed again.
func BenchmarkNormalisePhone(b *testing.B) {
	r := TraitRules{PhoneRegion: "GB"}
	for _, c := range []struct{ name, sent string }{{"national", "07911 123456"}, {"as held", "+447911123456"}} {
		b.Run(c.name, func(b *testing.B) {
			ev, err := event.NewParser(event.DefaultLimits()).Parse([]byte(`{"type": "identify", "userId": "u", "traits": {"phone": "`+c.sent+`"}}`), 0, received)
			if err != nil {
				b.Fatal(err)
			}
			held := Trait{Value: []byte(`"+447911123456"`), Source: SourceAPI}
			p := &Profile{Traits: map[string]Trait{TraitPhone: held}}
			b.ReportAllocs()
			for b.Loop() {
				p.Traits[TraitPhone] = held
				p.mergeTraits(&ev, 1, r)
			}
			if got := string(p.Traits[TraitPhone].Value); got != `"+447911123456"` {
				b.Fatalf("phone %s", got)
			}
		})
	}
}
