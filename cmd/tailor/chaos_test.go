package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/bench/chaos"
)

// TestEmbeddedKillLoop kills the default deployment, tailor run with its
// embedded broker (which dies with it and comes back from its data
// directory), with SIGKILL again and again: at 40 random points of an
// import of the Online Retail data set (26,562 events, paced to span the
// kills, onto 12 partitions as the default config has), then while time
// alone moves 300 profiles out of a segment (about 50 s). Every start must be ready within 30 s (and,
// with no import running, have no lag), every profile must equal the
// direct computation from the CSV, and every segment change record must be
// there exactly once. It runs against the embedded broker whatever
// TAILOR_TEST_BROKERS says: that is the deployment it tests.
func TestEmbeddedKillLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills child processes")
	}
	if _, err := os.Stat(retailCSV); err != nil {
		t.Skipf("data set not present: %v", err)
	}
	events, truth, err := chaos.RetailData(retailCSV, 0)
	if err != nil {
		t.Fatal(err)
	}
	bin := buildTailor(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill timing seed %d", seed)
	res, err := chaos.Run(context.Background(), chaos.Options{
		Binary: bin, Dir: t.TempDir(), Events: events, Truth: truth,
		Kills: 40, Wake: 300, Seed: seed, Partitions: 12, Up: time.Second, ReadyTimeout: 30 * time.Second,
		Progress: func(s string) { t.Log(s) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d kills (%d during the import, %d during wakes), ready after a kill p50 %.1f s, max %.1f s; %d events, %d customers, %d segment records",
		res.Kills, res.ImportKills, res.WakeKills, res.ReadyP50, res.ReadyMax, res.Events, res.Retail.Customers, res.Segments.Records)
	if res.Kills < 20 {
		t.Errorf("%d kills, want at least 20", res.Kills)
	}
	if r := res.Retail; r.Lost != 0 || r.Doubled != 0 || r.Wrong != 0 {
		t.Errorf("profiles against the CSV: %d events lost, %d counted twice, %d customers wrong: %v", r.Lost, r.Doubled, r.Wrong, r.Diffs)
	}
	if s := res.Segments; s.Duplicated != 0 || s.Missing != 0 || s.Unexpected != 0 {
		t.Errorf("segment records: %d duplicated, %d missing, %d unexpected: %v", s.Duplicated, s.Missing, s.Unexpected, s.Problems)
	}
	if res.StillIn != 0 {
		t.Errorf("%d profiles still in the segment time should have emptied", res.StillIn)
	}
}

func TestBenchChaosUsage(t *testing.T) {
	if code, _, stderr := runArgs(t, "bench", "chaos"); code == 0 || !strings.Contains(stderr, "usage: tailor bench chaos") {
		t.Errorf("bench chaos without a CSV: exit %d, stderr %q", code, stderr)
	}
}
