package stream

import (
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tailorcdp/tailor/state"
)

// Consent on outputs (decision 0029): an output carries a person's data
// only for the consent purpose the configuration names for it
// (state.Outputs), as the person's latest choice stands when the output
// is made. The segments topic is the first such output; a destination
// asks the same of its purpose (state.Purpose.Allows).

// OutputSegments is the segments topic's value of the "output" label of
// tailor_outputs_withheld_total.
const OutputSegments = "segments"

// segmentRecords returns the segments topic records of changes, made by
// batch (src names their cause), leaving out those of the profiles whose
// latest consent choice, as the batch holds it, does not grant the
// topic's purpose; withheld counts those.
func (p *Processor) segmentRecords(batch *state.Batch, src string, changes []state.KeyedChange) (out []*kgo.Record, withheld int) {
	purpose := batch.Model().Outputs.Segments
	for _, c := range changes {
		if !purpose.Allows(batch.Held(c.Key)) {
			withheld++
			continue
		}
		out = append(out, p.changeRecord(src, c))
	}
	return out, withheld
}
