package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/bench/chaos"
	"github.com/tailorcdp/tailor/bench/dataset"
	"github.com/tailorcdp/tailor/event"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/state"
	"github.com/tailorcdp/tailor/stream"
)

// scalePartitions is the partition count of TestScaleOut's topics.
const scalePartitions = 12

// TestScaleOut runs tailor as a group of instances while partitions move
// between them: three instances (one standby replica each partition)
// apply the Online Retail history; one is killed with SIGKILL mid-import
// and its data directory deleted, and the others take its partitions
// over from their standby replicas, caught up rather than restored whole,
// answering reads from them meanwhile; a fourth joins and receives
// partitions, restored from the changelog. Then the events topic's
// records are deleted (as retention would) and the fourth is killed and
// its directory deleted too: what it held can only come back from the
// changelog. Every customer's profile equals the direct computation from
// the CSV, the segment sizes and RFM quintiles agree across the
// instances, and every segment change record exists exactly once.
func TestScaleOut(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs four instances")
	}
	if _, err := os.Stat(retailCSV); err != nil {
		t.Skipf("data set not present: %v", err)
	}
	data, truth, err := chaos.RetailData(retailCSV, 0)
	if err != nil {
		t.Fatal(err)
	}
	bin := buildTailor(t)
	brokers := testkafka.Brokers(t)
	prefix := testkafka.Prefix(t)
	configFile := filepath.Join(t.TempDir(), "tailor.yaml")
	if err := os.WriteFile(configFile, []byte(`
aggregates:
  orders_all: {event: Order Completed, fn: count}
segments:
  repeat_buyer: 'orders_all >= 2'
rfm_segments: true
`), 0o644); err != nil {
		t.Fatal(err)
	}
	producer := topicsProducer(t, brokers, prefix, scalePartitions)
	dirs := make([]string, 4)
	start := func(i int) *child {
		if dirs[i] == "" {
			dirs[i] = t.TempDir()
		}
		c := startChild(t, bin, "--config", configFile,
			"--brokers", strings.Join(brokers, ","), "--topic-prefix", prefix, "--group", prefix+"engine",
			"--instance-id", "scale-"+strconv.Itoa(i), "--partitions", strconv.Itoa(scalePartitions), "--data-dir", dirs[i],
			"--write-keys", "crash-write", "--read-keys", "crash-read", "--memtable-size", "4MB",
			"--standby-replicas", "1", "--session-timeout", "6s")
		return c
	}
	a, b, c := start(0), start(1), start(2)
	for _, x := range []*child{a, b, c} {
		x.waitReady(t, 90*time.Second)
	}

	// The import, slowed down so that the kill and the join fall inside it.
	imported := make(chan error, 1)
	go func() {
		stats, err := stream.Import(context.Background(), &throttled{r: bytes.NewReader(data), chunk: 256 << 10, pause: 40 * time.Millisecond},
			stream.ImportOptions{Producer: producer, Topic: prefix + "events", Limits: event.DefaultLimits()})
		if err == nil && stats.Rejected > 0 {
			err = fmt.Errorf("import rejected lines: %s", stats)
		}
		imported <- err
	}()
	time.Sleep(3 * time.Second)

	// A dies with its disk. Its partitions' standby replicas are on B and
	// C: reads of their keys are answered there from the replica until
	// the group moves the partitions (after the session timeout).
	held := clusterOf(t, b).partitionsOf("scale-0")
	a.kill()
	if err := os.RemoveAll(dirs[0]); err != nil {
		t.Fatal(err)
	}
	standbyReads := readsDuringFailover(t, []*child{b, c}, truth, held)
	t.Logf("A held partitions %v; %d reads answered from standby replicas during the failover", held, standbyReads)
	if len(held) > 0 && standbyReads == 0 {
		t.Error("no read of A's keys was answered from a standby replica while its partitions moved")
	}

	d := start(3)
	d.waitReady(t, 120*time.Second)
	if err := <-imported; err != nil {
		t.Fatal(err)
	}
	for _, x := range []*child{b, c, d} {
		waitCaughtUp(t, x)
	}
	if got := clusterOf(t, d).partitionsOf("scale-3"); len(got) == 0 {
		t.Error("the fourth instance received no partition")
	}
	for name, x := range map[string]*child{"B": b, "C": c} {
		if n := metric(t, x, `tailor_restores_total{kind="full"}`); n != 0 {
			t.Errorf("instance %s restored %v stores whole: a standby replica should have been caught up instead", name, n)
		}
	}

	// The events are gone; D dies with its disk: its partitions come back
	// from the changelog alone.
	testkafka.DeleteRecords(t, brokers, prefix+"events")
	d.kill()
	if err := os.RemoveAll(dirs[3]); err != nil {
		t.Fatal(err)
	}
	for _, x := range []*child{b, c} {
		waitCaughtUp(t, x)
	}
	waitFor(t, "B and C to hold every partition", 90*time.Second, func() bool {
		cl := clusterOf(t, b)
		return len(cl.partitionsOf("scale-1"))+len(cl.partitionsOf("scale-2")) == scalePartitions
	})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tally, err := chaos.CheckRetail(ctx, truth, func(ctx context.Context, key string) (state.View, bool, error) {
		return b.Profile(ctx, key, "crash-read")
	})
	if err != nil {
		t.Fatal(err)
	}
	if tally.Lost+tally.Doubled+tally.Wrong > 0 {
		t.Errorf("profiles against the CSV: %+v", tally)
	}

	// Segment sizes and RFM quintiles agree across the instances.
	repeat := 0
	want := chaos.SegmentExpectations{Once: make(map[chaos.Change]bool)}
	for id, f := range truth {
		if f.Orders >= 2 {
			repeat++
			want.Once[chaos.Change{Key: id, Segment: "repeat_buyer", Change: "entered"}] = true
		}
	}
	cb, cc := clusterOf(t, b), clusterOf(t, c)
	if cb.Segments["repeat_buyer"] != int64(repeat) || cc.Segments["repeat_buyer"] != int64(repeat) {
		t.Errorf("repeat_buyer size: B %d, C %d, want %d", cb.Segments["repeat_buyer"], cc.Segments["repeat_buyer"], repeat)
	}
	if !reflect.DeepEqual(cb.Quintiles, cc.Quintiles) {
		t.Errorf("RFM quintiles differ: B %s, C %s", cb.Quintiles, cc.Quintiles)
	}

	// Every segment change record exactly once, over the whole run.
	changes, err := chaos.SegmentChanges(ctx, stream.ClientConfig{Brokers: brokers}, prefix+"segments")
	if err != nil {
		t.Fatal(err)
	}
	var entered []stream.SegmentChange
	for _, ch := range changes {
		if ch.Segment == "repeat_buyer" {
			entered = append(entered, ch)
		}
	}
	if st := chaos.CheckSegments(entered, want); st.Duplicated+st.Missing+st.Unexpected > 0 {
		t.Errorf("segment change records: %+v", st)
	}
}

// clusterView is what TestScaleOut reads of GET /v1/cluster.
type clusterView struct {
	Instances []struct {
		InstanceID string  `json:"instance_id"`
		Partitions []int32 `json:"partitions"`
		Standbys   []int32 `json:"standbys"`
	} `json:"instances"`
	Segments  map[string]int64 `json:"segments"`
	Quintiles json.RawMessage  `json:"rfm_quintiles"`
}

// partitionsOf returns the partitions the instance named holds.
func (v clusterView) partitionsOf(instance string) []int32 {
	for _, in := range v.Instances {
		if in.InstanceID == instance {
			return in.Partitions
		}
	}
	return nil
}

func clusterOf(t *testing.T, c *child) clusterView {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	status, body, err := c.Get(ctx, "/v1/cluster", "crash-read")
	if err != nil || status != http.StatusOK {
		t.Fatalf("GET /v1/cluster: %d %s %v", status, body, err)
	}
	var v clusterView
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("GET /v1/cluster: %v: %s", err, body)
	}
	return v
}

// readsDuringFailover reads the profiles of the customers in partitions
// held on every instance of cs for a few seconds after their owner died,
// and returns how many answers came from a standby replica. Any answer
// other than a profile, 404 (a customer not imported yet) or 503 (a
// partition with no copy there) fails the test.
func readsDuringFailover(t *testing.T, cs []*child, truth map[string]*dataset.CustomerFacts, held []int32) int {
	t.Helper()
	in := make(map[int32]bool)
	for _, id := range held {
		in[id] = true
	}
	var keys []string
	for id := range truth {
		if in[stream.PartitionOf(id, scalePartitions)] {
			keys = append(keys, id)
		}
	}
	client := &http.Client{Timeout: 10 * time.Second}
	standby := 0
	for i, deadline := 0, time.Now().Add(4*time.Second); time.Now().Before(deadline) && len(keys) > 0; i++ {
		for _, c := range cs {
			key := keys[i%len(keys)]
			req, err := http.NewRequest("GET", c.url+"/v1/profiles/"+key, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.SetBasicAuth("crash-read", "")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("GET profile %s during the failover: %v", key, err)
			}
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusOK, http.StatusNotFound: // not imported yet
				if resp.Header.Get("X-Tailor-Read-From") == "standby" {
					standby++
				}
			case http.StatusServiceUnavailable: // no copy on this instance
			default:
				t.Errorf("GET profile %s during the failover: %d", key, resp.StatusCode)
			}
		}
	}
	return standby
}

func waitCaughtUp(t *testing.T, c *child) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := c.WaitCaughtUp(ctx); err != nil {
		t.Fatalf("%v; logs:\n%s", err, c.Logs())
	}
}

// metric returns the value of the metric line that starts with name
// (with its labels), 0 when there is none.
func metric(t *testing.T, c *child, name string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	status, body, err := c.Get(ctx, "/metrics", "")
	if err != nil || status != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", status, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	return 0
}

func waitFor(t *testing.T, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !ok(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
