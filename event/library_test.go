package event

import (
	"testing"
	"time"

	"github.com/valyala/fastjson"
)

// TestStampLibrary: an event naming no library gets the one stamped,
// whatever its context holds; one naming a library keeps it.
func TestStampLibrary(t *testing.T) {
	cases := []struct {
		name, context, before, after string
	}{
		{"no context", ``, "", ImportLibrary},
		{"empty context", `, "context": {}`, "", ImportLibrary},
		{"context without library", `, "context": {"ip": "1.2.3.4"}`, "", ImportLibrary},
		{"library without name", `, "context": {"library": {"version": "1"}}`, "", ImportLibrary},
		{"library not an object", `, "context": {"library": "x"}`, "", ImportLibrary},
		{"name not a string", `, "context": {"library": {"name": 3}}`, "", ImportLibrary},
		{"an SDK's", `, "context": {"library": {"name": "analytics.js"}}`, "analytics.js", "analytics.js"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := NewParser(DefaultLimits())
			ev, err := p.Parse([]byte(`{"type": "identify", "userId": "u", "traits": {"a": 1}`+c.context+`}`), 0, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if got := ev.Library(); got != c.before {
				t.Errorf("library before %q, want %q", got, c.before)
			}
			var a fastjson.Arena
			ev.StampLibrary(&a, ImportLibrary)
			// As the consumer reads the record.
			again, err := NewParser(DefaultLimits()).Parse(ev.AppendJSON(nil), 0, time.Now())
			if err != nil {
				t.Fatalf("stamped event %s: %v", ev.AppendJSON(nil), err)
			}
			if got := again.Library(); got != c.after {
				t.Errorf("library of the record %q, want %q: %s", got, c.after, ev.AppendJSON(nil))
			}
			if string(again.Traits.MarshalTo(nil)) != `{"a":1}` {
				t.Errorf("traits changed: %s", again.Traits)
			}
		})
	}
}
