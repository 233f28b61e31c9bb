package stream

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the processor's Prometheus metrics.
type Metrics struct {
	events         *prometheus.CounterVec // by outcome
	batch          prometheus.Histogram   // apply + commit of one partition's poll
	batchRetries   prometheus.Counter     // store batches applied again in smaller ones
	delay          prometheus.Histogram   // receive time to applied
	lag            *prometheus.GaugeVec   // by partition
	appliedNext    *prometheus.GaugeVec   // next offset to apply, by partition
	segmentChanges prometheus.Counter
	withheld       *prometheus.CounterVec // outputs not written for want of consent, by output
	wakes          prometheus.Counter     // profiles re-evaluated because time passed
	wakeDelay      prometheus.Histogram   // scheduled instant to re-evaluated
	expired        prometheus.Counter     // profiles deleted by retention
	backfilled     prometheus.Counter     // profiles re-evaluated by backfills
	backfillLeft   *prometheus.GaugeVec   // profiles a backfill has left, by partition
	fenced         *prometheus.GaugeVec   // 1 for a fenced partition held here
	// changelog (decision 0021)
	changelogRecords prometheus.Counter     // changelog records produced
	changelogBytes   prometheus.Counter     // their keys' and values' bytes
	standbyLag       *prometheus.GaugeVec   // changelog records a standby replica has yet to apply
	standbyRecords   prometheus.Counter     // changelog records applied to standby replicas
	restores         *prometheus.CounterVec // stores restored whole, or caught up, from the changelog
	outputRetries    prometheus.Counter     // worker steps tried again after their outputs were not written
	handover         prometheus.Histogram   // assignment to serving, per partition
	restored         *prometheus.CounterVec // changelog records restored, by partition
	restoreLeft      *prometheus.GaugeVec   // changelog records a restore has left, by partition
	// erasure (decision 0031)
	erasures     *prometheus.CounterVec // erasures applied, by state
	erasureDelay prometheus.Histogram   // request to applied
	reg          prometheus.Registerer
}

// Outcomes of an input record, the values of the "outcome" label of
// tailor_events_total.
const (
	OutcomeApplied    = "applied"
	OutcomeDuplicate  = "duplicate"
	OutcomeDeadLetter = "dead_letter"
	OutcomeRerouted   = "rerouted"
	OutcomeIdentity   = "identity"
	OutcomeErased     = "erased"
)

// NewMetrics registers the processor's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reg: reg,
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tailor_events_total",
			Help: "Input records consumed, by outcome: applied to a profile, duplicate (messageId seen within the dedup horizon), dead_letter (invalid, sent to the dead-letter topic), rerouted (read from another partition than its key's, whatever the producer's partitioner or record key, or for a profile merged into another: produced again to the right partition, keyed by its profile key), identity (the engine's own records moving a profile into the one it was linked to, or erasing one), erased (an event of an erased id, received before its erasure was asked for or suppressed since: dropped).",
		}, []string{"outcome"}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tailor_apply_batch_seconds",
			Help:    "Time to apply one partition's share of a poll and commit it to the store.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		delay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tailor_event_apply_delay_seconds",
			Help:    "Time from an event's receive time to its profile change being committed.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
		}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tailor_consumer_lag",
			Help: "Records in the events topic not applied yet, per assigned partition.",
		}, []string{"partition"}),
		appliedNext: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tailor_applied_offset",
			Help: "Offset of the next record to apply (all before it are in the store), per assigned partition.",
		}, []string{"partition"}),
	}
	m.batchRetries = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tailor_batch_retries_total",
		Help: "Store batches whose records were applied again in smaller batches, having turned out too large for one store transaction (records whose profiles grew far more than their size suggested, e.g. identify calls with large traits); nothing is lost or counted twice.",
	})
	m.segmentChanges = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tailor_segment_changes_total",
		Help: "Segment entered and exited records produced.",
	})
	m.withheld = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailor_outputs_withheld_total",
		Help: "Records an output did not write because the profile's latest consent choice does not grant the purpose configured for it (outputs.<output>.purpose), by output.",
	}, []string{"output"})
	m.wakes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tailor_segment_wakes_total",
		Help: "Profiles whose segments were re-evaluated because time passed (a window slid, a since() bound was reached), with no event.",
	})
	m.expired = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tailor_profiles_expired_total",
		Help: "Profiles deleted by retention (store.retention): no event for that long, by the event time of their last event; each segment they were in ends with an exited record whose reason is retention.",
	})
	m.wakeDelay = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "tailor_segment_wake_delay_seconds",
		Help:    "Time from the earliest instant a wake batch was due to its changes being committed.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
	})
	m.backfilled = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tailor_backfill_profiles_total",
		Help: "Profiles whose segments a backfill re-evaluated after the segments were added, changed or removed.",
	})
	m.backfillLeft = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tailor_backfill_remaining_profiles",
		Help: "Profiles the backfill under way has left to re-evaluate, per assigned partition (0: none under way).",
	}, []string{"partition"})
	m.fenced = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tailor_partition_fenced",
		Help: "1 for each partition held here whose store failed (damaged files, a failed read or commit): it is not applied and its keys answer 503 naming it, until it is assigned again and its store opens. Absent for the others.",
	}, []string{"partition"})
	reg.MustRegister(m.fenced)
	m.changelogRecords = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tailor_changelog_records_total",
		Help: "Changelog records produced: one per store key a committed batch wrote or deleted.",
	})
	m.restored = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailor_restore_records_total",
		Help: "Changelog records written into a store being restored (missing, damaged, or behind the start of the events topic on assignment), per partition, as the restore goes.",
	}, []string{"partition"})
	m.restoreLeft = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tailor_restore_remaining_records",
		Help: "Changelog offsets a restore under way has left to read, per partition (0: none under way).",
	}, []string{"partition"})
	m.changelogBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tailor_changelog_bytes_total",
		Help: "Bytes of the changelog records produced (keys and values).",
	})
	m.standbyLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tailor_standby_lag_records",
		Help: "Changelog offsets a standby replica kept here has yet to apply, per partition (absent for partitions with no standby here).",
	}, []string{"partition"})
	m.standbyRecords = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tailor_standby_records_total",
		Help: "Changelog records applied to the standby replicas kept here.",
	})
	m.restores = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailor_restores_total",
		Help: "Stores brought up to date from the changelog on assignment, by kind: full (restored whole: missing, damaged, or behind the start of the events topic) or catch_up (from the changelog offset the store reflected: a standby replica, or a store kept from before).",
	}, []string{"kind"})
	m.outputRetries = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tailor_output_retries_total",
		Help: "Batches, wakes and backfill steps tried again after their Kafka transaction did not commit (broker away or failing over): the partition's producer is renewed first.",
	})
	m.handover = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "tailor_partition_handover_seconds",
		Help:    "From a partition's assignment here to its reads being served: opening its store, restored or caught up from the changelog if need be.",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
	})
	reg.MustRegister(m.restores, m.outputRetries, m.handover)
	reg.MustRegister(m.changelogRecords, m.changelogBytes, m.restored, m.restoreLeft, m.standbyLag, m.standbyRecords)
	m.erasures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailor_erasures_total",
		Help: "Erasures applied, by state: done (the profile and what is kept for it removed, or none found) or forwarded (the key named was merged into a profile in another partition, where the erasure went on).",
	}, []string{"state"})
	m.erasureDelay = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "tailor_erasure_delay_seconds",
		Help:    "Time from an erasure's request (DELETE /v1/profiles/{key}) to its profile removed from the store.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
	})
	reg.MustRegister(m.erasures, m.erasureDelay)
	reg.MustRegister(m.events, m.batch, m.batchRetries, m.delay, m.lag, m.appliedNext, m.segmentChanges, m.withheld, m.wakes, m.expired, m.wakeDelay, m.backfilled, m.backfillLeft)
	return m
}

func partitionLabel(p int32) string { return strconv.Itoa(int(p)) }
