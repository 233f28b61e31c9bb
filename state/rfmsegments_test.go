package state

import (
	"testing"
	"time"

	"github.com/tailorcdp/tailor/money"
)

// TestRFMSegments checks the standard RFM segments on every combination
// of scores: they compile, and no customer is in two of them.
func TestRFMSegments(t *testing.T) {
	segs, err := CompileSegments(RFMSegments(), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(segs.List()) != 11 {
		t.Fatalf("%d segments, want the 11 standard ones", len(segs.List()))
	}
	covered := 0
	for r := 1; r <= 5; r++ {
		for f := 1; f <= 5; f++ {
			for m := 1; m <= 5; m++ {
				// A profile whose scores are r, f, m: quintile boundaries
				// put its values exactly there.
				p := &Profile{Orders: uint64(f), Revenue: money.Units(int64(m)), LastOrderAt: int64(r) * rfmDay.Milliseconds()}
				q := RFMQuintiles{ok: [3]bool{true, true, true}}
				for k := range 4 {
					q.Days[k] = float64(k + 1)
					q.Orders[k] = float64(k + 1)
					q.Money[k] = moneyOfBin(moneyBin(float64(k + 1)))
				}
				for field, want := range []float64{float64(r), float64(f), float64(m)} {
					if got, _ := p.RFM(field, q, time.UnixMilli(0)); got != want {
						t.Fatalf("r%d f%d m%d: score %d is %v", r, f, m, field, got)
					}
				}
				var env RuleEnv
				env.quintiles = q
				changes := segs.evaluate(&env, p, nil, time.UnixMilli(10*rfmDay.Milliseconds()), &Inputs{All: true})
				if len(changes) > 1 {
					t.Errorf("r%d f%d m%d is in %d segments: %v", r, f, m, len(changes), changes)
				}
				covered += len(changes)
			}
		}
	}
	t.Logf("%d of 125 score combinations fall in a named segment", covered)
}
