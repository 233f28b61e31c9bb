package deliver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/state"
)

// Profiles reads profiles for the fields and the consent check (the
// engine's reads through stream.Reads, and through the holder's profile API
// for a profile another instance holds).
type Profiles interface {
	// Profile returns key's profile as a destination sees it, its view
	// only when view is true; state.ErrNotFound for none.
	Profile(ctx context.Context, key string, view bool) (Profile, error)
	// Applied returns, for each events partition held here, the offset
	// of the next event to apply: a change is written just before its
	// event's batch commits, so its profile is read once that is past.
	Applied() map[int32]int64
}

// Profile is a profile as a destination sees it.
type Profile struct {
	// Allows reports whether the profile grants a purpose
	// (state.Purpose.Allows).
	Allows func(state.Purpose) bool
	// View is the profile's JSON form, when asked for.
	View state.View
}

// Change is a segment change as a destination receives it.
type Change struct {
	// ID is the change's idempotency key: the segments topic, partition
	// and offset it was read at. It is the same on every retry, after
	// restarts, and on a replay from the dead-letter topic.
	ID          string    `json:"id"`
	Destination string    `json:"destination"`
	Key         string    `json:"key"`
	Segment     string    `json:"segment"`
	Change      string    `json:"change"` // entered or exited
	Time        time.Time `json:"time"`
	MessageID   string    `json:"messageId,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	// Profile holds the fields the destination asks for; absent when it
	// asks for none or there is no profile (it was deleted).
	Profile *ProfileFields `json:"profile,omitempty"`

	written time.Time // the record's timestamp, for the latency
	source  string    // the causing event's topic/partition/offset, or "time"
	rec     *kgo.Record
}

// ProfileFields are the profile fields sent with a change.
type ProfileFields struct {
	Traits     map[string]json.RawMessage `json:"traits,omitempty"`
	Aggregates map[string]any             `json:"aggregates,omitempty"`
	RFM        *state.RFMView             `json:"rfm,omitempty"`
}

// parseChange reads a segments topic record.
func parseChange(r *kgo.Record) (Change, error) {
	var c Change
	if err := json.Unmarshal(r.Value, &c); err != nil {
		return c, fmt.Errorf("segment change at %s: %w", recordID(r), err)
	}
	c.ID, c.written, c.rec = recordID(r), r.Timestamp, r
	for _, h := range r.Headers {
		if h.Key == HeaderSource {
			c.source = string(h.Value)
		}
	}
	return c, nil
}

// appliedPoll is how often waitApplied looks again.
const appliedPoll = 5 * time.Millisecond

// waitApplied waits until the profiles held here have committed the
// event that caused c (its source on the events topic), or ctx ends. A
// change caused by time, or by an event of a partition held elsewhere,
// does not wait.
func waitApplied(ctx context.Context, c Change, eventsTopic string, profiles Profiles) error {
	rest, ok := strings.CutPrefix(c.source, eventsTopic+"/")
	if !ok || eventsTopic == "" {
		return nil
	}
	ps, os, _ := strings.Cut(rest, "/")
	p, err1 := strconv.ParseInt(ps, 10, 32)
	o, err2 := strconv.ParseInt(os, 10, 64)
	if err1 != nil || err2 != nil {
		return nil
	}
	for {
		next, held := profiles.Applied()[int32(p)]
		if !held || next > o {
			return nil
		}
		if err := sleep(ctx, appliedPoll); err != nil {
			return err
		}
	}
}

// recordID is where a record was read: topic/partition/offset.
func recordID(r *kgo.Record) string {
	return r.Topic + "/" + strconv.Itoa(int(r.Partition)) + "/" + strconv.FormatInt(r.Offset, 10)
}

// withProfile fills c for destination d: false when d's purpose is not
// granted by the profile (the change is withheld), an error when the
// profile cannot be read here now.
func withProfile(ctx context.Context, c Change, d *Destination, profiles Profiles, eventsTopic string) (Change, bool, error) {
	c.Destination = d.Name
	if d.Purpose == "" && !d.Fields.Any() {
		return c, true, nil
	}
	if err := waitApplied(ctx, c, eventsTopic, profiles); err != nil {
		return c, false, err
	}
	p, err := profiles.Profile(ctx, c.Key, d.Fields.Any())
	if errors.Is(err, state.ErrNotFound) {
		if c.Change == "entered" {
			// An entry's profile exists: its holder (another instance) has
			// not committed the event yet.
			return c, false, fmt.Errorf("profile %q entered %s but is not found yet", c.Key, c.Segment)
		}
		return c, d.Purpose == "", nil // gone: nothing it granted
	}
	if err != nil {
		return c, false, fmt.Errorf("read profile %q: %w", c.Key, err)
	}
	if !p.Allows(d.Purpose) {
		return c, false, nil
	}
	if !d.Fields.Any() {
		return c, true, nil
	}
	v := p.View
	f := &ProfileFields{}
	if d.Fields.Traits {
		f.Traits = v.Traits
	}
	if d.Fields.Aggregates {
		f.Aggregates = v.Aggregates
	}
	if d.Fields.RFM {
		f.RFM = v.RFM
	}
	c.Profile = f
	return c, true, nil
}

// body returns the request body of changes for a destination with batch
// size batch: one change as is, or {"changes": [...]}.
func body(changes []Change, batch int) ([]byte, error) {
	if batch <= 1 && len(changes) == 1 {
		return json.Marshal(changes[0])
	}
	return json.Marshal(struct {
		Changes []Change `json:"changes"`
	}{changes})
}
