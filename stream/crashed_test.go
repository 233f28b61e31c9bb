package stream

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

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

// committedMarkers reads the progress partition of o with read_committed
// isolation, as the topic's consumers do, and returns the markers of o.
func committedMarkers(t *testing.T, o *output) []int64 {
	t.Helper()
	_, end, err := o.markerBounds(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(o.client.Opts(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{o.progress: {o.markerPartition: kgo.NewOffset().AtStart()}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []int64
	for done := false; !done; {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read committed markers up to %d: %v (so far %v)", end, ctx.Err(), got)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() && string(r.Key) == string(o.markerKey) {
				m, err := parseProgress(r.Value)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, m.next)
			}
			done = done || r.Offset+1 >= end
		})
	}
	return got
}

// TestEmbeddedCrashMidTransaction kills the embedded broker (a copy of its
// data directory taken while it runs) with a transaction open, twice: the
// restarted engine reads the last committed progress marker without
// waiting, and read_committed readers see every committed marker once and
// the open transaction's never, also after the second crash.
func TestEmbeddedCrashMidTransaction(t *testing.T) {
	ctx := context.Background()
	topics := NewTopics("crash.")
	open := func(dir string) (*Embedded, *output) {
		e := startEmbedded(t, dir)
		client := ClientConfig{Brokers: e.Addrs()}
		cl, err := kgo.NewClient(client.Opts()...)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if _, err := EnsureTopics(ctx, cl, topics, 3, 1); err != nil {
			t.Fatal(err)
		}
		o, err := newOutput(client, "g", topics, 1, 3)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(o.close)
		return e, o
	}
	segment := func(v string) *kgo.Record {
		return &kgo.Record{Topic: topics.Segments, Key: []byte("k"), Value: []byte(v)}
	}
	// crashWithOpen writes marker next in a transaction left open, and
	// returns what the broker's disk holds then.
	crashWithOpen := func(e *Embedded, o *output, next int64) string {
		if err := o.cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := o.produce(ctx, []*kgo.Record{segment("open"), {Topic: o.progress, Key: o.markerKey, Value: progress{next: next}.encode()}}); err != nil {
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
		lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := fenceAll(lctx, []*output{o})
		var m progress
		if err == nil {
			var ms []progress
			ms, err = lastMarkers(lctx, []*output{o})
			m = ms[0]
		}
		cancel()
		if err != nil || m.next != want.last {
			t.Fatalf("crash %d: last marker %+v, %v; want next %d", i+1, m, err, want.last)
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
