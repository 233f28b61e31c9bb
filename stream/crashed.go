package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// runningFile marks an embedded broker's data directory while the broker
// runs: found at start, it says the last run ended without Close (a
// crash, a kill -9).
const runningFile = "tailor-broker-running"

// markRunning creates dir's running mark and reports whether it was
// already there.
func markRunning(dir string) (crashed bool, err error) {
	path := filepath.Join(dir, runningFile)
	_, err = os.Stat(path)
	crashed = err == nil
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		return crashed, fmt.Errorf("mark %s as in use: %w", dir, err)
	}
	return crashed, nil
}

// endCrashedTransactions ends, with abort markers, the transactions a
// crash of the embedded broker left open.
//
// kfake, reloading its log after a crash, takes a transaction that has
// records but no commit or abort marker as aborted, but only in memory:
// it writes no marker, and forgets the transaction (a new InitProducerID
// aborts nothing). Without a marker, read_committed readers drop the
// producer's next committed records in that partition as well (they take
// the aborted range to run until the producer's next marker), and the
// next reload after another crash takes the records as committed (the
// producer's next commit marker closes them). An abort, by each
// transactional id, of a transaction over every partition writes the
// missing marker behind the records it closes, before any client can
// produce again.
//
// A crash can also come while kfake writes a transaction's commit
// markers, one partition after the other: the transaction is then
// committed in some partitions and open in others, where kfake takes it
// as aborted. Kafka's coordinator, which logs the commit before writing
// the markers, finishes it after a restart. Here the records a commit
// marker of their transaction follows nowhere in their partition, though
// one does in another, are written again in a committed transaction of
// their transactional id (readCrashTails, recommit): the transaction's
// outputs are then all there, once.
func endCrashedTransactions(ctx context.Context, addrs []string, logger *slog.Logger) error {
	// The coordinator requests as clients before KIP-890 send them:
	// partitions added explicitly, no epoch bump at the end.
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.MaxVersions(kversion.V3_5_0()))
	if err != nil {
		return fmt.Errorf("client of the embedded broker at %v: %w", addrs, err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	txns, err := adm.ListTransactions(ctx, nil, nil)
	if err != nil {
		return fmt.Errorf("list transactions: %w", err)
	}
	if len(txns) == 0 {
		return nil
	}
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	var every []kmsg.AddPartitionsToTxnRequestTopic
	for _, name := range topics.Names() {
		t := kmsg.NewAddPartitionsToTxnRequestTopic()
		t.Topic = name
		t.Partitions = topics[name].Partitions.Numbers()
		every = append(every, t)
	}
	window := time.Minute
	if described, err := adm.DescribeTransactions(ctx, txns.TransactionalIDs()...); err == nil {
		for _, d := range described {
			window = max(window, 2*time.Duration(d.TimeoutMillis)*time.Millisecond)
		}
	}
	tails, err := readCrashTails(ctx, cl, addrs, topics.Names(), window)
	if err != nil {
		return err
	}
	half := tails.halfCommitted()
	for id, records := range half {
		logger.Warn("a crash of the embedded broker came while it wrote a transaction's commit markers: the records it had not marked yet are written again, committed",
			"producer_id", id, "records", len(records))
	}
	ids := txns.TransactionalIDs()
	slices.Sort(ids)
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			if err := abortEverywhere(ctx, cl, id, every); err != nil {
				errs[i] = fmt.Errorf("end the transaction of %s left open by a crash: %w", id, err)
				return
			}
			if records := half[txns[id].ProducerID]; len(records) > 0 {
				if err := recommit(ctx, addrs, id, records); err != nil {
					errs[i] = fmt.Errorf("commit again %d records of a transaction of %s committed in part when the broker crashed: %w", len(records), id, err)
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// abortEverywhere fences transactional id and aborts a transaction of it
// over the partitions of topics.
func abortEverywhere(ctx context.Context, cl *kgo.Client, id string, topics []kmsg.AddPartitionsToTxnRequestTopic) error {
	init := kmsg.NewPtrInitProducerIDRequest()
	init.TransactionalID = &id
	init.TransactionTimeoutMillis = 60_000
	init.ProducerID, init.ProducerEpoch = -1, -1
	initResp, err := init.RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(initResp.ErrorCode)
	}
	if err != nil {
		return fmt.Errorf("init producer id: %w", err)
	}
	add := kmsg.NewPtrAddPartitionsToTxnRequest()
	add.TransactionalID = id
	add.ProducerID, add.ProducerEpoch = initResp.ProducerID, initResp.ProducerEpoch
	add.Topics = topics
	addResp, err := add.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("add partitions: %w", err)
	}
	var errs []error
	for _, t := range addResp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				errs = append(errs, fmt.Errorf("add %s partition %d: %w", t.Topic, p.Partition, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	end := kmsg.NewPtrEndTxnRequest()
	end.TransactionalID = id
	end.ProducerID, end.ProducerEpoch = initResp.ProducerID, initResp.ProducerEpoch
	end.Commit = false
	endResp, err := end.RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(endResp.ErrorCode)
	}
	if err != nil {
		return fmt.Errorf("abort: %w", err)
	}
	return nil
}
