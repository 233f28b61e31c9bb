package stream

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/state"
)

// TestChangeRecord: a segment change record's value is the JSON of
// SegmentChange, written by hand: valid, and read back as written.
func TestChangeRecord(t *testing.T) {
	at := time.Date(2026, 11, 22, 21, 0, 0, 123456789, time.FixedZone("CET", 3600))
	p := &Processor{}
	for _, tc := range []struct {
		change state.KeyedChange
		want   SegmentChange
	}{
		{
			state.KeyedChange{Key: "u1", MessageID: "m-1", Change: state.Change{Segment: "vip", Entered: true, At: at}},
			SegmentChange{Key: "u1", Segment: "vip", Change: "entered", Time: at.UTC(), MessageID: "m-1"},
		},
		{ // time alone: no messageId
			state.KeyedChange{Key: `odd "key" \ é`, Change: state.Change{Segment: "cart_abandoner", At: at}},
			SegmentChange{Key: `odd "key" \ é`, Segment: "cart_abandoner", Change: "exited", Time: at.UTC()},
		},
		{ // retention: the reason
			state.KeyedChange{Key: "u1", Reason: state.ReasonRetention, Change: state.Change{Segment: "vip", At: at}},
			SegmentChange{Key: "u1", Segment: "vip", Change: "exited", Time: at.UTC(), Reason: "retention"},
		},
	} {
		r := p.changeRecord("events/0/1", tc.change)
		var got SegmentChange
		if err := json.Unmarshal(r.Value, &got); err != nil {
			t.Fatalf("record %s: %v", r.Value, err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("record %s reads as %+v, want %+v", r.Value, got, tc.want)
		}
		if want, _ := json.Marshal(tc.want); tc.change.Key == "u1" && string(r.Value) != string(want) {
			t.Errorf("record %s, encoding/json writes %s", r.Value, want)
		}
		if string(r.Key) != tc.change.Key {
			t.Errorf("record key %q, want %q", r.Key, tc.change.Key)
		}
	}
}
