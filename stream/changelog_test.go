package stream

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/tailorcdp/tailor/state"
)

// TestChangelogRoundTrip: a write with a value, one without (a schedule
// entry) and a deletion read back as written; only the deletion is a
// tombstone.
func TestChangelogRoundTrip(t *testing.T) {
	writes := []state.Write{{Key: []byte("pa"), Value: []byte("v")}, {Key: []byte("wb")}, {Key: []byte("pc"), Deleted: true}}
	for i, r := range changelogRecords("cl", 3, writes) {
		if r.Partition != 3 || r.Topic != "cl" {
			t.Errorf("record %d to %s/%d", i, r.Topic, r.Partition)
		}
		if (r.Value == nil) != writes[i].Deleted {
			t.Errorf("record %d: tombstone %v, deletion %v", i, r.Value == nil, writes[i].Deleted)
		}
		got := changelogWrite(r.Key, r.Value)
		if !bytes.Equal(got.Key, writes[i].Key) || !bytes.Equal(got.Value, writes[i].Value) || got.Deleted != writes[i].Deleted {
			t.Errorf("record %d reads back as %+v, want %+v", i, got, writes[i])
		}
	}
}

// TestChangelogReader: a producer's writes count once its commit marker
// follows them; aborted ones, and ones no marker follows, do not.
func TestChangelogReader(t *testing.T) {
	var got []string
	r := &changelogReader{pending: make(map[int64][]state.Write), put: func(w state.Write) error {
		got = append(got, string(w.Key))
		return nil
	}}
	txn := func(producer int64, key string) logRecord {
		return logRecord{key: []byte(key), value: []byte("s"), producer: producer, txn: true}
	}
	control := func(producer int64, commit bool) logRecord {
		key := binary.BigEndian.AppendUint16(nil, 0)
		if commit {
			key = binary.BigEndian.AppendUint16(key, 1)
		} else {
			key = binary.BigEndian.AppendUint16(key, 0)
		}
		return logRecord{key: key, producer: producer, control: true, txn: true}
	}
	for _, rec := range []logRecord{
		txn(1, "a"), txn(2, "x"), txn(1, "b"), control(1, true),
		txn(1, "c"), control(1, false),
		txn(1, "m/changelog-base"), control(1, true),
		txn(1, "d"), // no marker follows
	} {
		if err := r.add(rec); err != nil {
			t.Fatal(err)
		}
	}
	if want := "a b m/changelog-base"; string(bytes.Join(toBytes(got), []byte(" "))) != want {
		t.Errorf("put %q, want %q", got, want)
	}
	if !r.base {
		t.Error("the changelog base was not seen")
	}
}

func toBytes(s []string) [][]byte {
	out := make([][]byte, len(s))
	for i, x := range s {
		out[i] = []byte(x)
	}
	return out
}
