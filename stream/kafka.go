package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Topics names the topics of one tailor deployment.
type Topics struct {
	Events     string // input events, keyed by profile key
	Changelog  string // compacted per-profile state, for restore and standbys
	Segments   string // segment entered/exited records
	DeadLetter string // invalid input records with the reason
	Progress   string // compacted: per input partition, how far outputs were produced
	Stats      string // compacted: per input partition, its statistics, for every instance
	Audit      string // compacted: admin actions, keyed by action id (package audit)
	// DeliverDeadLetter holds the segment changes destinations gave up
	// on (package deliver), the destination in a header.
	DeliverDeadLetter string
}

// NewTopics returns the topic names under prefix ("tailor." gives
// "tailor.events" and so on).
func NewTopics(prefix string) Topics {
	return Topics{
		Events:     prefix + "events",
		Changelog:  prefix + "changelog",
		Segments:   prefix + "segments",
		DeadLetter: prefix + "deadletter",
		Progress:   prefix + "progress",
		Stats:      prefix + "stats",
		Audit:      prefix + "audit",

		DeliverDeadLetter: prefix + "deliver-deadletter",
	}
}

// TopicOption sets how EnsureTopics creates a topic.
type TopicOption func(*topicSettings)

type topicSettings struct {
	eventsRetention *string // retention.ms of the events topic; nil: the broker's default
}

// EventsRetention makes a new events topic keep its records for d (0:
// for ever). Without it the broker's default applies (a week on Apache
// Kafka). A topic that exists already is not changed.
func EventsRetention(d time.Duration) TopicOption {
	return func(s *topicSettings) {
		ms := "-1"
		if d > 0 {
			ms = strconv.FormatInt(d.Milliseconds(), 10)
		}
		s.eventsRetention = &ms
	}
}

// EnsureTopics creates the topics that do not exist yet, with partitions
// partitions each (the changelog, progress, stats and audit topics
// compacted), and returns the partition count
// of the events topic, which is what keys are routed by. An events topic
// that already exists keeps its count: changing it is a migration.
func EnsureTopics(ctx context.Context, cl *kgo.Client, t Topics, partitions int32, replication int16, opts ...TopicOption) (int32, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var settings topicSettings
	for _, o := range opts {
		o(&settings)
	}
	var events map[string]*string
	if settings.eventsRetention != nil {
		events = map[string]*string{"retention.ms": settings.eventsRetention}
	}
	adm := kadm.NewClient(cl)
	compact := "compact"
	create := []struct {
		name    string
		configs map[string]*string
	}{
		{t.Events, events},
		{t.Changelog, map[string]*string{"cleanup.policy": &compact}},
		{t.Segments, nil},
		{t.DeadLetter, nil},
		{t.Progress, map[string]*string{"cleanup.policy": &compact}},
		{t.Stats, map[string]*string{"cleanup.policy": &compact}},
		{t.Audit, map[string]*string{"cleanup.policy": &compact}},
		{t.DeliverDeadLetter, nil},
	}
	for _, c := range create {
		resp, err := adm.CreateTopic(ctx, partitions, replication, c.configs, c.name)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return 0, fmt.Errorf("create topic %s (%d partitions, replication %d): %w", c.name, partitions, replication, err)
		}
	}
	// A new topic takes a moment to appear in every broker's metadata with
	// all its partitions led; a consumer group formed before then would
	// first get only some of the partitions. Wait for it.
	names := make([]string, len(create))
	for i, c := range create {
		names[i] = c.name
	}
	for {
		details, err := adm.ListTopics(ctx, names...)
		if err == nil {
			err = details.Error()
		}
		if err == nil {
			complete := true
			for _, name := range names {
				d := details[name]
				if len(d.Partitions) == 0 {
					complete = false
				}
				for _, p := range d.Partitions {
					if p.Err != nil || p.Leader < 0 {
						complete = false
					}
				}
			}
			if complete {
				return int32(len(details[t.Events].Partitions)), nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("topics %v not ready: %w (last error: %v)", names, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// PartitionOf returns the partition of key among n partitions: Kafka's
// default partitioning (murmur2 of the key, sign bit cleared, modulo n), the
// same function franz-go's and the Java client's producers use, so the HTTP
// side finds the partition that holds a key's profile.
func PartitionOf(key string, n int) int32 {
	if n <= 0 {
		return 0
	}
	return int32(int(murmur2(key)&0x7fffffff) % n)
}

// murmur2 is Kafka's murmur2 hash (org.apache.kafka.common.utils.Utils).
func murmur2(b string) uint32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	h := seed ^ uint32(len(b))
	for len(b) >= 4 {
		k := uint32(b[3])<<24 | uint32(b[2])<<16 | uint32(b[1])<<8 | uint32(b[0])
		b = b[4:]
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	switch len(b) {
	case 3:
		h ^= uint32(b[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(b[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(b[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}

// Embedded is an in-process Kafka-protocol broker (franz-go's kfake) that
// persists its log under a data directory, for running tailor with no
// Kafka cluster of one's own.
type Embedded struct {
	cluster *kfake.Cluster
	dir     string
}

// StartEmbedded starts the embedded broker on 127.0.0.1:port (0 picks a free
// port), persisting under dir. After a crash of the broker it first
// rebuilds the index entries a kill cut off or left out of step
// (repairSegmentIndexes), then ends the transactions the crash left open
// (endCrashedTransactions).
func StartEmbedded(dir string, port int, logger *slog.Logger) (*Embedded, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("embedded broker data dir: %w", err)
	}
	crashed, err := markRunning(dir)
	if err != nil {
		return nil, err
	}
	if crashed {
		// Before kfake reads them: a kill between a batch's write and
		// its index entry's misleads the reload (repairSegmentIndexes).
		repaired, err := repairSegmentIndexes(dir)
		if err != nil {
			return nil, fmt.Errorf("embedded broker (data in %s) after a crash: %w", dir, err)
		}
		if len(repaired) > 0 {
			logger.Warn("a crash of the embedded broker came between a batch's write and its index entry's: the index is rebuilt from the log",
				"segments", repaired)
		}
	}
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.DataDir(filepath.Clean(dir)),
		kfake.WithLogger(kfakeLogger{logger}),
	)
	if err != nil {
		return nil, fmt.Errorf("start embedded broker on 127.0.0.1:%d (data in %s): %w", port, dir, err)
	}
	e := &Embedded{cluster: c, dir: dir}
	if crashed {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := endCrashedTransactions(ctx, e.Addrs(), logger); err != nil {
			c.Close()
			return nil, fmt.Errorf("embedded broker (data in %s) after a crash: %w", dir, err)
		}
	}
	return e, nil
}

// Addrs returns the broker's listen addresses.
func (e *Embedded) Addrs() []string { return e.cluster.ListenAddrs() }

// Close stops the broker, flushing its data.
func (e *Embedded) Close() {
	e.cluster.Close()
	os.Remove(filepath.Join(e.dir, runningFile))
}

type kfakeLogger struct{ l *slog.Logger }

func (k kfakeLogger) Logf(level kfake.LogLevel, msg string, args ...any) {
	if k.l == nil {
		return
	}
	var l slog.Level
	switch level {
	case kfake.LogLevelError:
		l = slog.LevelError
	case kfake.LogLevelWarn:
		l = slog.LevelWarn
	default:
		return
	}
	k.l.Log(context.Background(), l, fmt.Sprintf(msg, args...), "component", "embedded-broker")
}
