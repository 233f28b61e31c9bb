package stream

import (
	"testing"
)

// TestMarkerReader feeds records read uncommitted, in offset order, and
// checks which marker counts as the last committed one.
func TestMarkerReader(t *testing.T) {
	key := []byte("events/1")
	marker := func(pid, next int64, txn bool) logRecord {
		return logRecord{key: key, value: progress{next: next}.encode(), producer: pid, txn: txn}
	}
	control := func(pid int64, commit bool) logRecord {
		k := []byte{0, 0, 0, 0}
		if commit {
			k[3] = 1
		}
		return logRecord{key: k, producer: pid, control: true, txn: true}
	}
	other := logRecord{key: []byte("events/7"), value: []byte("3"), producer: 9, txn: true}
	for _, tc := range []struct {
		name    string
		records []logRecord
		want    int64
	}{
		{"nothing", nil, -1},
		{"committed", []logRecord{marker(1, 5, true), control(1, true)}, 5},
		{"aborted", []logRecord{marker(1, 5, true), control(1, true), marker(1, 9, true), control(1, false)}, 5},
		{"never ended", []logRecord{marker(1, 5, true), control(1, true), marker(1, 9, true)}, 5},
		{"ended by another producer", []logRecord{marker(1, 5, true), control(2, true)}, -1},
		{"last of a transaction", []logRecord{marker(1, 5, true), marker(1, 6, true), control(1, true)}, 6},
		{"crashed, then redone", []logRecord{marker(1, 5, true), marker(1, 9, true), other, control(1, true)}, 9},
		{"other keys", []logRecord{marker(1, 5, true), other, control(9, true), control(1, true)}, 5},
		{"not transactional", []logRecord{marker(1, 5, false)}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newMarkerReader(key)
			for _, rec := range tc.records {
				r.add(rec)
			}
			if r.err != nil || r.committed.next != tc.want {
				t.Errorf("committed %+v, %v; want next %d", r.committed, r.err, tc.want)
			}
		})
	}
}
