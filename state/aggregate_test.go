package state

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/money"
)

func TestCompileAggregatesErrors(t *testing.T) {
	_, err := CompileAggregates([]AggregateConfig{
		{Name: "ok", Event: "E", Func: "count"},
		{Name: "no_event", Func: "count"},
		{Name: "bad_fn", Event: "E", Func: "avg"},
		{Name: "sum_without_property", Event: "E", Func: "sum"},
		{Name: "count_with_property", Event: "E", Func: "count", Property: "x"},
		{Name: "bad_where", Event: "E", Func: "count", Where: `properties.category == `},
		{Name: "clock_where", Event: "E", Func: "count", Where: `since("X") > 1h`},
		{Name: "bad name", Event: "E", Func: "count"},
	})
	want := []string{
		`aggregate "bad name": a name must be a single word`,
		`aggregate "bad_fn": fn "avg": want count, sum, min, max, distinct, first_seen or last_seen`,
		`rule "aggregates.bad_where.where" at 1:24: unexpected end of rule`,
		`aggregate "clock_where": where reads the event (properties, context) and the profile's traits only`,
		`aggregate "count_with_property": fn count takes no property`,
		`aggregate "no_event": event is required`,
		`aggregate "sum_without_property": fn sum needs a property`,
	}
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
	if strings.Contains(err.Error(), `"ok"`) {
		t.Errorf("a valid aggregate reported: %v", err)
	}
}

// TestAggregatesThroughStore applies a scripted sequence through a store
// with a fake clock and reads the aggregates at chosen instants, including
// after a restart and after the window passed with no new event.
func TestAggregatesThroughStore(t *testing.T) {
	aggs, err := CompileAggregates([]AggregateConfig{
		{Name: "cart_adds_1h", Event: "Product Added", Func: "count", Window: time.Hour},
		{Name: "shoe_views_7d", Event: "Product Viewed", Where: `properties.category == "shoes"`, Func: "count", Window: 7 * 24 * time.Hour},
		{Name: "spend_30d", Event: "Order Completed", Func: "sum", Property: "total", Window: 30 * 24 * time.Hour},
		{Name: "max_order", Event: "Order Completed", Func: "max", Property: "total"},
		{Name: "categories", Event: "Product Viewed", Func: "distinct", Property: "category"},
		{Name: "first_event", Event: "*", Func: "first_seen"},
	})
	if err != nil {
		t.Fatal(err)
	}
	clock := t0
	o := testOptions()
	o.Aggregates, o.Now = aggs, func() time.Time { return clock }
	dir := t.TempDir()
	s := openWith(t, dir, o)
	p := event.NewParser(event.DefaultLimits())
	offset := int64(0)
	sendAt := func(at, eventAt time.Duration, ev string) {
		t.Helper()
		clock = t0.Add(at)
		e, err := p.Parse([]byte(`{"type": "track", "userId": "u", "timestamp": "`+t0.Add(eventAt).Format(time.RFC3339)+`", `+ev+`}`), 0, clock)
		if err != nil {
			t.Fatal(err)
		}
		b := s.Begin()
		if _, err := b.Apply(&e); err != nil {
			t.Fatal(err)
		}
		offset++
		if err := b.Commit(offset); err != nil {
			t.Fatal(err)
		}
	}
	send := func(at time.Duration, ev string) { t.Helper(); sendAt(at, at, ev) }
	value := func(at time.Duration) map[string]any {
		t.Helper()
		prof, err := s.Profile("u")
		if err != nil {
			t.Fatal(err)
		}
		return prof.View(Derived{Aggregates: aggs}, t0.Add(at)).Aggregates
	}
	send(0, `"event": "Product Viewed", "properties": {"category": "shoes"}`)
	send(time.Minute, `"event": "Product Viewed", "properties": {"category": "bags"}`)
	send(2*time.Minute, `"event": "Product Viewed", "properties": {"category": "shoes"}`)
	send(10*time.Minute, `"event": "Product Added", "properties": {"category": "shoes"}`)
	send(20*time.Minute, `"event": "Order Completed", "properties": {"order_id": "1", "total": 80}`)
	send(24*time.Hour, `"event": "Order Completed", "properties": {"order_id": "2", "total": 30}`)

	v := value(24 * time.Hour)
	want := map[string]any{"cart_adds_1h": 0.0, "shoe_views_7d": 2.0, "spend_30d": money.Units(110), "max_order": 80.0, "categories": 2.0, "first_event": t0}
	for name, w := range want {
		if v[name] != w {
			t.Errorf("at 24h %s = %v, want %v", name, v[name], w)
		}
	}
	if v := value(30 * time.Minute); v["cart_adds_1h"] != 1.0 {
		t.Errorf("cart_adds_1h at 30m = %v, want 1", v["cart_adds_1h"])
	}
	// Restart: the state is in the store.
	s.Close()
	s = openWith(t, dir, o)
	defer s.Close()
	// A week and a bit later, with no new event: the shoe views and the
	// first order have left their windows; all-time aggregates stay.
	v = value(31 * 24 * time.Hour)
	want = map[string]any{"cart_adds_1h": 0.0, "shoe_views_7d": 0.0, "spend_30d": money.Units(30), "max_order": 80.0, "categories": 2.0, "first_event": t0}
	for name, w := range want {
		if v[name] != w {
			t.Errorf("at 31d %s = %v, want %v", name, v[name], w)
		}
	}
	// A late event inside the window counts; one older than it does not.
	sendAt(31*24*time.Hour, 20*24*time.Hour, `"event": "Order Completed", "properties": {"order_id": "3", "total": 5}`)
	sendAt(31*24*time.Hour, 24*time.Hour-time.Minute, `"event": "Order Completed", "properties": {"order_id": "4", "total": 1000}`)
	v = value(31 * 24 * time.Hour)
	if v["spend_30d"] != money.Units(35) || v["max_order"] != 1000.0 {
		t.Errorf("late orders: spend_30d %v, want 35 (the one older than 30 days does not count); max_order %v, want 1000 (all time)", v["spend_30d"], v["max_order"])
	}
}

// TestAggregateRedefined: a stored state is found by its aggregate's name.
// Under another function or window it counts for nothing and starts
// afresh with the next event; the state of an aggregate no longer declared
// stays in the profile, there again when the declaration comes back.
func TestAggregateRedefined(t *testing.T) {
	dir := t.TempDir()
	p := event.NewParser(event.DefaultLimits())
	offset := int64(0)
	// run opens the store under decls, applies the events and returns the
	// aggregates' values; each step is a restart with a new config.
	run := func(decls []AggregateConfig, events ...string) map[string]any {
		t.Helper()
		aggs, err := CompileAggregates(decls)
		if err != nil {
			t.Fatal(err)
		}
		o := testOptions()
		o.Aggregates, o.Now = aggs, func() time.Time { return t0.Add(time.Minute) }
		s := openWith(t, dir, o)
		defer s.Close()
		b := s.Begin()
		for _, e := range events {
			ev := parse(t, p, `{"type": "track", "userId": "u", "event": "E", "timestamp": "`+t0.Format(time.RFC3339)+`", "properties": `+e+`}`)
			if _, err := b.Apply(&ev); err != nil {
				t.Fatal(err)
			}
			offset++
		}
		if err := b.Commit(offset); err != nil {
			t.Fatal(err)
		}
		prof, err := s.Profile("u")
		if err != nil {
			t.Fatal(err)
		}
		return prof.View(Derived{Aggregates: aggs}, t0.Add(time.Minute)).Aggregates
	}
	x := AggregateConfig{Name: "x", Event: "E", Func: "count", Window: time.Hour}
	y := AggregateConfig{Name: "y", Event: "E", Func: "count"}
	xSum := AggregateConfig{Name: "x", Event: "E", Func: "sum", Property: "v", Window: time.Hour}
	xDay := AggregateConfig{Name: "x", Event: "E", Func: "count", Window: 24 * time.Hour}
	for i, step := range []struct {
		decls  []AggregateConfig
		events []string
		want   map[string]any
	}{
		{[]AggregateConfig{x, y}, []string{`{"v": 1}`, `{"v": 2}`}, map[string]any{"x": 2.0, "y": 2.0}},
		{[]AggregateConfig{xSum}, nil, map[string]any{"x": nil}},                             // another function
		{[]AggregateConfig{xSum}, []string{`{"v": 5}`}, map[string]any{"x": money.Units(5)}}, // afresh
		{[]AggregateConfig{xDay, y}, nil, map[string]any{"x": 0.0, "y": 2.0}},                // another window; y kept undeclared
		{[]AggregateConfig{xDay, y}, []string{`{}`}, map[string]any{"x": 1.0, "y": 3.0}},
	} {
		if got := run(step.decls, step.events...); !reflect.DeepEqual(got, step.want) {
			t.Errorf("step %d: aggregates %v, want %v", i, got, step.want)
		}
	}
}

// TestAggregatePropertyList: an aggregate reading several properties
// reads the first one the event has as a number, as an order's amount is
// its revenue, else its total: a spec-style order with revenue only
// counts, and the spend agrees with the profile's orders.revenue.
func TestAggregatePropertyList(t *testing.T) {
	aggs, err := CompileAggregates([]AggregateConfig{
		{Name: "spend", Event: "Order Completed", Func: "sum", Property: "revenue, total"},
		{Name: "largest", Event: "Order Completed", Func: "max", Property: "revenue,total"},
		{Name: "total_only", Event: "Order Completed", Func: "sum", Property: "total"},
		{Name: "nested", Event: "Order Completed", Func: "sum", Property: "amount.value,revenue"},
	})
	if err != nil {
		t.Fatal(err)
	}
	o := testOptions()
	o.Aggregates, o.Now = aggs, func() time.Time { return t0.Add(time.Minute) }
	s := openWith(t, t.TempDir(), o)
	defer s.Close()
	p := event.NewParser(event.DefaultLimits())
	b := s.Begin()
	for i, props := range []string{
		`{"revenue": 10}`,                // revenue only (Segment's spec)
		`{"total": 20}`,                  // total only
		`{"revenue": 30, "total": 33}`,   // both: revenue
		`{"revenue": null, "total": 40}`, // null revenue: total
		`{"subtotal": 50}`,               // neither: not counted
		`{"amount": {"value": 1}, "revenue": 60}`,
	} {
		ev := parse(t, p, `{"type": "track", "userId": "u", "event": "Order Completed", "timestamp": "`+t0.Format(time.RFC3339)+`", "properties": {"order_id": "o`+strconv.Itoa(i)+`", `+props[1:]+`}`)
		if _, err := b.Apply(&ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(6); err != nil {
		t.Fatal(err)
	}
	prof, err := s.Profile("u")
	if err != nil {
		t.Fatal(err)
	}
	v := prof.View(Derived{Aggregates: aggs}, t0.Add(time.Minute))
	want := map[string]any{"spend": money.Units(160), "largest": 60.0, "total_only": money.Units(93), "nested": money.Units(10 + 30 + 1)}
	for name, w := range want {
		if v.Aggregates[name] != w {
			t.Errorf("%s = %v, want %v", name, v.Aggregates[name], w)
		}
	}
	if v.Orders.Revenue != v.Aggregates["spend"] {
		t.Errorf("orders.revenue %v, spend %v: want them equal", v.Orders.Revenue, v.Aggregates["spend"])
	}
}

func TestCompileAggregatePropertyList(t *testing.T) {
	for _, prop := range []string{"revenue,", ",total", "a..b", ".a", "a.,b", " , "} {
		_, err := CompileAggregates([]AggregateConfig{{Name: "s", Event: "E", Func: "sum", Property: prop}})
		if err == nil || !strings.Contains(err.Error(), `aggregate "s": property`) {
			t.Errorf("property %q: error %v, want one naming the aggregate and its property", prop, err)
		}
	}
}

// TestMoneyExact: three hundred orders of 0.1 and three hundred of 0.2,
// then one of 0.21, sum to 90.21 exactly, in the orders' revenue, in a sum
// aggregate, in RFM monetary value and in the profile's JSON, where float64
// sums showed noise (90.21000000000042).
func TestMoneyExact(t *testing.T) {
	aggs, err := CompileAggregates([]AggregateConfig{{Name: "spend", Event: "Order Completed", Func: "sum", Property: "revenue"}})
	if err != nil {
		t.Fatal(err)
	}
	o := testOptions()
	o.Aggregates, o.Now = aggs, func() time.Time { return t0.Add(time.Hour) }
	s := openWith(t, t.TempDir(), o)
	defer s.Close()
	p := event.NewParser(event.DefaultLimits())
	b := s.Begin()
	order := func(i int, revenue string) {
		ev := parse(t, p, `{"type": "track", "userId": "u", "event": "Order Completed", "timestamp": "`+t0.Format(time.RFC3339)+`", "properties": {"order_id": "o`+strconv.Itoa(i)+`", "revenue": `+revenue+`}}`)
		if _, err := b.Apply(&ev); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 300 {
		order(2*i, "0.1")
		order(2*i+1, "0.2")
	}
	order(600, "0.21")
	if err := b.Commit(601); err != nil {
		t.Fatal(err)
	}
	prof, err := s.Profile("u")
	if err != nil {
		t.Fatal(err)
	}
	v := prof.View(Derived{Aggregates: aggs}, t0.Add(time.Hour))
	want := money.MustParse("90.21")
	if v.Orders.Revenue != want || v.Aggregates["spend"] != want || v.RFM == nil || v.RFM.Monetary != want {
		t.Errorf("revenue %s, spend %v, RFM %+v; want 90.21 each", v.Orders.Revenue, v.Aggregates["spend"], v.RFM)
	}
	js, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"revenue":90.21,`, `"spend":90.21`, `"monetary":90.21`} {
		if !strings.Contains(string(js), field) {
			t.Errorf("profile JSON lacks %s: %s", field, js)
		}
	}
}
