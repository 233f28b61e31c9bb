package deliver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Dead-letter record headers.
const (
	HeaderDestination = "tailor.destination"
	HeaderReason      = "tailor.reason"
	HeaderAttempts    = "tailor.attempts"
	HeaderSource      = "tailor.source"
)

// deadLetter writes changes given up for x to the dead-letter topic, one
// record each (its value the change as it would have been delivered),
// trying again until written or ctx ends.
func (c *consumer) deadLetter(ctx context.Context, changes []Change, out outcome) error {
	d, x := c.d, c.x
	name := x.cfg.Load().Name
	records := make([]*kgo.Record, 0, len(changes))
	for _, ch := range changes {
		v, err := json.Marshal(ch)
		if err != nil {
			return fmt.Errorf("encode dead letter %s for %s: %w", ch.ID, name, err)
		}
		records = append(records, &kgo.Record{Topic: d.cfg.DeadLetterTopic, Key: []byte(ch.Key), Value: v, Headers: []kgo.RecordHeader{
			{Key: HeaderDestination, Value: []byte(name)},
			{Key: HeaderReason, Value: []byte(out.reason)},
			{Key: HeaderAttempts, Value: []byte(strconv.Itoa(out.attempts))},
			{Key: HeaderSource, Value: []byte(ch.ID)},
		}})
	}
	for n := 1; ; n++ {
		err := c.cl.ProduceSync(ctx, records...).FirstErr()
		if err == nil {
			x.deadLettered.Add(int64(len(changes)))
			d.cfg.Logger.Warn("segment changes dead-lettered", "destination", name, "changes", len(changes), "reason", out.reason)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d.cfg.Logger.Error("dead letter not written; trying again", "destination", name, "topic", d.cfg.DeadLetterTopic, "err", err)
		if err := sleep(ctx, d.send.backoff.wait(n, 0)); err != nil {
			return err
		}
	}
}

// ReplayConfig configures Replay.
type ReplayConfig struct {
	Client          []kgo.Opt
	DeadLetterTopic string
	// Group remembers how far the destination's dead letters were
	// replayed: "<kafka.group>-deliver-replay.<destination>".
	Group       string
	Destination Destination
	HTTPClient  *http.Client
	Backoff     Backoff
	Logger      *slog.Logger
}

// ReplayStats say what a replay did.
type ReplayStats struct {
	Sent, Skipped int
}

// ErrReplayStopped is wrapped when a dead letter could not be delivered:
// the replay stops there, and the next one starts with it.
var ErrReplayStopped = errors.New("replay stopped")

// Replay sends the destination's dead letters written so far again (each
// once: the replay group's committed offsets say how far it got), with
// the destination's bounds on attempts; the profile fields are those the
// dead letter holds.
func Replay(ctx context.Context, cfg ReplayConfig) (ReplayStats, error) {
	var st ReplayStats
	if cfg.Backoff == (Backoff{}) {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), cfg.Client...),
		kgo.ConsumerGroup(cfg.Group), kgo.ConsumeTopics(cfg.DeadLetterTopic), kgo.DisableAutoCommit(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		return st, fmt.Errorf("replay consumer (group %s): %w", cfg.Group, err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, cfg.DeadLetterTopic)
	if err != nil {
		return st, fmt.Errorf("end offsets of %s: %w", cfg.DeadLetterTopic, err)
	}
	committed, err := kadm.NewClient(cl).FetchOffsets(ctx, cfg.Group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		committed, err = kadm.OffsetResponses{}, nil // never replayed
	}
	if err != nil {
		return st, fmt.Errorf("offsets of group %s: %w", cfg.Group, err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		done, ok := committed.Lookup(cfg.DeadLetterTopic, o.Partition)
		if o.Offset > 0 && (!ok || done.At < o.Offset) {
			left[o.Partition] = o.Offset
		}
	})
	x := newDest(cfg.Destination, DefaultBreaker)
	s := sender{client: cfg.HTTPClient, backoff: cfg.Backoff, now: time.Now}
	for len(left) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return st, err
		}
		if err := fetches.Err(); err != nil {
			return st, fmt.Errorf("read %s: %w", cfg.DeadLetterTopic, err)
		}
		for _, r := range fetches.Records() {
			if err := replayOne(ctx, &s, x, r, &st); err != nil {
				return st, err
			}
			if err := cl.CommitRecords(ctx, r); err != nil {
				return st, fmt.Errorf("commit the replay of %s: %w", recordID(r), err)
			}
			if end, ok := left[r.Partition]; ok && r.Offset+1 >= end {
				delete(left, r.Partition)
			}
		}
	}
	return st, nil
}

// replayOne sends one dead letter again if it is the destination's.
func replayOne(ctx context.Context, s *sender, x *dest, r *kgo.Record, st *ReplayStats) error {
	name := x.cfg.Load().Name
	var dest string
	for _, h := range r.Headers {
		if h.Key == HeaderDestination {
			dest = string(h.Value)
		}
	}
	if dest != name {
		st.Skipped++
		return nil
	}
	var c Change
	if err := json.Unmarshal(r.Value, &c); err != nil {
		st.Skipped++
		return nil
	}
	out, err := s.deliver(ctx, x, []Change{c})
	if err != nil {
		return err
	}
	if !out.delivered {
		return fmt.Errorf("%w at dead letter %s (change %s): %s", ErrReplayStopped, recordID(r), c.ID, out.reason)
	}
	st.Sent++
	return nil
}
