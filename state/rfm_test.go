package state

import (
	"testing"
	"time"

	"github.com/tailorcdp/tailor/event"
)

// TestRFMPopulation applies orders through a store and checks the
// histograms, the quintiles and the scores, also after a restart.
func TestRFMPopulation(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	p := event.NewParser(event.DefaultLimits())
	b := s.Begin()
	// Customer i orders i times, the last on day i, spending 10*i each time.
	for i := 1; i <= 10; i++ {
		for j := 1; j <= i; j++ {
			ts := t0.Add(time.Duration(i)*24*time.Hour + time.Duration(j)*time.Minute).Format(time.RFC3339)
			ev, err := p.Parse([]byte(`{"type": "track", "userId": "c`+string(rune('a'+i))+`", "event": "Order Completed", "timestamp": "`+ts+`", "properties": {"order_id": "`+string(rune('a'+i))+string(rune('a'+j))+`", "total": 10}}`), 0, t0.Add(30*24*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.Apply(&ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := b.Commit(1); err != nil {
		t.Fatal(err)
	}
	check := func(s *Store) {
		t.Helper()
		pop := s.Population()
		var n int64
		for _, c := range pop.Orders {
			n += c
		}
		if n != 10 {
			t.Fatalf("population of %d, want 10: %+v", n, pop)
		}
		q := pop.Quintiles()
		if q.Orders != [4]float64{2, 4, 6, 8} {
			t.Errorf("order quintiles %v, want [2 4 6 8]", q.Orders)
		}
		prof, err := s.Profile("c" + string(rune('a'+9)))
		if err != nil {
			t.Fatal(err)
		}
		now := t0.Add(30 * 24 * time.Hour)
		r, _ := prof.RFM(0, q, now)
		f, _ := prof.RFM(1, q, now)
		m, _ := prof.RFM(2, q, now)
		rec, _ := prof.RFM(3, q, now)
		if r != 5 || f != 5 || m != 5 || rec != 20 {
			t.Errorf("customer 9: r %v f %v m %v recency %v, want 5 5 5 and 20 days", r, f, m, rec)
		}
	}
	check(s)
	s.Close()
	s = openStore(t, dir)
	defer s.Close()
	check(s)
}
