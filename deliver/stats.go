package deliver

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats are one destination's figures since this instance started, for
// GET /v1/destinations.
type Stats struct {
	Name     string   `json:"name"`
	Segments []string `json:"segments"`
	Purpose  string   `json:"purpose,omitempty"`
	// Delivered changes were answered 2xx; Failed counts the attempts that
	// were not; Retried the attempts made again; DeadLettered the changes
	// given up; Withheld the changes not sent for consent.
	Delivered    int64 `json:"delivered"`
	Failed       int64 `json:"failed"`
	Retried      int64 `json:"retried"`
	DeadLettered int64 `json:"deadLettered"`
	Withheld     int64 `json:"withheld"`
	// Latency is from the change's record to its 2xx, in seconds.
	Latency Latency `json:"latency"`
	// LagSeconds is the age of the oldest change read and not yet
	// delivered, withheld or dead-lettered; 0 when every change read is
	// done.
	LagSeconds float64 `json:"lagSeconds"`
	// Circuit is the circuit breaker's state: closed, open or half-open.
	Circuit string `json:"circuit"`
}

// Latency summarises the delivery latencies.
type Latency struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P99   float64 `json:"p99"`
}

// Stats returns every destination's figures, by name.
func (d *Deliverer) Stats() []Stats {
	var out []Stats
	for _, c := range d.consumers() {
		x, lag := c.x, c.lag().Seconds()
		cfg := x.cfg.Load()
		x.mu.Lock()
		lat := Latency{Count: x.latency.TotalCount(), P50: float64(x.latency.ValueAtQuantile(50)) / 1e6, P99: float64(x.latency.ValueAtQuantile(99)) / 1e6}
		x.mu.Unlock()
		out = append(out, Stats{
			Name: cfg.Name, Segments: append([]string{}, cfg.Segments...), Purpose: string(cfg.Purpose),
			Delivered: x.delivered.Load(), Failed: x.failed.Load(), Retried: x.retried.Load(),
			DeadLettered: x.deadLettered.Load(), Withheld: x.withheld.Load(),
			Latency: lat, LagSeconds: lag, Circuit: x.breaker.State().String(),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// metrics are the deliverer's Prometheus metrics: counters read from the
// destinations as they are gathered, and the latency histogram.
type metrics struct {
	d       *Deliverer
	latency *prometheus.HistogramVec
	descs   map[string]*prometheus.Desc
}

var counterHelp = []struct{ name, help string }{
	{"tailor_deliver_delivered_total", "Segment changes a destination answered 2xx to."},
	{"tailor_deliver_failed_total", "Delivery attempts that failed (an answer other than 2xx, a timeout, a broken connection)."},
	{"tailor_deliver_retried_total", "Delivery attempts made again after a failure."},
	{"tailor_deliver_deadlettered_total", "Segment changes given up (max_attempts, max_age, a 4xx) and written to the delivery dead-letter topic."},
	{"tailor_deliver_withheld_total", "Segment changes not sent: the profile does not grant the destination's consent purpose."},
}

func newMetrics(reg prometheus.Registerer, d *Deliverer) *metrics {
	m := &metrics{d: d, descs: map[string]*prometheus.Desc{},
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tailor_deliver_latency_seconds",
			Help:    "Time from a segment change's record to its destination's 2xx.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 18),
		}, []string{"destination"})}
	for _, c := range counterHelp {
		m.descs[c.name] = prometheus.NewDesc(c.name, c.help, []string{"destination"}, nil)
	}
	m.descs["tailor_deliver_lag_seconds"] = prometheus.NewDesc("tailor_deliver_lag_seconds",
		"Age of the oldest segment change read and not yet delivered, withheld or dead-lettered (0: none).", []string{"destination"}, nil)
	if reg != nil {
		reg.MustRegister(m, m.latency)
	}
	return m
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range m.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	for _, s := range m.d.Stats() {
		for name, v := range map[string]int64{
			"tailor_deliver_delivered_total": s.Delivered, "tailor_deliver_failed_total": s.Failed,
			"tailor_deliver_retried_total": s.Retried, "tailor_deliver_deadlettered_total": s.DeadLettered,
			"tailor_deliver_withheld_total": s.Withheld,
		} {
			ch <- prometheus.MustNewConstMetric(m.descs[name], prometheus.CounterValue, float64(v), s.Name)
		}
		ch <- prometheus.MustNewConstMetric(m.descs["tailor_deliver_lag_seconds"], prometheus.GaugeValue, s.LagSeconds, s.Name)
	}
}
