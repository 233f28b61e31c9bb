package deliver

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"

	"github.com/tailorcdp/tailor/state"
)

// Destination is one webhook and what it receives.
type Destination struct {
	Name    string
	URL     string
	Secret  []byte
	Headers map[string]string
	// Timeout bounds one request.
	Timeout time.Duration
	// Rate bounds the requests per second, with Burst at once (0: no
	// limit).
	Rate  float64
	Burst int
	// BatchSize is how many changes a request carries: 1 sends one
	// change as the body, more send {"changes": [...]}.
	BatchSize int
	// Segments names the segments whose changes it receives.
	Segments []string
	// Purpose is the consent purpose it receives people's data for
	// ("": every profile's).
	Purpose state.Purpose
	// Fields says which profile fields travel with each change.
	Fields Fields
	// MaxAttempts and MaxAge bound the tries of one change before it is
	// dead-lettered.
	MaxAttempts int
	MaxAge      time.Duration
}

// Fields are the profile fields a destination asks for.
type Fields struct {
	Traits, Aggregates, RFM bool
}

// Any reports whether any field is asked for.
func (f Fields) Any() bool { return f.Traits || f.Aggregates || f.RFM }

// maxInFlight bounds one destination's requests at once, over every
// partition.
const maxInFlight = 16

// dest is a destination as it runs: its configuration (replaced by
// reloads), its rate limiter, circuit breaker and figures, which reloads
// keep.
type dest struct {
	cfg      atomic.Pointer[Destination]
	limiter  *rate.Limiter
	breaker  *gobreaker.CircuitBreaker[struct{}]
	inflight chan struct{}
	removed  atomic.Bool

	delivered, failed, retried, deadLettered, withheld atomic.Int64

	mu      sync.Mutex
	latency *hdrhistogram.Histogram // microseconds from the change's record to its 2xx
}

// Breaker configures the circuit breaker of each destination: Trips
// failures in a row open the circuit, which refuses requests for OpenFor,
// then lets one probe through.
type Breaker struct {
	Trips   uint32
	OpenFor time.Duration
}

// DefaultBreaker opens after 10 failures in a row, for 5 s.
var DefaultBreaker = Breaker{Trips: 10, OpenFor: 5 * time.Second}

func newDest(d Destination, b Breaker) *dest {
	x := &dest{
		limiter:  rate.NewLimiter(rate.Inf, 0),
		inflight: make(chan struct{}, maxInFlight),
		latency:  hdrhistogram.New(1, 24*3600*1e6, 3),
	}
	x.breaker = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        d.Name,
		MaxRequests: 1,
		Timeout:     b.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= b.Trips },
	})
	x.set(d)
	return x
}

// set puts a destination's configuration in force.
func (x *dest) set(d Destination) {
	c := d
	x.cfg.Store(&c)
	if d.Rate > 0 {
		x.limiter.SetLimit(rate.Limit(d.Rate))
		x.limiter.SetBurst(max(1, d.Burst))
	} else {
		x.limiter.SetLimit(rate.Inf)
	}
}

// wants reports whether the destination receives changes of segment.
func (d *Destination) wants(segment string) bool {
	for _, s := range d.Segments {
		if s == segment {
			return true
		}
	}
	return false
}

// observe records the latency of a delivery.
func (x *dest) observe(d time.Duration) {
	x.mu.Lock()
	_ = x.latency.RecordValue(max(1, d.Microseconds()))
	x.mu.Unlock()
}
