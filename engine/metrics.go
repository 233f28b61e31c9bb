package engine

import (
	"io/fs"
	"path/filepath"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/tailorcdp/tailor/internal/buildinfo"
	"github.com/tailorcdp/tailor/stream"
)

// registerBuildInfo registers tailor_build_info{version,revision,goversion} 1.
func registerBuildInfo(reg prometheus.Registerer) {
	bi := buildinfo.Read()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tailor_build_info",
		Help: "Always 1; its labels say which build runs: the module version (dev when unknown), the VCS revision and the Go version.",
	}, []string{"version", "revision", "goversion"})
	g.WithLabelValues(bi.Version, bi.Revision, bi.GoVersion).Set(1)
	reg.MustRegister(g)
}

// kafkaMetrics returns the option that meters a Kafka client with
// franz-go's Prometheus plugin: tailor_kafka_* metrics (connections,
// bytes, request latency and throttling per broker, produce and fetch
// batches per topic, buffered records), labelled client="producer" or "consumer". kprom
// registers them when the client is made, once per client: so only the
// engine's producer and its group consumer are metered, not the
// short-lived clients of restores and standbys.
func kafkaMetrics(reg prometheus.Registerer, client string) kgo.Opt {
	m := kprom.NewMetrics("tailor_kafka",
		kprom.Registerer(reg),
		kprom.WithStaticLabel(prometheus.Labels{"client": client}),
		kprom.Histograms(kprom.RequestDurationE2E, kprom.RequestThrottled),
	)
	return kgo.WithHooks(m)
}

// storeSizes collects the sizes of the partition stores this instance
// holds, as Badger itself counts them (DB.Size, calculateSize): the bytes
// of its .sst files (the LSM tree) and of its .vlog files (the value
// log). Badger's own expvar figures are off (state's options): they are
// process-wide and keep every directory ever opened.
type storeSizes struct {
	dataDir string
	topics  stream.Topics
	held    func() map[int32]int64
	lsm     *prometheus.Desc
	vlog    *prometheus.Desc
}

func newStoreSizes(dataDir string, topics stream.Topics, held func() map[int32]int64) *storeSizes {
	return &storeSizes{
		dataDir: dataDir, topics: topics, held: held,
		lsm: prometheus.NewDesc("tailor_store_lsm_bytes",
			"Bytes of a partition store's LSM tree (its .sst files), as Badger counts them, per partition held here.", []string{"partition"}, nil),
		vlog: prometheus.NewDesc("tailor_store_vlog_bytes",
			"Bytes of a partition store's value log (its .vlog files), as Badger counts them, per partition held here.", []string{"partition"}, nil),
	}
}

func (s *storeSizes) Describe(ch chan<- *prometheus.Desc) { ch <- s.lsm; ch <- s.vlog }

func (s *storeSizes) Collect(ch chan<- prometheus.Metric) {
	for id := range s.held() {
		lsm, vlog := dirSizes(stream.StoreDir(s.dataDir, s.topics, id))
		p := strconv.Itoa(int(id))
		ch <- prometheus.MustNewConstMetric(s.lsm, prometheus.GaugeValue, float64(lsm), p)
		ch <- prometheus.MustNewConstMetric(s.vlog, prometheus.GaugeValue, float64(vlog), p)
	}
}

// dirSizes sums the .sst and .vlog files under dir; files removed during
// the walk (compactions) are skipped.
func dirSizes(dir string) (lsm, vlog int64) {
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		ext := filepath.Ext(path)
		if ext != ".sst" && ext != ".vlog" {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if ext == ".sst" {
			lsm += info.Size()
		} else {
			vlog += info.Size()
		}
		return nil
	})
	return lsm, vlog
}
