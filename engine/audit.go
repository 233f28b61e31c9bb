package engine

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/audit"
	"github.com/tailorcdp/tailor/stream"
)

// auditTimeout bounds the wait for an audit record's acknowledgement: an
// admin action waits this long at most before it is refused.
const auditTimeout = 5 * time.Second

// auditor writes admin actions to the audit topic with the engine's
// producer, acknowledged by every in-sync replica (decision 0030). It is
// serve's Auditor, and records the engine's own configuration reloads.
type auditor struct {
	producer *stream.Producer
	topic    string
	log      *slog.Logger
	now      func() time.Time
}

// refusedGrace is how long Record waits, after auditTimeout, to learn
// whether a record it gave up on was sent: a record not yet sent is
// failed by the producer at once; one sent is retried, and may be
// written later.
const refusedGrace = time.Second

// Record writes e and returns once it is acknowledged, or an error
// wrapping audit.ErrNotRecorded after auditTimeout (or ctx's end). An
// entry without a time gets the clock's. When the record may still be
// written (it was sent, and the producer keeps retrying it), an
// action.refused entry of the same id follows it, so that compaction
// keeps the truth: the action did not happen.
func (a *auditor) Record(ctx context.Context, e audit.Entry) error {
	if e.At.IsZero() {
		e.At = a.now()
	}
	r, err := e.Record(a.topic)
	if err != nil {
		return fmt.Errorf("%w: %w", audit.ErrNotRecorded, err)
	}
	ctx, cancel := context.WithTimeout(ctx, auditTimeout)
	defer cancel()
	done := make(chan error, 1)
	a.producer.ProduceAsync(ctx, r, func(_ *kgo.Record, err error) { done <- err })
	select {
	case err = <-done:
	case <-ctx.Done():
		select {
		case err = <-done:
		case <-time.After(refusedGrace):
			err = fmt.Errorf("not acknowledged in %s: %w", auditTimeout, context.Cause(ctx))
			a.RecordLater(audit.Entry{ID: e.ID, Action: audit.Refused, By: e.By,
				Detail: map[string]any{"action": e.Action, "error": err.Error()}})
		}
	}
	if err != nil {
		return fmt.Errorf("%w: %s %s on %s: %w", audit.ErrNotRecorded, e.Action, e.ID, a.topic, err)
	}
	return nil
}

// RecordLater writes e without waiting, for entries that must not hold
// up an answer: a rejected configuration, or the failure of a recorded
// action. The producer keeps it until the brokers take it (or the engine
// stops); a failure is logged.
func (a *auditor) RecordLater(e audit.Entry) {
	if e.At.IsZero() {
		e.At = a.now()
	}
	r, err := e.Record(a.topic)
	if err != nil {
		a.log.Error("audit record not written", "action", e.Action, "id", e.ID, "err", err)
		return
	}
	a.producer.ProduceAsync(context.Background(), r, func(_ *kgo.Record, err error) {
		if err != nil {
			a.log.Warn("audit record not written", "action", e.Action, "id", e.ID, "by", e.By, "err", err)
		}
	})
}
