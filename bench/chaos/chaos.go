package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tailorcdp/tailor/bench/dataset"
	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/state"
	"github.com/tailorcdp/tailor/stream"
)

// Options configure Run.
type Options struct {
	// Binary is the tailor binary run as the child engine.
	Binary string
	// Brokers are an external Kafka cluster's. Empty runs the child's
	// embedded broker, on a port fixed for the run, its data under Dir:
	// the broker dies with every kill and comes back from its disk.
	Brokers []string
	// TopicPrefix names the run's topics (and group); default "chaos.".
	TopicPrefix string
	// Dir holds the child's config, data and logs (logs/start-NNN.log);
	// it must be empty or absent.
	Dir string
	// Events are the NDJSON events imported while the child is killed.
	Events []byte
	// Truth are the facts per customer that Events stand for
	// (dataset.RetailFacts); repeat buyers (two orders or more) must
	// enter a segment exactly once. Nil checks no profiles.
	Truth map[string]*dataset.CustomerFacts
	// Kills is how many times the child is killed during the import. The
	// import is paced to span them: its lines go out while the child is
	// up, so that the kills fall at random points of it.
	Kills int
	// Wake is how many profiles time alone then moves into and out of a
	// segment (signed in over the last 15 s, in it for 45 s), while the
	// child is killed again and again for about 50 s; 0 skips it.
	Wake int
	// Up bounds how long the child runs once ready before it is killed:
	// a time drawn uniformly from [Up/8, Up]; default 1.5 s.
	Up time.Duration
	// ReadyTimeout bounds the time from each start of the child to its
	// readiness (and, with no import running, a consumer lag of zero);
	// default 30 s. Run fails when a start exceeds it.
	ReadyTimeout time.Duration
	Partitions   int    // default 6
	Seed         uint64 // of the kill timing
	// Progress, when set, is told what happens.
	Progress func(string)
}

// Result is what Run measured and found.
type Result struct {
	Target string `json:"target"` // "embedded broker" or the brokers
	Events int    `json:"events"`
	Seed   uint64 `json:"seed"`
	// Kills counts the SIGKILLs, ImportKills those during the import,
	// WakeKills those while time moved profiles.
	Kills       int `json:"kills"`
	ImportKills int `json:"import_kills"`
	WakeKills   int `json:"wake_kills"`
	// Ready is the time from each start after a kill to readiness,
	// seconds; ReadyP50, ReadyP99 and ReadyMax summarise it.
	Ready    []float64 `json:"ready_seconds"`
	ReadyP50 float64   `json:"ready_p50_seconds"`
	ReadyP99 float64   `json:"ready_p99_seconds"`
	ReadyMax float64   `json:"ready_max_seconds"`
	// ImportRetries counts imports started again from the first line
	// after the producer failed (their events are deduplicated by
	// messageId).
	ImportRetries int          `json:"import_retries"`
	Retail        RetailTally  `json:"retail"`
	Segments      SegmentTally `json:"segments"`
	// StillIn counts wake profiles still in the segment at the end.
	StillIn int     `json:"still_in"`
	Seconds float64 `json:"seconds"`
}

// OK reports whether nothing was lost, doubled or wrong.
func (r *Result) OK() bool {
	return r.Retail.Lost == 0 && r.Retail.Doubled == 0 && r.Retail.Wrong == 0 &&
		r.Segments.Duplicated == 0 && r.Segments.Missing == 0 && r.Segments.Unexpected == 0 && r.StillIn == 0
}

const (
	writeKey    = "chaos-write"
	readKey     = "chaos-read"
	repeatBuyer = "repeat_buyer"
	wakeSegment = "signed_in_recently"
	wakeFor     = 45 * time.Second
)

// config is the child's: a segment each import customer with two orders
// enters once, and one that time alone empties.
var config = fmt.Sprintf(`aggregates:
  orders_all: {event: Order Completed, fn: count}
segments:
  %s: 'orders_all >= 2'
  %s: 'since("Signed In") < %ds'
`, repeatBuyer, wakeSegment, int(wakeFor.Seconds()))

// run is one Run: the child's arguments and what is measured.
type run struct {
	o      Options
	args   []string
	client stream.ClientConfig
	rng    *rand.Rand
	res    *Result
	child  *Child
}

// Run imports o.Events into a child engine while killing it with SIGKILL
// o.Kills times at random points and starting it again, then (o.Wake)
// kills it while time moves profiles out of a segment, and checks the
// profiles and the segment change records. A start that is not ready
// within o.ReadyTimeout ends the run with an error.
func Run(ctx context.Context, o Options) (*Result, error) {
	r, err := newRun(o)
	if err != nil {
		return nil, err
	}
	defer func() {
		if r.child != nil {
			r.child.Kill()
		}
	}()
	began := time.Now()
	if err := r.importPhase(ctx); err != nil {
		return r.res, err
	}
	if r.o.Wake > 0 {
		if err := r.wakePhase(ctx); err != nil {
			return r.res, err
		}
	}
	if err := r.check(ctx); err != nil {
		return r.res, err
	}
	r.res.Seconds = time.Since(began).Seconds()
	r.summarise()
	return r.res, nil
}

func newRun(o Options) (*run, error) {
	if o.Binary == "" || o.Dir == "" {
		return nil, errors.New("chaos: Binary and Dir are required")
	}
	if o.TopicPrefix == "" {
		o.TopicPrefix = "chaos."
	}
	if o.Up <= 0 {
		o.Up = 1500 * time.Millisecond
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 30 * time.Second
	}
	if o.Partitions <= 0 {
		o.Partitions = 6
	}
	if o.Progress == nil {
		o.Progress = func(string) {}
	}
	if err := os.MkdirAll(filepath.Join(o.Dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	configFile := filepath.Join(o.Dir, "tailor.yaml")
	if err := os.WriteFile(configFile, []byte(config), 0o644); err != nil {
		return nil, err
	}
	r := &run{o: o, rng: rand.New(rand.NewPCG(o.Seed, 18)),
		res: &Result{Target: "embedded broker", Events: bytes.Count(o.Events, []byte("\n")), Seed: o.Seed}}
	r.args = []string{"--log-level", "info", "--config", configFile, "--data-dir", filepath.Join(o.Dir, "data"),
		"--partitions", strconv.Itoa(o.Partitions), "--topic-prefix", o.TopicPrefix, "--group", o.TopicPrefix + "engine",
		"--instance-id", "chaos", "--write-keys", writeKey, "--read-keys", readKey, "--memtable-size", "4MB"}
	if len(o.Brokers) > 0 {
		r.client.Brokers = o.Brokers
		r.res.Target = "brokers " + strings.Join(o.Brokers, ",")
		r.args = append(r.args, "--brokers", strings.Join(o.Brokers, ","))
	} else {
		addr, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		_, port, _ := strings.Cut(addr, ":")
		r.client.Brokers = []string{addr}
		r.args = append(r.args, "--embedded-port", port)
	}
	return r, nil
}

func (r *run) progress(format string, a ...any) { r.o.Progress(fmt.Sprintf(format, a...)) }

// start starts the child and waits, within ReadyTimeout, for it to be
// ready, and with caughtUp for its lag to be zero as well; it records the
// time when the start follows a kill.
func (r *run) start(ctx context.Context, caughtUp bool) error {
	began := time.Now()
	c, err := Start(r.o.Binary, filepath.Join(r.o.Dir, "logs", fmt.Sprintf("start-%03d.log", r.res.Kills+1)), r.args...)
	if err != nil {
		return err
	}
	r.child = c
	wctx, cancel := context.WithTimeout(ctx, r.o.ReadyTimeout)
	defer cancel()
	if err := c.WaitReady(wctx); err != nil {
		return fmt.Errorf("start %d after %d kills: %w; its logs:\n%s", r.res.Kills+1, r.res.Kills, err, c.Logs())
	}
	if r.res.Kills > 0 {
		r.res.Ready = append(r.res.Ready, time.Since(began).Seconds())
	}
	if caughtUp {
		if err := c.WaitCaughtUp(wctx); err != nil {
			return fmt.Errorf("start %d after %d kills: %w; its logs:\n%s", r.res.Kills+1, r.res.Kills, err, c.Logs())
		}
	}
	return nil
}

// upTime draws how long the child runs before the next kill.
func (r *run) upTime() time.Duration {
	lo := r.o.Up / 8
	return lo + time.Duration(r.rng.Int64N(int64(r.o.Up-lo)+1))
}

func (r *run) kill() {
	r.child.Kill()
	r.child = nil
	r.res.Kills++
}

// importPhase imports the events, paced to span o.Kills kills, and ends
// with the child caught up on all of them.
func (r *run) importPhase(ctx context.Context) error {
	if err := r.start(ctx, false); err != nil {
		return err
	}
	lines := r.res.Events
	pace := newPacer(r.o.Events)
	if r.o.Kills > 0 {
		// On average the child runs 9/16 Up between its readiness and
		// the next kill; the lines go out then.
		pace.rate = float64(lines) / (float64(r.o.Kills) * (r.o.Up * 9 / 16).Seconds())
	} else {
		pace.open()
	}
	pace.up()
	imported := make(chan error, 1)
	ictx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { imported <- r.importAll(ictx, pace) }()
	for r.res.ImportKills < r.o.Kills {
		select {
		case <-time.After(r.upTime()):
		case err := <-imported:
			if err != nil {
				return err
			}
			imported <- nil // keep it for the end of the phase
			time.Sleep(r.upTime())
		}
		pace.down()
		r.kill()
		r.res.ImportKills++
		if r.res.ImportKills%10 == 0 || r.res.ImportKills == r.o.Kills {
			r.progress("import: %d of %d kills, %d of %d lines out", r.res.ImportKills, r.o.Kills, pace.sent(), lines)
		}
		if err := r.start(ctx, false); err != nil {
			return err
		}
		pace.up()
	}
	pace.open()
	select {
	case err := <-imported:
		if err != nil {
			return err
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	wctx, cancel := context.WithTimeout(ctx, r.o.ReadyTimeout)
	defer cancel()
	if err := r.child.WaitCaughtUp(wctx); err != nil {
		return fmt.Errorf("after the import: %w; logs:\n%s", err, r.child.Logs())
	}
	return nil
}

// importAll imports the events, again from the first line whenever the
// producer fails (the events carry messageIds, so what was imported
// before is deduplicated).
func (r *run) importAll(ctx context.Context, pace *pacer) error {
	producer, err := stream.NewProducer(r.client)
	if err != nil {
		return err
	}
	defer producer.Close()
	for {
		stats, err := stream.Import(ctx, pace.reader(ctx), stream.ImportOptions{
			Producer: producer, Topic: stream.NewTopics(r.o.TopicPrefix).Events, Limits: event.DefaultLimits()})
		if err == nil && stats.Rejected > 0 {
			return fmt.Errorf("import rejected events: %s", stats)
		}
		if err == nil || ctx.Err() != nil {
			return err
		}
		r.res.ImportRetries++
		r.progress("import failed (%v); importing again from the first line", err)
	}
}

// wakePhase signs o.Wake profiles in over the last 15 s and kills the
// child until every one of them has left the segment, each start caught
// up within ReadyTimeout.
func (r *run) wakePhase(ctx context.Context) error {
	producer, err := stream.NewProducer(r.client)
	if err != nil {
		return err
	}
	defer producer.Close()
	start := time.Now()
	var events bytes.Buffer
	for i := range r.o.Wake {
		at := start.Add(-15*time.Second + time.Duration(i)*15*time.Second/time.Duration(r.o.Wake)).Truncate(time.Millisecond)
		fmt.Fprintf(&events, `{"type": "track", "event": "Signed In", "userId": "wake-%d", "messageId": "wake-%d", "timestamp": %q}`+"\n", i, i, at.Format(time.RFC3339Nano))
	}
	stats, err := stream.Import(ctx, &events, stream.ImportOptions{Producer: producer, Topic: stream.NewTopics(r.o.TopicPrefix).Events, Limits: event.DefaultLimits()})
	if err != nil || stats.Accepted != r.o.Wake {
		return fmt.Errorf("import the sign-ins: %v, %w", stats, err)
	}
	// The last profile leaves 45 s after its sign-in, 45 s from now.
	for time.Since(start) < wakeFor+3*time.Second {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(r.upTime()):
		}
		r.kill()
		r.res.WakeKills++
		if err := r.start(ctx, true); err != nil {
			return err
		}
	}
	r.progress("wake: %d kills", r.res.WakeKills)
	return nil
}

// check compares the profiles and the segment change records with what
// they must be.
func (r *run) check(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	want := SegmentExpectations{Once: make(map[Change]bool), Pairs: make(map[Change]bool)}
	if r.o.Truth != nil {
		t, err := CheckRetail(cctx, r.o.Truth, func(ctx context.Context, key string) (state.View, bool, error) {
			return r.child.Profile(ctx, key, readKey)
		})
		if err != nil {
			return err
		}
		r.res.Retail = t
		for id, f := range r.o.Truth {
			if f.Orders >= 2 {
				want.Once[Change{id, repeatBuyer, "entered"}] = true
			}
		}
	}
	for i := range r.o.Wake {
		key := "wake-" + strconv.Itoa(i)
		want.Pairs[Change{key, wakeSegment, "entered"}] = true
		v, ok, err := r.child.Profile(cctx, key, readKey)
		if err != nil {
			return err
		}
		if !ok || len(v.Segments) != 0 {
			r.res.StillIn++
		}
	}
	changes, err := SegmentChanges(cctx, r.client, stream.NewTopics(r.o.TopicPrefix).Segments)
	if err != nil {
		return err
	}
	r.res.Segments = CheckSegments(changes, want)
	return nil
}

func (r *run) summarise() {
	s := slices.Clone(r.res.Ready)
	slices.Sort(s)
	if len(s) == 0 {
		return
	}
	at := func(q float64) float64 { return s[min(len(s)-1, int(q*float64(len(s))))] }
	r.res.ReadyP50, r.res.ReadyP99, r.res.ReadyMax = at(0.5), at(0.99), s[len(s)-1]
}

// RetailData reads the Online Retail CSV at path (.gz unpacked) and
// returns its events (dataset.WriteRetailEvents) and its customers' facts
// (dataset.RetailFacts), of its first lines lines only when lines > 0.
func RetailData(path string, lines int) ([]byte, map[string]*dataset.CustomerFacts, error) {
	f, err := dataset.OpenMaybeGzip(path, nil)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	csv, err := io.ReadAll(f)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	if lines > 0 {
		// The header, then lines lines.
		for i, off := 0, 0; i <= lines; i++ {
			n := bytes.IndexByte(csv[off:], '\n')
			if n < 0 {
				break
			}
			if off += n + 1; i == lines {
				csv = csv[:off]
			}
		}
	}
	var events bytes.Buffer
	if _, err := dataset.WriteRetailEvents(bytes.NewReader(csv), &events); err != nil {
		return nil, nil, fmt.Errorf("events of %s: %w", path, err)
	}
	truth, err := dataset.RetailFacts(bytes.NewReader(csv))
	if err != nil {
		return nil, nil, fmt.Errorf("facts of %s: %w", path, err)
	}
	return events.Bytes(), truth, nil
}
