package stream

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// crashCopy copies the data directory of a running embedded broker: what
// a kill -9 of the broker's process would leave on disk at that moment.
func crashCopy(t *testing.T, dir string) string {
	t.Helper()
	to := t.TempDir()
	if err := os.CopyFS(to, os.DirFS(dir)); err != nil {
		t.Fatalf("copy %s: %v", dir, err)
	}
	return to
}

func startEmbedded(t *testing.T, dir string) *Embedded {
	t.Helper()
	e, err := StartEmbedded(dir, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// readCommitted reads a partition with read_committed isolation, as
// consumers of tailor's outputs do, up to its end.
func readCommitted(t *testing.T, client ClientConfig, topic string, partition int32) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(append(client.Opts(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().AtStart()}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(topic, partition)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []*kgo.Record
	for done := end.Offset == 0; !done; {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s partition %d committed up to %d: %v (so far %d records)", topic, partition, end.Offset, ctx.Err(), len(got))
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() {
				got = append(got, r)
			}
			done = done || r.Offset+1 >= end.Offset
		})
	}
	return got
}

// committedMarkers returns the committed progress markers of o.
func committedMarkers(t *testing.T, o *output) []int64 {
	t.Helper()
	var got []int64
	for _, r := range readCommitted(t, o.client, o.progress, o.markerPartition) {
		if string(r.Key) == string(o.markerKey) {
			m, err := parseProgress(r.Value)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, m.next)
		}
	}
	return got
}

var crashTopics = NewTopics("crash.")

// openCrashed starts the embedded broker on dir with the crash tests'
// topics (3 partitions) and the output of partition 1.
func openCrashed(t *testing.T, dir string) (*Embedded, *output) {
	t.Helper()
	e := startEmbedded(t, dir)
	client := ClientConfig{Brokers: e.Addrs()}
	cl, err := kgo.NewClient(client.Opts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := EnsureTopics(context.Background(), cl, crashTopics, 3, 1); err != nil {
		t.Fatal(err)
	}
	o, err := newOutput(client, "g", crashTopics, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.close)
	return e, o
}

// segmentRecord is a segments topic record of the crash tests (key k).
func segmentRecord(v string) *kgo.Record {
	return &kgo.Record{Topic: crashTopics.Segments, Key: []byte("k"), Value: []byte(v)}
}

// lastMarkerOf fences o and reads its last marker, within 20 s.
func lastMarkerOf(t *testing.T, o *output) progress {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := fenceAll(ctx, []*output{o}); err != nil {
		t.Fatal(err)
	}
	ms, err := lastMarkers(ctx, []*output{o})
	if err != nil {
		t.Fatal(err)
	}
	return ms[0]
}

// TestEmbeddedCrashMidTransaction kills the embedded broker (a copy of its
// data directory taken while it runs) with a transaction open, twice: the
// restarted engine reads the last committed progress marker without
// waiting, and read_committed readers see every committed marker once and
// the open transaction's never, also after the second crash.
func TestEmbeddedCrashMidTransaction(t *testing.T) {
	ctx := context.Background()
	open := func(dir string) (*Embedded, *output) { return openCrashed(t, dir) }
	segment := segmentRecord
	// crashWithOpen writes marker next in a transaction left open, and
	// returns what the broker's disk holds then.
	crashWithOpen := func(e *Embedded, o *output, next int64) string {
		if err := o.cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := o.produce(ctx, o.cl, []*kgo.Record{segment("open"), {Topic: o.progress, Key: o.markerKey, Value: progress{next: next}.encode()}}); err != nil {
			t.Fatal(err)
		}
		return crashCopy(t, e.dir)
	}

	dir := t.TempDir()
	e, o := open(dir)
	if err := o.write(ctx, []*kgo.Record{segment("a")}, progress{next: 5}); err != nil {
		t.Fatal(err)
	}
	dir = crashWithOpen(e, o, 9)
	for i, want := range []struct {
		last      int64
		committed []int64
	}{
		{5, []int64{5, 12}},
		{12, []int64{5, 12, 20}},
	} {
		e, o = open(dir)
		if m := lastMarkerOf(t, o); m.next != want.last {
			t.Fatalf("crash %d: last marker %+v, want next %d", i+1, m, want.last)
		}
		next := want.committed[len(want.committed)-1]
		if err := o.write(ctx, []*kgo.Record{segment("b")}, progress{next: next}); err != nil {
			t.Fatal(err)
		}
		if got := committedMarkers(t, o); !slices.Equal(got, want.committed) {
			t.Fatalf("crash %d: committed markers %v, want %v", i+1, got, want.committed)
		}
		dir = crashWithOpen(e, o, next+1)
	}
}

// TestHalfCommitted: the records of a transaction a crash left open in a
// partition count as committed when a commit marker of the same
// transaction (producer and epoch) is in another partition.
func TestHalfCommitted(t *testing.T) {
	rec := func(id int64, epoch int16, v string) *kgo.Record {
		return &kgo.Record{ProducerID: id, ProducerEpoch: epoch, Value: []byte(v)}
	}
	tails := crashTails{
		open: map[producerEpoch][]*kgo.Record{
			{1, 5}: {rec(1, 5, "half")},
			{2, 3}: {rec(2, 3, "open")},
			{3, 7}: {rec(3, 7, "older epoch committed")},
		},
		committed: map[producerEpoch]bool{{1, 5}: true, {3, 6}: true, {4, 1}: true},
	}
	got := tails.halfCommitted()
	if len(got) != 1 || len(got[1]) != 1 || string(got[1][0].Value) != "half" {
		t.Errorf("half committed: %v, want producer 1's record", got)
	}
}

// TestEmbeddedCrashMidCommit: a kill while the embedded broker writes a
// transaction's commit markers, one partition after the other, leaves the
// transaction committed in some partitions and open in others. The disk of
// such a crash is put together from two copies, taken before the commit
// and after it: one partition's files from before, the rest from after.
// At the restart the transaction is committed everywhere: its segment
// record there once and its progress marker the last committed one,
// whichever partition missed its commit marker.
func TestEmbeddedCrashMidCommit(t *testing.T) {
	ctx := context.Background()
	for _, open := range []string{"segments", "progress"} {
		t.Run(open+" missed the commit", func(t *testing.T) {
			e, o := openCrashed(t, t.TempDir())
			if err := o.write(ctx, []*kgo.Record{segmentRecord("a")}, progress{next: 5}); err != nil {
				t.Fatal(err)
			}
			if err := o.cl.BeginTransaction(); err != nil {
				t.Fatal(err)
			}
			if err := o.produce(ctx, o.cl, []*kgo.Record{segmentRecord("b"), {Topic: o.progress, Key: o.markerKey, Value: progress{next: 9}.encode()}}); err != nil {
				t.Fatal(err)
			}
			before := crashCopy(t, e.dir)
			if err := o.cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
				t.Fatal(err)
			}
			after := crashCopy(t, e.dir)
			part := partitionDir(t, before, crashTopics.Segments, PartitionOf("k", 3))
			if open == "progress" {
				part = partitionDir(t, before, o.progress, o.markerPartition)
			}
			spliced := filepath.Join(after, strings.TrimPrefix(part, before))
			if err := os.RemoveAll(spliced); err != nil {
				t.Fatal(err)
			}
			if err := os.CopyFS(spliced, os.DirFS(part)); err != nil {
				t.Fatal(err)
			}

			_, o = openCrashed(t, after)
			if m := lastMarkerOf(t, o); m.next != 9 {
				t.Errorf("last marker %+v, want next 9", m)
			}
			var values []string
			for _, r := range readCommitted(t, o.client, crashTopics.Segments, PartitionOf("k", 3)) {
				values = append(values, string(r.Value))
			}
			if !slices.Equal(values, []string{"a", "b"}) {
				t.Errorf("committed segment records %q, want a and b once each", values)
			}
		})
	}
}

// partitionDir returns the directory of a partition's log in the embedded
// broker's data directory dir (kfake's layout: partitions/TOPIC-PARTITION).
func partitionDir(t *testing.T, dir, topic string, partition int32) string {
	t.Helper()
	p := filepath.Join(dir, "partitions", topic+"-"+strconv.Itoa(int(partition)))
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the embedded broker's log of %s partition %d is not where this test expects it: %v", topic, partition, err)
	}
	return p
}

// TestEmbeddedCrashBeforeIndexEntry: kfake writes a batch to its segment
// file, then the batch's entry to the index file beside it; a kill between
// the two leaves a batch without an entry. kfake, reloading, took that
// batch as written outside any transaction: the records of a transaction
// the crash left open counted as committed for read_committed readers
// (the engine, whose marker of them was not committed, writes them again:
// a segment record twice), and every entry written afterwards belonged to
// the batch after its own. The disk of such a crash is a copy taken with
// a transaction open, less the last entry of the segments partition's
// index. At the restart, and at the one after the next crash, only the
// committed records are there, each once.
func TestEmbeddedCrashBeforeIndexEntry(t *testing.T) {
	ctx := context.Background()
	e, o := openCrashed(t, t.TempDir())
	if err := o.write(ctx, []*kgo.Record{segmentRecord("a")}, progress{next: 5}); err != nil {
		t.Fatal(err)
	}
	if err := o.cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := o.produce(ctx, o.cl, []*kgo.Record{segmentRecord("open"), {Topic: o.progress, Key: o.markerKey, Value: progress{next: 9}.encode()}}); err != nil {
		t.Fatal(err)
	}
	dir := crashCopy(t, e.dir)
	// Indexes as kfake writes them are left alone: the rebuild writes the
	// entries kfake does (kfake's layout has not changed).
	if got, err := repairSegmentIndexes(crashCopy(t, e.dir)); err != nil || len(got) > 0 {
		t.Fatalf("rebuilt the indexes of a disk that lost no entry: %v %v", got, err)
	}
	segments := PartitionOf("k", 3)
	indexes, err := filepath.Glob(filepath.Join(partitionDir(t, dir, crashTopics.Segments, segments), "*.idx"))
	if err != nil || len(indexes) == 0 {
		t.Fatalf("index files of the segments partition: %v %v", indexes, err)
	}
	slices.Sort(indexes) // one segment in this test: its base offset is 0
	last := indexes[len(indexes)-1]
	info, err := os.Stat(last)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(last, info.Size()-kfakeIndexEntrySize); err != nil {
		t.Fatal(err)
	}

	committed := func(want ...string) {
		t.Helper()
		var values []string
		for _, r := range readCommitted(t, o.client, crashTopics.Segments, segments) {
			values = append(values, string(r.Value))
		}
		if !slices.Equal(values, want) {
			t.Errorf("committed segment records %q, want %q", values, want)
		}
	}
	e, o = openCrashed(t, dir)
	if m := lastMarkerOf(t, o); m.next != 5 {
		t.Errorf("last marker %+v, want next 5", m)
	}
	committed("a")
	if err := o.write(ctx, []*kgo.Record{segmentRecord("b")}, progress{next: 9}); err != nil {
		t.Fatal(err)
	}
	committed("a", "b")

	// The next crash, with nothing open: the entries after the lost one
	// must still be read with their own batches.
	_, o = openCrashed(t, crashCopy(t, e.dir))
	if m := lastMarkerOf(t, o); m.next != 9 {
		t.Errorf("after the next crash: last marker %+v, want next 9", m)
	}
	committed("a", "b")
}
