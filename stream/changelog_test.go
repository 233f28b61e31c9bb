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
	r := newChangelogReader(func(w state.Write) error {
		got = append(got, string(w.Key))
		return nil
	})
	offset := int64(100)
	txn := func(producer int64, key string) logRecord {
		offset++
		return logRecord{key: []byte(key), value: []byte("s"), offset: offset, producer: producer, txn: true}
	}
	control := func(producer int64, commit bool) logRecord {
		key := binary.BigEndian.AppendUint16(nil, 0)
		if commit {
			key = binary.BigEndian.AppendUint16(key, 1)
		} else {
			key = binary.BigEndian.AppendUint16(key, 0)
		}
		offset++
		return logRecord{key: key, offset: offset, producer: producer, control: true, txn: true}
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
	// Pending: producer 2's "x" at 102 and producer 1's "d" at 109: a
	// read from 102 on misses neither.
	if got := r.safe(offset + 1); got != 102 {
		t.Errorf("safe offset %d, want 102 (producer 2's pending write)", got)
	}
	if err := r.add(control(2, false)); err != nil {
		t.Fatal(err)
	}
	if got := r.safe(offset + 1); got != 109 {
		t.Errorf("safe offset %d after producer 2 aborted, want 109 (producer 1's pending write)", got)
	}
}

func toBytes(s []string) [][]byte {
	out := make([][]byte, len(s))
	for i, x := range s {
		out[i] = []byte(x)
	}
	return out
}
