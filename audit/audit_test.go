package audit

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestRecordRoundTrip(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 8, time.FixedZone("CET", 3600))
	e := Entry{ID: NewID(), Action: ConfigReloaded, At: at, By: "ops", Detail: map[string]any{"source": "tailor.yaml", "segments": []any{"adult"}}}
	r, err := e.Record("tailor.audit")
	if err != nil {
		t.Fatal(err)
	}
	if r.Topic != "tailor.audit" || string(r.Key) != e.ID || len(e.ID) != 32 {
		t.Errorf("record topic %q key %q, want tailor.audit and the id %q (32 hex digits)", r.Topic, r.Key, e.ID)
	}
	if want := `"at":"2026-03-04T04:06:07.000000008Z"`; !strings.Contains(string(r.Value), want) {
		t.Errorf("value %s: want the time in UTC, %s", r.Value, want)
	}
	got, err := Decode(r.Value)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != e.ID || got.Action != e.Action || !got.At.Equal(at) || got.By != "ops" || got.Detail["source"] != "tailor.yaml" {
		t.Errorf("decoded %+v, want %+v", got, e)
	}
	if NewID() == e.ID {
		t.Error("two ids alike")
	}
}

func TestRecordErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    Entry
		want string
	}{
		{"no id", Entry{Action: ConfigReloaded}, "must be set"},
		{"no action", Entry{ID: "x"}, "must be set"},
		{"NaN in detail", Entry{ID: "x", Action: ConfigReloaded, Detail: map[string]any{"v": math.NaN()}}, "encode audit entry x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.e.Record("t"); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one with %q", err, tc.want)
			}
		})
	}
	for _, bad := range []string{`{`, `{"id":"x"}`, `{"action":"a"}`} {
		if _, err := Decode([]byte(bad)); err == nil {
			t.Errorf("Decode(%s): no error", bad)
		}
	}
}
