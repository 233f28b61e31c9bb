package stream

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// producerEpoch names a transaction of a producer: kfake writes a
// transaction's records and its commit or abort markers with the epoch it
// began with (a KIP-890 client's next transaction has the next epoch).
type producerEpoch struct {
	id    int64
	epoch int16
}

// crashTails is what the ends of the partitions' logs say about the
// transactions a crash interrupted.
type crashTails struct {
	// open holds each transaction's records that no commit or abort
	// marker of its producer follows, in log order per partition.
	open map[producerEpoch][]*kgo.Record
	// committed holds the transactions with a commit marker somewhere.
	committed map[producerEpoch]bool
}

// halfCommitted returns, per producer id, the records of transactions
// that have a commit marker in some partition and none in others: the
// crash came while kfake wrote the commit markers one partition after the
// other (it keeps no log of a commit under way to finish it after a
// restart, as Kafka's transaction coordinator does). They belong to a
// committed transaction.
func (t crashTails) halfCommitted() map[int64][]*kgo.Record {
	out := make(map[int64][]*kgo.Record)
	for pe, records := range t.open {
		if t.committed[pe] {
			out[pe.id] = append(out[pe.id], records...)
		}
	}
	return out
}

// readCrashTails reads the last records of every partition of topics, read
// uncommitted, from window before the latest record of them all: a
// transaction open at a crash began within its timeout before it.
func readCrashTails(ctx context.Context, cl *kgo.Client, addrs []string, topics []string, window time.Duration) (crashTails, error) {
	tails := crashTails{open: make(map[producerEpoch][]*kgo.Record), committed: make(map[producerEpoch]bool)}
	adm := kadm.NewClient(cl)
	latest, err := adm.ListMaxTimestampOffsets(ctx, topics...)
	if err != nil {
		return tails, fmt.Errorf("latest records: %w", err)
	}
	var newest int64
	latest.Each(func(o kadm.ListedOffset) { newest = max(newest, o.Timestamp) })
	if newest <= 0 {
		return tails, nil
	}
	starts, err := adm.ListOffsetsAfterMilli(ctx, newest-window.Milliseconds(), topics...)
	if err != nil {
		return tails, fmt.Errorf("offsets after %d: %w", newest-window.Milliseconds(), err)
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return tails, fmt.Errorf("end offsets: %w", err)
	}
	from := make(map[string]map[int32]kgo.Offset)
	type tp struct {
		topic     string
		partition int32
	}
	left := make(map[tp]int64)
	ends.Each(func(e kadm.ListedOffset) {
		s, ok := starts.Lookup(e.Topic, e.Partition)
		if !ok || s.Err != nil || e.Err != nil || s.Offset >= e.Offset || s.Offset < 0 {
			return
		}
		if from[e.Topic] == nil {
			from[e.Topic] = make(map[int32]kgo.Offset)
		}
		from[e.Topic][e.Partition] = kgo.NewOffset().At(s.Offset)
		left[tp{e.Topic, e.Partition}] = e.Offset
	})
	if len(left) == 0 {
		return tails, nil
	}
	rd, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumePartitions(from),
		kgo.FetchIsolationLevel(kgo.ReadUncommitted()), kgo.KeepControlRecords())
	if err != nil {
		return tails, err
	}
	defer rd.Close()
	// Per partition, the records of each producer since its last marker.
	pending := make(map[tp]map[int64][]*kgo.Record)
	for len(left) > 0 {
		fetches := rd.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return tails, fmt.Errorf("read the last records of %d partitions: %w", len(left), err)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			at := tp{r.Topic, r.Partition}
			if pending[at] == nil {
				pending[at] = make(map[int64][]*kgo.Record)
			}
			switch {
			case r.Attrs.IsControl():
				if isCommitMarker(r.Key) {
					tails.committed[producerEpoch{r.ProducerID, r.ProducerEpoch}] = true
				}
				delete(pending[at], r.ProducerID)
			case r.Attrs.IsTransactional():
				pending[at][r.ProducerID] = append(pending[at][r.ProducerID], r)
			}
			if end, ok := left[at]; ok && r.Offset+1 >= end {
				delete(left, at)
			}
		})
	}
	for _, byProducer := range pending {
		for _, records := range byProducer {
			for _, r := range records {
				pe := producerEpoch{r.ProducerID, r.ProducerEpoch}
				tails.open[pe] = append(tails.open[pe], r)
			}
		}
	}
	return tails, nil
}

// recommit writes records again, to the partitions they were in, in a
// committed transaction of transactional id id.
func recommit(ctx context.Context, addrs []string, id string, records []*kgo.Record) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.TransactionalID(id),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.BeginTransaction(); err != nil {
		return err
	}
	copies := make([]*kgo.Record, len(records))
	for i, r := range records {
		copies[i] = &kgo.Record{Topic: r.Topic, Partition: r.Partition, Key: r.Key, Value: r.Value, Headers: r.Headers, Timestamp: r.Timestamp}
	}
	for _, res := range cl.ProduceSync(ctx, copies...) {
		if res.Err != nil {
			_ = cl.EndTransaction(ctx, kgo.TryAbort)
			return fmt.Errorf("write %s partition %d again: %w", res.Record.Topic, res.Record.Partition, res.Err)
		}
	}
	return cl.EndTransaction(ctx, kgo.TryCommit)
}
