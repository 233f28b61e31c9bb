package stream

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fastjson"

	"github.com/tailorcdp/tailor/event"
)

// ImportOptions configure Import.
type ImportOptions struct {
	Producer *Producer
	Topic    string
	Limits   event.Limits
	// Progress, when set, is called now and then with the counts so far.
	Progress func(ImportStats)
	// MaxReasons bounds the distinct rejection reasons kept (default 20).
	MaxReasons int
}

// ImportStats count what an import did.
type ImportStats struct {
	Lines    int
	Accepted int // produced and acknowledged
	Rejected int // invalid lines, not produced
	Failed   int // valid, but Kafka did not acknowledge them
	Reasons  []RejectReason
}

// RejectReason is one reason lines were rejected for.
type RejectReason struct {
	Reason    string
	Count     int
	FirstLine int
}

// Import reads NDJSON Segment events from r, validates each line like the
// collect API does, and produces the valid ones to the events topic keyed by
// profile key. Lines without a messageId get one derived from their content,
// so importing a file twice applies its events once. Lines that name no
// context.library.name get event.ImportLibrary, which the profiles show as
// the source of the traits they set. It returns when every produced record
// is acknowledged.
func Import(ctx context.Context, r io.Reader, o ImportOptions) (ImportStats, error) {
	if o.MaxReasons <= 0 {
		o.MaxReasons = 20
	}
	br := bufio.NewReaderSize(r, 1<<20)
	parser := event.NewParser(o.Limits)
	parser.Stamp = true

	var (
		st       ImportStats
		mu       sync.Mutex // guards st.Accepted, st.Failed, firstErr
		firstErr error
		reasons  = make(map[string]*RejectReason)
		arena    fastjson.Arena
		last     = time.Now()
	)
	snapshot := func() ImportStats {
		mu.Lock()
		defer mu.Unlock()
		s := st
		s.Reasons = make([]RejectReason, 0, len(reasons))
		for _, r := range reasons {
			s.Reasons = append(s.Reasons, *r)
		}
		sort.Slice(s.Reasons, func(i, j int) bool { return s.Reasons[i].Count > s.Reasons[j].Count })
		return s
	}
	reject := func(line int, reason string) {
		st.Rejected++
		rr := reasons[reason]
		if rr == nil {
			if len(reasons) >= o.MaxReasons {
				reason = "(other reasons)"
				rr = reasons[reason]
			}
			if rr == nil {
				rr = &RejectReason{Reason: reason, FirstLine: line}
				reasons[reason] = rr
			}
		}
		rr.Count++
	}

	for {
		if err := ctx.Err(); err != nil {
			return snapshot(), err
		}
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			st.Lines++
			line = bytes.TrimSpace(line)
			if len(line) > 0 {
				now := time.Now().UTC()
				ev, perr := parser.Parse(line, 0, now)
				var value []byte
				if perr == nil {
					arena.Reset()
					sum := sha256.Sum256(line)
					ev.Stamp(&arena, arena.NewString(now.Format(time.RFC3339Nano)), func() string {
						return "import-" + hex.EncodeToString(sum[:16])
					})
					// What it sets is known to come from an import.
					ev.StampLibrary(&arena, event.ImportLibrary)
					// The JSON the consumer accepts, within the size limit.
					value, perr = parser.AppendRecord(nil, &ev, "")
				}
				if perr != nil {
					mu.Lock()
					reject(st.Lines, perr.Error())
					mu.Unlock()
				} else {
					rec := &kgo.Record{Topic: o.Topic, Key: []byte(ev.Key()), Value: value, Timestamp: now}
					o.Producer.ProduceAsync(ctx, rec, func(_ *kgo.Record, err error) {
						mu.Lock()
						defer mu.Unlock()
						if err != nil {
							st.Failed++
							if firstErr == nil {
								firstErr = err
							}
							return
						}
						st.Accepted++
					})
				}
			}
		}
		if o.Progress != nil && time.Since(last) > 200*time.Millisecond {
			last = time.Now()
			o.Progress(snapshot())
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return snapshot(), fmt.Errorf("read line %d: %w", st.Lines+1, err)
		}
	}
	if err := o.Producer.Flush(ctx); err != nil {
		return snapshot(), fmt.Errorf("wait for acknowledgements: %w", err)
	}
	s := snapshot()
	if o.Progress != nil {
		o.Progress(s)
	}
	if firstErr != nil {
		return s, fmt.Errorf("%d events not acknowledged by Kafka, first error: %w", s.Failed, firstErr)
	}
	return s, nil
}

// String summarises the stats for people.
func (s ImportStats) String() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%d lines: %d accepted, %d rejected", s.Lines, s.Accepted, s.Rejected)
	if s.Failed > 0 {
		fmt.Fprintf(&b, ", %d failed", s.Failed)
	}
	for _, r := range s.Reasons {
		b.WriteString("\n  " + strconv.Itoa(r.Count) + " × " + r.Reason + " (first at line " + strconv.Itoa(r.FirstLine) + ")")
	}
	return b.String()
}
