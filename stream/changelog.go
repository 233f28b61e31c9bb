package stream

import (
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/state"
)

// The changelog (decision 0021) holds every write a partition's store
// committed: a record per key a batch wrote, keyed by the store's key,
// valued with changelogValue, on the changelog partition of the same
// number as the events partition. The records are produced in the
// batch's Kafka transaction with its outputs and progress marker, so the
// committed changelog is exactly the committed batches; compaction keeps
// the last write of each key, and a deletion's tombstone.

// changelogSet is the first byte of the value of a write that sets a key:
// a store may write a key without a value (a schedule entry), which a
// Kafka record cannot tell from a tombstone.
const changelogSet = 's'

// changelogRecords returns the changelog records of writes, for the
// changelog partition of the events partition.
func changelogRecords(topic string, partition int32, writes []state.Write) []*kgo.Record {
	records := make([]*kgo.Record, len(writes))
	for i, w := range writes {
		r := &kgo.Record{Topic: topic, Partition: partition, Key: w.Key}
		if !w.Deleted {
			r.Value = append(append(make([]byte, 0, len(w.Value)+1), changelogSet), w.Value...)
		}
		records[i] = r
	}
	return records
}

// changelogWrite is the store write a changelog record holds.
func changelogWrite(key, value []byte) state.Write {
	if len(value) == 0 || value[0] != changelogSet {
		return state.Write{Key: key, Deleted: true}
	}
	return state.Write{Key: key, Value: value[1:]}
}

// outputPartitioner sends changelog records to the partition they name,
// and every other record where Kafka's default partitioner would (by the
// hash of its key).
type outputPartitioner struct {
	changelog string
	manual    kgo.Partitioner
	byKey     kgo.Partitioner
}

func newOutputPartitioner(changelog string) *outputPartitioner {
	return &outputPartitioner{changelog: changelog, manual: kgo.ManualPartitioner(), byKey: kgo.StickyKeyPartitioner(nil)}
}

func (p *outputPartitioner) ForTopic(topic string) kgo.TopicPartitioner {
	if topic == p.changelog {
		return p.manual.ForTopic(topic)
	}
	return p.byKey.ForTopic(topic)
}

// changelog returns the changelog records of batch, committing: none
// when the processor keeps no changelog. The batch records the changelog
// offset that the batches committed before it reached.
func (p *Processor) changelog(part *partition, batch *state.Batch) []*kgo.Record {
	if !p.cfg.Store.Changelog {
		return nil
	}
	if next := part.changelogNext.Load(); next >= 0 {
		batch.SetChangelogOffset(next)
	}
	records := changelogRecords(p.cfg.Topics.Changelog, part.id, batch.Writes())
	p.m.changelogRecords.Add(float64(len(records)))
	for _, r := range records {
		p.m.changelogBytes.Add(float64(len(r.Key) + len(r.Value)))
	}
	return records
}

// changelogWritten notes the offsets of a batch's changelog records once
// their transaction has committed: the next batch records that the store
// reflects the changelog up to them.
func changelogWritten(part *partition, records []*kgo.Record) {
	if len(records) > 0 {
		part.changelogNext.Store(records[len(records)-1].Offset + 1)
	}
}

// changelogOffset returns the changelog offset store reflects, -1 when
// it records none.
func changelogOffset(store *state.Store) int64 {
	next, ok, err := store.ChangelogOffset()
	if err != nil || !ok {
		return -1
	}
	return next
}
