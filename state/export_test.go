package state

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/money"
)

// TestStoreExport: a store's export of a profile holds its view, the
// order ids counted for it with their amounts and times, its order log
// and the previousId of its alias call among its linked ids; an unknown
// key is ErrNotFound.
func TestStoreExport(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	p := event.NewParser(event.DefaultLimits())
	b := s.Begin()
	for _, line := range []string{
		`{"type": "track", "userId": "u", "event": "Order Completed", "messageId": "m1", "timestamp": "2026-04-01T10:00:00Z", "properties": {"order_id": "o2", "total": 3}}`,
		`{"type": "track", "userId": "u", "event": "Order Completed", "messageId": "m2", "timestamp": "2026-04-02T10:00:00Z", "properties": {"order_id": "o1", "revenue": 7.25}}`,
		`{"type": "track", "userId": "u", "event": "Order Completed", "messageId": "m3", "timestamp": "2026-04-03T10:00:00Z", "properties": {"order_id": "o1", "revenue": 7.25}}`,
		`{"type": "alias", "userId": "u", "previousId": "old", "messageId": "m4", "timestamp": "2026-04-04T10:00:00Z"}`,
		`{"type": "track", "userId": "other", "event": "Order Completed", "messageId": "m5", "properties": {"order_id": "o3", "total": 1}}`,
	} {
		ev := parse(t, p, line)
		if _, err := b.Apply(&ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(1); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 4, 10, 0, 0, 0, 0, time.UTC)
	x, err := s.Export("u", Derived{}, now)
	if err != nil {
		t.Fatal(err)
	}
	day := func(d int) time.Time { return time.Date(2026, 4, d, 10, 0, 0, 0, time.UTC) }
	want := []struct {
		id     string
		amount money.Amount
		at     time.Time
	}{{"o1", money.MustParse("7.25"), day(2)}, {"o2", money.Units(3), day(1)}}
	if len(x.CountedOrders) != len(want) {
		t.Fatalf("counted orders %+v, want o1 and o2", x.CountedOrders)
	}
	for i, w := range want {
		o := x.CountedOrders[i]
		if o.ID != w.id || o.Amount == nil || *o.Amount != w.amount || o.At == nil || !o.At.Equal(w.at) {
			t.Errorf("counted order %d: %s %v %v, want %+v", i, o.ID, o.Amount, o.At, w)
		}
	}
	if len(x.OrderLog) != 2 || !x.OrderLog[0].At.Equal(day(1)) || x.OrderLog[1].Amount != money.MustParse("7.25") {
		t.Errorf("order log %+v", x.OrderLog)
	}
	if x.Key != "u" || x.Orders.Count != 2 || !slices.Equal(x.AnonymousIDs, []string{"old"}) || x.MessageIDs != 4 || !x.ExportedAt.Equal(now) {
		t.Errorf("export %+v", x)
	}
	if _, err := s.Export("nobody", Derived{}, now); !errors.Is(err, ErrNotFound) {
		t.Errorf("export of an unknown key: %v, want ErrNotFound", err)
	}
}
