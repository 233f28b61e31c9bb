package state

import (
	"fmt"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/event"
)

// BenchmarkWakeRetention is the scheduler's step (Batch.Wake and its
// commit) over profiles that each added to a cart and ordered an hour
// ago, with a segment that time alone leaves an hour after the cart add:
// with no retention (the step re-evaluates the segment); with a retention
// that keeps the profiles (it also schedules their deadline); and with
// one that has just run out (it deletes them instead). ns/profile is the
// step's time per due profile; the setup of each round is not timed.
func BenchmarkWakeRetention(b *testing.B) {
	const perRound = 1000
	for _, bc := range []struct {
		name      string
		retention time.Duration
		expired   bool
	}{
		{"off", 0, false},
		{"kept", 400 * 24 * time.Hour, false},
		{"expired", time.Hour, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			_, segs := compileModel(b, nil, []SegmentConfig{
				{"french", `traits.country == "FR"`},
				{"cart", `since("Product Added") < 1h`},
			}, 0)
			clock := t0
			o := DefaultOptions()
			o.Segments, o.Retention, o.Changelog = segs, bc.retention, true
			o.Now = func() time.Time { return clock }
			s, err := Open(b.TempDir(), o)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			p := event.NewParser(event.DefaultLimits())
			var offset int64
			round, profiles, expired := 0, 0, 0
			for b.Loop() {
				b.StopTimer()
				batch := s.Begin()
				ts := clock.Format(time.RFC3339)
				for i := range perRound {
					key := fmt.Sprintf("u%d-%d", round, i)
					for _, body := range []string{
						`"type": "identify", "traits": {"country": "FR"}`,
						`"type": "track", "event": "Product Added", "properties": {"product_id": "p1"}`,
						`"type": "track", "event": "Order Completed", "properties": {"order_id": "` + key + `", "total": 10}`,
					} {
						ev, err := p.Parse([]byte(`{"userId": "`+key+`", "timestamp": "`+ts+`", `+body+`}`), 0, clock)
						if err != nil {
							b.Fatal(err)
						}
						if _, err := batch.Apply(&ev); err != nil {
							b.Fatal(err)
						}
					}
				}
				offset++
				if err := batch.Commit(offset); err != nil {
					b.Fatal(err)
				}
				round++
				// Just past the hour: the segment's exit (its since() bound
				// passed) and the short retention are due.
				clock = clock.Add(time.Hour + time.Second)
				b.StartTimer()
				for {
					at, ok := s.NextWake()
					if !ok || at.After(clock) {
						break
					}
					batch := s.Begin()
					n, err := batch.Wake(clock, perRound)
					if err != nil {
						b.Fatal(err)
					}
					profiles += n
					expired += batch.Expired()
					if err := batch.Commit(offset); err != nil {
						b.Fatal(err)
					}
				}
			}
			if bc.expired != (expired == profiles) || profiles != round*perRound {
				b.Fatalf("%d profiles woken, %d expired", profiles, expired)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(profiles), "ns/profile")
		})
	}
}
