package stream

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/state"
)

// output writes what applying a partition's records produces (segment
// changes, dead letters, rerouted records) exactly once, though the store
// commits after Kafka does:
//
//  1. the batch's records and a progress marker (the offset after the
//     batch) are produced in one Kafka transaction, committed;
//  2. then the store commits the batch with the same offset.
//
// A crash between the two leaves the marker ahead of the store. On
// assignment the processor reads the marker and replays the records up to
// it without producing their outputs again, which Kafka already holds.
// Changes that time alone makes (state.Batch.Wake) are written the same
// way, their marker carrying the wake's instant besides the offset: a
// wake the store has not committed is redone without producing. A
// crash before step 1 completes aborts the transaction: readers with
// read_committed isolation never see those records. The transactional id
// is per group and partition, so an instance that lost the partition but
// still runs is fenced.
type output struct {
	partition int32 // input partition
	// mu guards cl, which renew replaces, and closed: a lost session
	// closes the output from another goroutine than the worker's.
	mu        sync.Mutex
	cl        *kgo.Client
	closed    bool
	opts      []kgo.Opt // cl's, for renew
	client    ClientConfig
	progress  string // progress topic
	markerKey []byte
	// markerPartition is the progress topic partition of markerKey.
	markerPartition int32
}

func newOutput(client ClientConfig, group string, t Topics, partition int32, progressPartitions int) (*output, error) {
	id := group + "/" + t.Events + "/" + strconv.Itoa(int(partition))
	opts := append(client.Opts(),
		kgo.TransactionalID(id),
		kgo.TransactionTimeout(10*time.Second), // one batch; bounds the wait for a dead owner's transaction
		kgo.ProducerLinger(0),
		// Under Kafka's transactions v2 (KIP-890, Apache Kafka 4), a
		// batch produced just after the previous transaction ended may
		// be answered CONCURRENT_TRANSACTIONS while that one's markers
		// are written (a few milliseconds); the client retries it after
		// a metadata refresh, which by default waits up to 5 s since the
		// last one, and a backoff of 250 ms growing to 5 s. A batch's
		// outputs are on the apply path: refresh within 100 ms, back
		// off from 10 ms (BENCHMARKS.md: transactions on Apache Kafka).
		kgo.MetadataMinAge(100*time.Millisecond),
		kgo.RetryBackoffFn(outputBackoff),
		kgo.RecordPartitioner(newOutputPartitioner(t.Changelog)),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("transactional producer %s: %w", id, err)
	}
	key := []byte(t.Events + "/" + strconv.Itoa(int(partition)))
	return &output{
		partition:       partition,
		cl:              cl,
		opts:            opts,
		client:          client,
		progress:        t.Progress,
		markerKey:       key,
		markerPartition: PartitionOf(string(key), progressPartitions),
	}, nil
}

// outputBackoff is the transactional producers' backoff before the
// tries-th retry: 10 ms doubling to 1 s, with up to a fifth of jitter.
func outputBackoff(tries int) time.Duration {
	d := min(10*time.Millisecond<<min(max(tries-1, 0), 7), time.Second)
	return d - time.Duration(rand.Int64N(int64(d/5)+1))
}

// progress is a progress marker: the offset after the records whose
// outputs are written, and the instant of the wake (Unix ms) or the
// backfill step that wrote them instead of records.
type progress struct {
	next, wake int64
	backfill   *state.BackfillStep
}

// noProgress is the marker of a partition that has produced nothing.
var noProgress = progress{next: -1}

// encode writes "next", "next wake" or "next b target kCursor" (the
// cursor in hex).
func (m progress) encode() []byte {
	b := strconv.AppendInt(nil, m.next, 10)
	switch {
	case m.wake != 0:
		b = strconv.AppendInt(append(b, ' '), m.wake, 10)
	case m.backfill != nil:
		b = strconv.AppendUint(append(b, " b "...), m.backfill.Target, 10)
		b = hex.AppendEncode(append(b, " k"...), []byte(m.backfill.Cursor))
	}
	return b
}

func parseProgress(b []byte) (progress, error) {
	fields := strings.Fields(string(b))
	var m progress
	var err error
	bad := func(err error) (progress, error) { return m, fmt.Errorf("progress marker %q: %w", b, err) }
	if len(fields) == 0 {
		return bad(errors.New("empty"))
	}
	if m.next, err = strconv.ParseInt(fields[0], 10, 64); err != nil {
		return bad(err)
	}
	switch {
	case len(fields) == 2:
		if m.wake, err = strconv.ParseInt(fields[1], 10, 64); err != nil {
			return bad(err)
		}
	case len(fields) == 4 && fields[1] == "b" && strings.HasPrefix(fields[3], "k"):
		step := &state.BackfillStep{}
		if step.Target, err = strconv.ParseUint(fields[2], 10, 64); err != nil {
			return bad(err)
		}
		cursor, err := hex.DecodeString(fields[3][1:])
		if err != nil {
			return bad(err)
		}
		step.Cursor, m.backfill = string(cursor), step
	case len(fields) != 1:
		return bad(errors.New("want an offset, then a wake instant or a backfill step"))
	}
	return m, nil
}

// write produces records and the progress marker in one transaction.
func (o *output) write(ctx context.Context, records []*kgo.Record, at progress) error {
	cl := o.producer()
	if err := cl.BeginTransaction(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	marker := &kgo.Record{Topic: o.progress, Key: o.markerKey, Value: at.encode()}
	err := o.produce(ctx, cl, append(records, marker))
	if err == nil {
		if err = cl.EndTransaction(ctx, kgo.TryCommit); err == nil {
			return nil
		}
		err = fmt.Errorf("commit transaction: %w", err)
	}
	if aerr := cl.AbortBufferedRecords(ctx); aerr == nil {
		_ = cl.EndTransaction(ctx, kgo.TryAbort)
	}
	return err
}

func (o *output) produce(ctx context.Context, cl *kgo.Client, records []*kgo.Record) error {
	results := cl.ProduceSync(ctx, records...)
	for _, r := range results {
		if r.Err != nil {
			return fmt.Errorf("produce to %s: %w", r.Record.Topic, r.Err)
		}
	}
	return nil
}

// fence initialises the transactional producer: it fences an earlier
// owner of the transactional id and makes the coordinator finish that
// owner's last transaction (commit markers written, or aborted).
func (o *output) fence(ctx context.Context) error {
	if _, _, err := o.producer().ProducerID(ctx); err != nil {
		return fmt.Errorf("initialise the transactional producer: %w", err)
	}
	return nil
}

// fenceAll fences the producers of outs (fence), all at once.
func fenceAll(ctx context.Context, outs []*output) error {
	return atOnce(outs, func(_ int, o *output) error { return o.fence(ctx) })
}

// lastMarkers returns the last committed progress marker of each of outs
// (lastMarker), read all at once.
func lastMarkers(ctx context.Context, outs []*output) ([]progress, error) {
	markers := make([]progress, len(outs))
	err := atOnce(outs, func(i int, o *output) (err error) {
		markers[i], err = o.lastMarker(ctx)
		return err
	})
	return markers, err
}

// atOnce calls fn for each of outs, each in a goroutine of its own, and
// returns their errors joined, each naming its partition.
func atOnce(outs []*output, fn func(i int, o *output) error) error {
	errs := make([]error, len(outs))
	var wg sync.WaitGroup
	for i, o := range outs {
		wg.Go(func() {
			if err := fn(i, o); err != nil {
				errs[i] = fmt.Errorf("partition %d: %w", o.partition, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// lastMarker returns the last committed progress marker of the partition,
// noProgress when there is none. The producers of every partition taken
// over must be fenced first (fenceAll): Kafka writes commit markers after
// EndTransaction returns, so the last marker may not be readable before
// the fence.
//
// It reads the marker's progress partition up to the end of the log as
// it is after the fence, uncommitted records too, and tells committed
// markers apart itself by the commit and abort markers of their
// producer: only this partition's producer writes its markers, and the
// fence ended its transactions. A read of committed records would wait
// for other producers' transactions still open there (another
// instance's), and would never reach the end behind records of a
// transaction a crash left without a commit or abort marker (an embedded
// broker restarted after a crash takes those as aborted, but only in
// memory; see endCrashedTransactions).
func (o *output) lastMarker(ctx context.Context) (progress, error) {
	start, end, err := o.markerBounds(ctx)
	if err != nil || end <= start {
		return noProgress, err
	}
	cl, err := kgo.NewClient(append(o.client.Opts(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{o.progress: {o.markerPartition: kgo.NewOffset().At(start)}}),
		kgo.FetchIsolationLevel(kgo.ReadUncommitted()),
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return noProgress, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r := newMarkerReader(o.markerKey)
	for {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return noProgress, fmt.Errorf("read progress markers of %s partition %d from %d up to %d: %w", o.progress, o.markerPartition, start, end, err)
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil && !errors.Is(ferr, context.DeadlineExceeded) {
			return noProgress, fmt.Errorf("read progress markers: %w", ferr)
		}
		done := false
		fetches.EachRecord(func(rec *kgo.Record) {
			r.add(logRecordOf(rec))
			done = done || rec.Offset+1 >= end
		})
		if r.err != nil {
			return noProgress, fmt.Errorf("%s partition %d: %w", o.progress, o.markerPartition, r.err)
		}
		if done {
			return r.committed, nil
		}
	}
}

// markerBounds returns the start and end offsets of the marker's
// progress partition.
func (o *output) markerBounds(ctx context.Context) (start, end int64, err error) {
	adm := kadm.NewClient(o.producer())
	ends, err := adm.ListEndOffsets(ctx, o.progress)
	if err != nil {
		return 0, 0, fmt.Errorf("list end offsets of %s: %w", o.progress, err)
	}
	starts, err := adm.ListStartOffsets(ctx, o.progress)
	if err != nil {
		return 0, 0, fmt.Errorf("list start offsets of %s: %w", o.progress, err)
	}
	e, ok1 := ends.Lookup(o.progress, o.markerPartition)
	s, ok2 := starts.Lookup(o.progress, o.markerPartition)
	if !ok1 || !ok2 || e.Err != nil || s.Err != nil {
		return 0, 0, fmt.Errorf("offsets of %s partition %d: %v %v", o.progress, o.markerPartition, e.Err, s.Err)
	}
	return s.Offset, e.Offset, nil
}

// markerReader finds the last committed marker of key in records read
// uncommitted, in offset order: a marker written in a transaction counts
// once its producer's commit marker follows; one its producer's abort
// marker follows, or none, does not.
type markerReader struct {
	key       []byte
	committed progress
	// pending holds, per producer id, its last marker in a transaction
	// not yet ended.
	pending map[int64]progress
	err     error
}

func newMarkerReader(key []byte) *markerReader {
	return &markerReader{key: key, committed: noProgress, pending: make(map[int64]progress)}
}

// logRecord is what markerReader needs of a record.
type logRecord struct {
	key, value       []byte
	offset, producer int64
	control, txn     bool
}

func logRecordOf(r *kgo.Record) logRecord {
	return logRecord{key: r.Key, value: r.Value, offset: r.Offset, producer: r.ProducerID, control: r.Attrs.IsControl(), txn: r.Attrs.IsTransactional()}
}

func (r *markerReader) add(rec logRecord) {
	if rec.control {
		if m, ok := r.pending[rec.producer]; ok && isCommitMarker(rec.key) {
			r.committed = m
		}
		delete(r.pending, rec.producer)
		return
	}
	if string(rec.key) != string(r.key) {
		return
	}
	m, err := parseProgress(rec.value)
	if err != nil {
		r.err = err
		return
	}
	if rec.txn {
		r.pending[rec.producer] = m
	} else {
		r.committed = m
	}
}

// isCommitMarker reports whether the key of a control record is a
// transaction's commit marker's: a version (int16), then the type, 0 for
// abort and 1 for commit.
func isCommitMarker(key []byte) bool {
	return len(key) >= 4 && binary.BigEndian.Uint16(key[2:4]) == 1
}

// producer returns the output's producer client.
func (o *output) producer() *kgo.Client {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.cl
}

// close closes the output's producer; a write under way fails.
func (o *output) close() {
	o.mu.Lock()
	o.closed = true
	cl := o.cl
	o.mu.Unlock()
	cl.Close()
}

// errOutputClosed is renew's error once the output is closed.
var errOutputClosed = errors.New("output closed")

// renew replaces the output's producer with a new one, after a write
// failed: its transaction's fate is settled when the new one is fenced
// in (fence). It fails once the output is closed.
func (o *output) renew() error {
	cl, err := kgo.NewClient(o.opts...)
	if err != nil {
		return fmt.Errorf("transactional producer of partition %d: %w", o.partition, err)
	}
	o.mu.Lock()
	old, closed := o.cl, o.closed
	if !closed {
		o.cl = cl
	}
	o.mu.Unlock()
	if closed {
		cl.Close()
		return errOutputClosed
	}
	old.Close()
	return nil
}
