package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/bench/chaos"
	"github.com/tailorcdp/tailor/bench/dataset"
	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/state"
	"github.com/tailorcdp/tailor/stream"
)

const retailCSV = "../../../shared/data/online-retail.csv.gz"

// buildTailor builds the command into a temporary directory.
func buildTailor(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tailor")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// child is a tailor process started by a test.
type child struct {
	*chaos.Child
	url string
}

func startChild(t *testing.T, bin string, args ...string) *child {
	t.Helper()
	c, err := chaos.Start(bin, "", append([]string{"--log-level", "warn"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Kill)
	return &child{Child: c, url: c.URL()}
}

func (c *child) kill() { c.Kill() }

func (c *child) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatalf("%v after %s; logs:\n%s", err, timeout, c.Logs())
	}
}

// profile reads key's profile, waiting out a partition on the move.
func (c *child) profile(t *testing.T, key string) (state.View, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, ok, err := c.Profile(ctx, key, "crash-read")
	if err != nil {
		t.Fatal(err)
	}
	return v, ok
}

// throttled hands out its data in small pieces with pauses, so an import
// of it spans the kills of the engine.
type throttled struct {
	r     io.Reader
	chunk int
	pause time.Duration
}

func (th *throttled) Read(p []byte) (int, error) {
	time.Sleep(th.pause)
	return th.r.Read(p[:min(len(p), th.chunk)])
}

// importWhileKilling imports events (rejecting none) into the crash
// tests' events topic while starting the engine and killing it with
// SIGKILL at times drawn from rng, until the import is done; it returns
// how many times it killed the engine.
func importWhileKilling(t *testing.T, bin string, args []string, producer *stream.Producer, prefix string, events io.Reader, rng *rand.Rand) int {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		stats, err := stream.Import(context.Background(), events,
			stream.ImportOptions{Producer: producer, Topic: prefix + "events", Limits: event.DefaultLimits()})
		if err == nil && stats.Rejected > 0 {
			err = fmt.Errorf("import rejected lines: %s", stats)
		}
		done <- err
	}()
	kills := 0
	for importing := true; importing; {
		c := startChild(t, bin, args...)
		c.waitReady(t, 90*time.Second)
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			importing = false
		case <-time.After(time.Duration(100+rng.IntN(700)) * time.Millisecond):
		}
		c.kill()
		kills++
	}
	return kills
}

// crashArgs are the flags of the engines the crash tests start and kill.
func crashArgs(configFile string, brokers []string, prefix, instance, dataDir string) []string {
	return []string{
		"--config", configFile,
		"--brokers", strings.Join(brokers, ","), "--topic-prefix", prefix, "--group", prefix + "engine",
		"--instance-id", instance, "--partitions", "6", "--data-dir", dataDir,
		"--write-keys", "crash-write", "--read-keys", "crash-read", "--memtable-size", "4MB",
	}
}

// crashProducer returns a producer for the crash tests' events, after
// creating the topics as the engine would (6 partitions), so that
// producing does not race the first start.
func crashProducer(t *testing.T, brokers []string, prefix string) *stream.Producer {
	t.Helper()
	return topicsProducer(t, brokers, prefix, 6)
}

// topicsProducer creates the topics of prefix with partitions partitions
// and returns a producer to them.
func topicsProducer(t *testing.T, brokers []string, prefix string, partitions int32) *stream.Producer {
	t.Helper()
	producer, err := stream.NewProducer(stream.ClientConfig{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(producer.Close)
	if _, err := stream.EnsureTopics(context.Background(), producer.Client(), stream.NewTopics(prefix), partitions, 1); err != nil {
		t.Fatal(err)
	}
	return producer
}

// retailData returns the Online Retail history as events, and each
// customer's facts computed from the CSV; it skips t without the data
// set.
func retailData(t *testing.T) (*bytes.Buffer, map[string]*dataset.CustomerFacts) {
	t.Helper()
	if _, err := os.Stat(retailCSV); err != nil {
		t.Skipf("data set not present: %v", err)
	}
	open := func() io.Reader {
		f, err := dataset.OpenMaybeGzip(retailCSV, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return bufio.NewReader(f)
	}
	var events bytes.Buffer
	if _, err := dataset.WriteRetailEvents(open(), &events); err != nil {
		t.Fatal(err)
	}
	truth, err := dataset.RetailFacts(open())
	if err != nil {
		t.Fatal(err)
	}
	return &events, truth
}

// repeatBuyerConfig writes a config whose segment repeat_buyer holds the
// customers with two orders or more, and returns its path.
func repeatBuyerConfig(t *testing.T) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "tailor.yaml")
	if err := os.WriteFile(file, []byte(`
aggregates:
  orders_all: {event: Order Completed, fn: count}
segments:
  repeat_buyer: 'orders_all >= 2'
`), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestCrashSafety imports the Online Retail data set twice (the second time
// every messageId is a duplicate) while the engine is killed with SIGKILL
// again and again, then checks every customer's profile against the CSV:
// nothing lost, nothing counted twice.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills child processes")
	}
	events, truth := retailData(t)

	t.Setenv("TAILOR_CHANGELOG", "true") // the children's: checkRestore
	bin := buildTailor(t)
	brokers := testkafka.Brokers(t)
	prefix := testkafka.Prefix(t)
	dataDir := t.TempDir()
	// A segment whose entered records must appear exactly once per
	// customer with two orders or more, kills notwithstanding.
	configFile := repeatBuyerConfig(t)
	args := crashArgs(configFile, brokers, prefix, "crash-test", dataDir)
	producer := crashProducer(t, brokers, prefix)

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("kill timing seed %d", seed)
	data := events.Bytes()
	kills := 0
	for round := range 2 { // the second import repeats every messageId
		kills += importWhileKilling(t, bin, args, producer, prefix, &throttled{r: bytes.NewReader(data), chunk: 64 << 10, pause: 12 * time.Millisecond}, rng)
		t.Logf("round %d: %d kills so far", round, kills)
	}
	if kills < 4 {
		t.Logf("only %d kills: the import was fast", kills)
	}

	// A last start applies what is left; ready means caught up with
	// everything produced before it started.
	c := startChild(t, bin, args...)
	c.waitReady(t, 90*time.Second)
	diffs := dataset.CompareRetail(truth, func(id string) (state.View, bool) { return c.profile(t, id) })
	for i, d := range diffs {
		if i == 10 {
			t.Errorf("... and %d more", len(diffs)-10)
			break
		}
		t.Error(d)
	}

	// Exactly one entered record per repeat buyer on the segments topic.
	repeat := 0
	for _, f := range truth {
		if f.Orders >= 2 {
			repeat++
		}
	}
	// Everything is committed by now: asking for one record more than
	// expected waits a little for a duplicate that must not exist.
	changes := testkafka.Consume(t, brokers, prefix+"segments", repeat+1, 10*time.Second)
	entered := make(map[string]int)
	for _, r := range changes {
		var c stream.SegmentChange
		if err := json.Unmarshal(r.Value, &c); err != nil || c.Segment != "repeat_buyer" || c.Change != "entered" {
			t.Fatalf("unexpected change record %s (%v)", r.Value, err)
		}
		entered[c.Key]++
	}
	bad := 0
	for id, f := range truth {
		if want := map[bool]int{true: 1, false: 0}[f.Orders >= 2]; entered[id] != want {
			bad++
			if bad <= 5 {
				t.Errorf("customer %s (%d orders): %d entered records, want %d", id, f.Orders, entered[id], want)
			}
		}
	}
	if len(changes) != repeat {
		t.Errorf("%d change records, want %d (one per repeat buyer)", len(changes), repeat)
	}

	// The stores, deleted, are restored from the changelog as they were;
	// export reads the restored stores once the engine has stopped.
	checkRestore(t, bin, args, c, brokers, dataDir, prefix, slices.Collect(maps.Keys(truth)))
	out, err := exec.Command(bin, "export", "--data-dir", dataDir, "--topic-prefix", prefix, "--write-keys", "w", "--read-keys", "r").Output()
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	exported := make(map[string]state.View)
	for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		var v state.View
		if err := json.Unmarshal(line, &v); err != nil {
			t.Fatalf("export line %q: %v", line, err)
		}
		exported[v.Key] = v
	}
	if len(exported) != len(truth) {
		t.Errorf("export wrote %d profiles, want %d", len(exported), len(truth))
	}
	if diffs := dataset.CompareRetail(truth, func(id string) (state.View, bool) { v, ok := exported[id]; return v, ok }); len(diffs) > 0 {
		t.Errorf("export differs from the CSV for %d customers, first: %s", len(diffs), diffs[0])
	}
}

// TestWakeCrashSafety lets time alone move profiles in and out of a
// segment while the engine is killed with SIGKILL again and again: every
// profile that entered leaves exactly once, when its bound has passed, and
// no change record is written twice.
func TestWakeCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills child processes")
	}
	bin := buildTailor(t)
	brokers := testkafka.Brokers(t)
	prefix := testkafka.Prefix(t)
	configFile := filepath.Join(t.TempDir(), "tailor.yaml")
	if err := os.WriteFile(configFile, []byte("segments:\n  signed_in_recently: 'since(\"Signed In\") < 45s'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	t.Setenv("TAILOR_CHANGELOG", "true") // the children's: checkRestore
	args := crashArgs(configFile, brokers, prefix, "wake-crash-test", dataDir)
	producer := crashProducer(t, brokers, prefix)
	// Sign-ins over the last 15 s: the profiles leave the segment one
	// after the other between 30 and 45 s from now.
	const n = 300
	start := time.Now()
	signedIn := make(map[string]time.Time, n)
	var events bytes.Buffer
	for i := range n {
		user := fmt.Sprintf("w%d", i)
		at := start.Add(-15*time.Second + time.Duration(i)*15*time.Second/n).Truncate(time.Millisecond)
		signedIn[user] = at
		fmt.Fprintf(&events, `{"type": "track", "event": "Signed In", "userId": %q, "messageId": %q, "timestamp": %q}`+"\n", user, user, at.Format(time.RFC3339Nano))
	}
	stats, err := stream.Import(context.Background(), &events, stream.ImportOptions{Producer: producer, Topic: prefix + "events", Limits: event.DefaultLimits()})
	if err != nil || stats.Accepted != n {
		t.Fatalf("import: %v, %v", stats, err)
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 2))
	t.Logf("kill timing seed %d", seed)
	kills := 0
	for time.Since(start) < 48*time.Second {
		c := startChild(t, bin, args...)
		c.waitReady(t, 90*time.Second)
		time.Sleep(time.Duration(200+rng.IntN(1500)) * time.Millisecond)
		c.kill()
		kills++
	}
	t.Logf("%d kills", kills)
	c := startChild(t, bin, args...)
	c.waitReady(t, 90*time.Second)

	// Ask for one record more than can be right: the wait for it shows
	// there is no duplicate.
	records := testkafka.Consume(t, brokers, prefix+"segments", 2*n+1, 15*time.Second)
	changes := make(map[string][]stream.SegmentChange)
	for _, r := range records {
		var c stream.SegmentChange
		if err := json.Unmarshal(r.Value, &c); err != nil || c.Segment != "signed_in_recently" {
			t.Fatalf("unexpected change record %s (%v)", r.Value, err)
		}
		changes[c.Key] = append(changes[c.Key], c)
	}
	entered := 0
	for user, at := range signedIn {
		cs := changes[user]
		switch {
		case len(cs) == 0: // applied after its bound had passed: never in
		case len(cs) == 2 && cs[0].Change == "entered" && cs[1].Change == "exited" && cs[1].MessageID == "" && !cs[1].Time.Before(at.Add(45*time.Second)):
			entered++
		default:
			t.Errorf("%s, signed in at %v: changes %+v, want one entered and one exited 45 s later", user, at, cs)
		}
		if v, ok := c.profile(t, user); !ok || len(v.Segments) != 0 {
			t.Errorf("%s: profile found %v, segments %v, want none", user, ok, v.Segments)
		}
	}
	if entered < n/2 {
		t.Errorf("only %d of %d profiles entered the segment: the engine applied the sign-ins too late to test leaving", entered, n)
	}
	checkRestore(t, bin, args, c, brokers, dataDir, prefix, slices.Collect(maps.Keys(signedIn)))
}

// checkRestore stops c, whose stores are in dataDir, deletes the stores
// and the events topic's records (as retention would), and starts the
// engine again, killing it with SIGKILL a few times while it restores the
// stores from the changelog: once it is left to finish, every profile of
// keys reads as it did before. The changelog holds what the stores
// committed, kills notwithstanding, and a restore cut short by a kill is
// done again.
func checkRestore(t *testing.T, bin string, args []string, c *child, brokers []string, dataDir, prefix string, keys []string) {
	t.Helper()
	before := make(map[string]state.View, len(keys))
	for _, key := range keys {
		before[key], _ = c.profile(t, key)
	}
	c.Stop()
	testkafka.DeleteRecords(t, brokers, prefix+"events")
	dirs, err := filepath.Glob(filepath.Join(dataDir, prefix+"events-*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no store in %s: %v", dataDir, err)
	}
	for _, dir := range dirs {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 2))
	for range 4 {
		c = startChild(t, bin, args...)
		time.Sleep(time.Duration(50+rng.IntN(600)) * time.Millisecond)
		c.kill() // waits for it to be gone
	}
	t.Logf("killed 4 times while restoring (seed %d)", seed)
	c = startChild(t, bin, args...)
	c.waitReady(t, 90*time.Second)
	bad := 0
	for _, key := range keys {
		if v, _ := c.profile(t, key); !sameRestored(v, before[key]) {
			if bad++; bad <= 5 {
				t.Errorf("%s restored from the changelog: %+v (rfm %+v), want %+v (rfm %+v)", key, v, v.RFM, before[key], before[key].RFM)
			}
		}
	}
	c.Stop()
}

// sameRestored reports whether a profile read after a restore is the one
// read before it. Recency is in whole days since the last order at the
// time of the read, and the r score follows it: the two reads, some
// seconds apart, may fall either side of the time of day of a customer's
// last order, so those may be a day apart; everything else is the same.
func sameRestored(after, before state.View) bool {
	if after.RFM != nil && before.RFM != nil {
		a, b := *after.RFM, *before.RFM
		if a.Recency == b.Recency+1 {
			a.Recency, a.R = b.Recency, b.R
		}
		if a != b {
			return false
		}
		after.RFM, before.RFM = nil, nil
	}
	return reflect.DeepEqual(after, before)
}

// TestBrokerCommand runs the embedded broker as its own process and an
// engine process against it: events in over HTTP, profile out.
func TestBrokerCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs child processes")
	}
	bin := buildTailor(t)
	dir := t.TempDir()
	broker := exec.Command(bin, "broker", "--embedded-port", "0", "--data-dir", dir, "--log-level", "warn")
	out, err := broker.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := broker.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { broker.Process.Signal(syscall.SIGTERM); broker.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "broker listening on ")
	if err != nil || !ok {
		t.Fatalf("broker printed %q, %v", line, err)
	}
	c := startChild(t, bin, "--brokers", addr, "--data-dir", dir, "--write-keys", "crash-write", "--read-keys", "crash-read", "--partitions", "3")
	c.waitReady(t, 60*time.Second)
	req, _ := http.NewRequest("POST", c.url+"/v1/identify", strings.NewReader(`{"userId": "b1", "traits": {"plan": "pro"}}`))
	req.SetBasicAuth("crash-write", "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("identify: %v %v", resp, err)
	}
	resp.Body.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if v, ok := c.profile(t, "b1"); ok && string(v.Traits["plan"]) == `"pro"` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("profile b1 never appeared; engine logs:\n%s", c.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestIdentityCrashSafety: visitors browse anonymously, sign in, browse on
// with the anonymous id alone and as customers, while the engine is killed
// with SIGKILL again and again. Every anonymous profile is merged into its
// customer's exactly once: each customer has every view once, the
// anonymous ids read the customer's profile, and the segment the merged
// views put customers in is entered once each.
func TestIdentityCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills child processes")
	}
	bin := buildTailor(t)
	brokers := testkafka.Brokers(t)
	prefix := testkafka.Prefix(t)
	configFile := filepath.Join(t.TempDir(), "tailor.yaml")
	if err := os.WriteFile(configFile, []byte(`
aggregates:
  views: {event: Product Viewed, fn: count}
segments:
  browser: 'views >= 5'
`), 0o644); err != nil {
		t.Fatal(err)
	}
	args := crashArgs(configFile, brokers, prefix, "identity-crash-test", t.TempDir())
	producer := crashProducer(t, brokers, prefix)
	const n = 2000
	var events bytes.Buffer
	at := time.Now().Add(-time.Hour)
	line := func(ids, typ string) {
		at = at.Add(time.Millisecond)
		name := ""
		if typ == "track" {
			name = `"event": "Product Viewed", `
		}
		fmt.Fprintf(&events, `{"type": %q, %s, %s"timestamp": %q}`+"\n", typ, ids, name, at.Format(time.RFC3339Nano))
	}
	for i := range n {
		anon, user := fmt.Sprintf(`"anonymousId": "v%d"`, i), fmt.Sprintf(`"userId": "c%d"`, i)
		for range 3 {
			line(anon, "track")
		}
		line(anon+", "+user, "identify")
		line(anon, "track") // after the sign-in, the anonymous id alone
		for range 2 {
			line(user, "track")
		}
	}
	data := events.Bytes()
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 3))
	t.Logf("kill timing seed %d", seed)
	kills := importWhileKilling(t, bin, args, producer, prefix, &throttled{r: bytes.NewReader(data), chunk: 4 << 10, pause: 12 * time.Millisecond}, rng)
	t.Logf("%d kills", kills)
	c := startChild(t, bin, args...)
	c.waitReady(t, 90*time.Second)

	// Merges go through Kafka after the events that ask for them: wait
	// for the last customer's, then check everyone.
	deadline := time.Now().Add(60 * time.Second)
	for {
		v, ok := c.profile(t, fmt.Sprintf("c%d", n-1))
		if ok && v.Events["Product Viewed"] == 6 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	bad := 0
	for i := range n {
		user := fmt.Sprintf("c%d", i)
		v, ok := c.profile(t, user)
		if !ok || v.Events["Product Viewed"] != 6 || v.Calls["identify"] != 1 || len(v.Segments) != 1 || !slices.Contains(v.AnonymousIDs, fmt.Sprintf("v%d", i)) {
			if bad++; bad <= 5 {
				t.Errorf("%s: found %v, views %d, calls %v, segments %v, anonymous ids %v; want 6 views, one identify, browser, v%d",
					user, ok, v.Events["Product Viewed"], v.Calls, v.Segments, v.AnonymousIDs, i)
			}
			continue
		}
		if a, ok := c.profile(t, fmt.Sprintf("v%d", i)); !ok || a.Key != user {
			if bad++; bad <= 5 {
				t.Errorf("v%d reads %v %q, want %s's profile", i, ok, a.Key, user)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d customers wrong", bad, n)
	}
	// One entered record per customer, none for the anonymous profiles
	// (never 5 views): asking for one more waits for a duplicate.
	records := testkafka.Consume(t, brokers, prefix+"segments", n+1, 10*time.Second)
	entered := make(map[string]int)
	for _, r := range records {
		var c stream.SegmentChange
		if err := json.Unmarshal(r.Value, &c); err != nil || c.Change != "entered" || !strings.HasPrefix(c.Key, "c") {
			t.Fatalf("unexpected change record %s (%v)", r.Value, err)
		}
		entered[c.Key]++
	}
	if len(records) != n || len(entered) != n {
		t.Errorf("%d change records for %d customers, want one each for %d", len(records), len(entered), n)
	}
}
