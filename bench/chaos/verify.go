package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/bench/dataset"
	"github.com/tailorcdp/tailor/state"
	"github.com/tailorcdp/tailor/stream"
)

// RetailTally is how the profiles compare with the facts computed from
// the Online Retail CSV.
type RetailTally struct {
	Customers int `json:"customers"`
	// Events is how many events the customers' facts stand for: their
	// order, refund and identify events.
	Events int `json:"events"`
	// Lost and Doubled count events missing from the profiles and events
	// counted more than once (orders, refunds, identify calls).
	Lost    int `json:"lost"`
	Doubled int `json:"doubled"`
	// Wrong counts customers whose profile differs in any way (amounts
	// and times too); Diffs describes the first of them.
	Wrong int      `json:"wrong"`
	Diffs []string `json:"diffs,omitempty"`
}

// ProfileFunc returns a customer's profile, false when there is none.
type ProfileFunc func(ctx context.Context, key string) (state.View, bool, error)

// CheckRetail reads every customer's profile and compares it with the
// facts of truth.
func CheckRetail(ctx context.Context, truth map[string]*dataset.CustomerFacts, get ProfileFunc) (RetailTally, error) {
	t := RetailTally{Customers: len(truth)}
	views := make(map[string]state.View, len(truth))
	for id, f := range truth {
		t.Events += f.Orders + f.Refunds + 1
		v, ok, err := get(ctx, id)
		if err != nil {
			return t, err
		}
		if !ok {
			t.Lost += f.Orders + f.Refunds + 1
			continue
		}
		views[id] = v
		for _, d := range []int{int(v.Orders.Count) - f.Orders, int(v.Orders.Refunds) - f.Refunds, int(v.Calls["identify"]) - 1} {
			if d > 0 {
				t.Doubled += d
			} else {
				t.Lost -= d
			}
		}
	}
	diffs := dataset.CompareRetail(truth, func(id string) (state.View, bool) { v, ok := views[id]; return v, ok })
	t.Wrong = len(diffs)
	t.Diffs = diffs[:min(len(diffs), 10)]
	return t, nil
}

// Change names a segment change of a profile.
type Change struct{ Key, Segment, Change string }

// SegmentTally is how the segment change records compare with what is
// expected.
type SegmentTally struct {
	Records    int `json:"records"`
	Expected   int `json:"expected"`
	Duplicated int `json:"duplicated"`
	Missing    int `json:"missing"`
	// Unexpected counts records of changes that should not have happened.
	Unexpected int      `json:"unexpected"`
	Problems   []string `json:"problems,omitempty"`
}

// SegmentExpectations says which change records must be there.
type SegmentExpectations struct {
	// Once must each be there exactly once.
	Once map[Change]bool
	// Pairs (an entered change) must be there with their exited change
	// exactly once each, or neither of them: whether a profile entered
	// at all depends on when it was applied.
	Pairs map[Change]bool
}

// CheckSegments counts the change records against what is expected.
func CheckSegments(records []stream.SegmentChange, want SegmentExpectations) SegmentTally {
	t := SegmentTally{Records: len(records)}
	seen := make(map[Change]int)
	for _, r := range records {
		seen[Change{r.Key, r.Segment, r.Change}]++
	}
	problem := func(format string, a ...any) {
		if len(t.Problems) < 10 {
			t.Problems = append(t.Problems, fmt.Sprintf(format, a...))
		}
	}
	expected := make(map[Change]bool)
	for c := range want.Once {
		expected[c] = true
		t.Expected++
		if seen[c] == 0 {
			t.Missing++
			problem("%s %s %s: missing", c.Key, c.Change, c.Segment)
		}
	}
	for in := range want.Pairs {
		out := Change{in.Key, in.Segment, "exited"}
		expected[in], expected[out] = true, true
		switch n, m := seen[in], seen[out]; {
		case n == 0 && m == 0:
		case n == 0 || m == 0:
			t.Expected += 2
			t.Missing++
			problem("%s %s: %d entered and %d exited records, want both or neither", in.Key, in.Segment, n, m)
		default:
			t.Expected += 2
		}
	}
	for c, n := range seen {
		if !expected[c] {
			t.Unexpected += n
			problem("%s %s %s: %d records, want none", c.Key, c.Change, c.Segment, n)
		} else if n > 1 {
			t.Duplicated += n - 1
			problem("%s %s %s: %d records, want one", c.Key, c.Change, c.Segment, n)
		}
	}
	sort.Strings(t.Problems)
	return t
}

// SegmentChanges reads every committed record of the segments topic, up
// to its end offsets as they are when it is called (read committed, as
// consumers of tailor's outputs must).
func SegmentChanges(ctx context.Context, client stream.ClientConfig, topic string) ([]stream.SegmentChange, error) {
	records, err := readToEnd(ctx, client, topic)
	if err != nil {
		return nil, err
	}
	changes := make([]stream.SegmentChange, 0, len(records))
	for _, r := range records {
		var c stream.SegmentChange
		if err := json.Unmarshal(r.Value, &c); err != nil {
			return nil, fmt.Errorf("%s partition %d offset %d: %w", topic, r.Partition, r.Offset, err)
		}
		changes = append(changes, c)
	}
	return changes, nil
}

// readToEnd returns the committed records of topic below its end offsets.
func readToEnd(ctx context.Context, client stream.ClientConfig, topic string) ([]*kgo.Record, error) {
	cl, err := kgo.NewClient(client.Opts()...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	left := make(map[int32]int64) // partition: end offset not reached yet
	from := make(map[int32]kgo.Offset)
	ends.Each(func(o kadm.ListedOffset) {
		if s, ok := starts.Lookup(topic, o.Partition); ok && o.Offset > s.Offset {
			left[o.Partition] = o.Offset
			from[o.Partition] = kgo.NewOffset().At(s.Offset)
		}
	})
	if len(left) == 0 {
		return nil, nil
	}
	rd, err := kgo.NewClient(append(client.Opts(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())...)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	var out []*kgo.Record
	for len(left) > 0 {
		fetches := rd.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read %s to its end (%d partitions left): %w", topic, len(left), err)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
			if end, ok := left[r.Partition]; ok && r.Offset+1 >= end {
				delete(left, r.Partition)
			}
		})
	}
	return out, nil
}

// Lag returns the sum of the child's tailor_consumer_lag gauges and how
// many there are (one per assigned partition, once its end offset has
// been read).
func (c *Child) Lag(ctx context.Context) (lag float64, partitions int, err error) {
	status, body, err := c.Get(ctx, "/metrics", "")
	if err != nil {
		return 0, 0, err
	}
	if status != http.StatusOK {
		return 0, 0, fmt.Errorf("GET /metrics: %d", status)
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "tailor_consumer_lag{") && !strings.HasPrefix(line, "tailor_consumer_lag ") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, 0, fmt.Errorf("metrics line %q: %w", line, err)
		}
		lag += v
		partitions++
	}
	return lag, partitions, sc.Err()
}

// WaitCaughtUp waits until the child is ready and its consumer lag is
// zero.
func (c *Child) WaitCaughtUp(ctx context.Context) error {
	if err := c.WaitReady(ctx); err != nil {
		return err
	}
	for {
		lag, n, err := c.Lag(ctx)
		if err == nil && n > 0 && lag == 0 {
			return nil
		}
		select {
		case <-c.exited:
			return fmt.Errorf("tailor exited (%v) before its lag was zero", c.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("lag %v, want 0 (%v): %w", lag, err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
