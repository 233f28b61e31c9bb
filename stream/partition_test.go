package stream

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestPartitionOfMatchesProducer checks that the HTTP side routes a key to
// the partition franz-go's default producer writes it to.
func TestPartitionOfMatchesProducer(t *testing.T) {
	part := kgo.StickyKeyPartitioner(nil).ForTopic("t")
	rng := rand.New(rand.NewPCG(1, 2))
	keys := []string{"", "a", "ab", "abc", "abcd", "user-1", "17850", "ünïcødé"}
	for range 2000 {
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		keys = append(keys, string(b), "user-"+strconv.Itoa(rng.IntN(1e6)))
	}
	for _, n := range []int{1, 3, 12, 64} {
		for _, k := range keys {
			want := part.Partition(&kgo.Record{Key: []byte(k)}, n)
			if got := PartitionOf(k, n); int(got) != want {
				t.Fatalf("PartitionOf(%q, %d) = %d, producer writes to %d", k, n, got, want)
			}
		}
	}
}

func BenchmarkPartitionOf(b *testing.B) {
	for b.Loop() {
		PartitionOf("user-1234567", 12)
	}
}
